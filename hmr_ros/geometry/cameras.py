"""Cameras: the crop camera and the full-perspective translation, projections, crop coordinates.

box: (..., 3) = [cx, cy, size], centre and side in pixels of a SQUARE crop.
K:   (..., 3, 3) pixel intrinsics (sensor_msgs/CameraInfo `k`); may be a shared (3, 3).
cam: (..., 3) = [s, tx, ty], SPIN/HMR weak-perspective crop camera: a model-frame point X
     maps to normalised crop coordinates s * (X_xy + [tx, ty]) in [-1, 1] over the box.
T:   (..., 3) full-perspective translation, P_cam = X + T.
Camera frame: x right, y down, z forward (ROS optical frame), metres.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _intrinsics(k: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """fx, fy, px, py of pixel intrinsics.

    k: (..., 3, 3) -> 4 x (...)
    """
    return k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2]


def crop_cam_to_translation(cam: Tensor, box: Tensor, k: Tensor, eps: float = 1e-9) -> Tensor:
    """Weak-perspective crop camera to a full-perspective camera-frame translation.

    Tz = 2 fx / (size s) makes the crop's scale match the perspective scale at the root's depth;
    Tx, Ty put the crop camera's image of the model origin at the same pixel. The weak-perspective
    camera has one scale for both axes, i.e. it assumes square pixels: with fx == fy, any point
    with model-frame z = 0 projects through K to exactly the pixel that the crop camera maps to
    the image; with fx != fy only the origin does (x is matched, y is off by fy / fx).

    s * size is clamped to `eps` from below, since s <= 0 has no meaning (the body would be at
    or behind the camera) and would otherwise give inf.

    cam: (..., 3), box: (..., 3), k: (..., 3, 3) -> (..., 3)
    """
    s, tx, ty = cam.unbind(-1)
    cx, cy, size = box.unbind(-1)
    fx, fy, px, py = _intrinsics(k)
    ss = (size * s).clamp(min=eps)
    tz = 2.0 * fx / ss
    tx_full = (0.5 * ss * tx + cx - px) * tz / fx
    ty_full = (0.5 * ss * ty + cy - py) * tz / fy
    return torch.stack((tx_full, ty_full, tz), dim=-1)


def translation_to_crop_cam(t: Tensor, box: Tensor, k: Tensor, eps: float = 1e-9) -> Tensor:
    """Exact inverse of `crop_cam_to_translation`.

    Tz is clamped to `eps` from below (a body at or behind the camera has no crop camera).

    t: (..., 3), box: (..., 3), k: (..., 3, 3) -> (..., 3)
    """
    tx_full, ty_full, tz = t.unbind(-1)
    cx, cy, size = box.unbind(-1)
    fx, fy, px, py = _intrinsics(k)
    tz = tz.clamp(min=eps)
    s = 2.0 * fx / (size * tz)
    # size * s / 2 == fx / tz, so the crop offsets follow without dividing by s.
    tx = (tx_full * fx / tz + px - cx) * tz / fx
    ty = (ty_full * fy / tz + py - cy) * tz / fx
    return torch.stack((s, tx, ty), dim=-1)


def perspective_project(points, k, min_depth: float | None = 1e-6):
    """Pinhole projection of camera-frame points to pixels, numpy arrays or torch tensors.

    u = fx x / z + skew y / z + px, v = fy y / z + py, in that order of operations: the one
    projection of the renderer, the adaptation losses and the temporal refiner (their numbers
    depend on it to the last bit). K is upper triangular with a last row (0, 0, 1), as
    CameraInfo's `k`; it must broadcast against the points' leading dims (a shared (3, 3)
    always does).

    Depth is clamped to `min_depth` (metres) from below so that points at or behind the camera
    give large but finite pixels instead of inf/NaN; their gradient through the depth is then
    zero. `min_depth=None` projects the depth as it is (the renderer's rasteriser, which drops
    such points itself; numpy then gives inf/NaN without a warning).

    points: (..., N, 3), k: (..., 3, 3) -> (..., N, 2)
    """
    z = points[..., 2]
    if min_depth is not None:
        z = z.clamp(min=min_depth) if isinstance(z, Tensor) else np.maximum(z, min_depth)
    fx, skew, px = k[..., None, 0, 0], k[..., None, 0, 1], k[..., None, 0, 2]
    fy, py = k[..., None, 1, 1], k[..., None, 1, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * points[..., 0] / z + skew * points[..., 1] / z + px
        v = fy * points[..., 1] / z + py
    if isinstance(u, Tensor):
        return torch.stack([u, v], dim=-1)
    return np.stack([u, v], axis=-1)


def project_to_crop(points: Tensor, cam: Tensor, box: Tensor, k: Tensor, min_depth: float,
                    min_half_size: float | None = None) -> Tensor:
    """Model-frame points seen by their crop's REAL camera, in the crop's normalised coordinates.

    The crop camera becomes a translation with K (`crop_cam_to_translation`, as the pipeline
    does), the points are projected with K (`perspective_project`, depth clamped to
    `min_depth`) and the pixels are expressed in the box: (uv - centre) / (size / 2), so -1 and
    1 are the crop's outer edges (grid_sample's convention with align_corners=False): the same
    geometry the published body has. `min_half_size` (px) clamps size / 2 from below when
    given (a degenerate box stays finite).

    points: (..., N, 3), cam: (..., 3), box: (..., 3), k: (..., 3, 3) -> (..., N, 2)
    """
    t = crop_cam_to_translation(cam, box, k)
    uv = perspective_project(points + t[..., None, :], k, min_depth)
    half = box[..., None, 2:3] / 2
    if min_half_size is not None:
        half = half.clamp(min=min_half_size)
    return (uv - box[..., None, :2]) / half


def weak_perspective_project(points: Tensor, cam: Tensor) -> Tensor:
    """Weak-perspective projection to normalised crop coordinates: s * (X_xy + [tx, ty]).

    points: (..., N, 3), cam: (..., 3) -> (..., N, 2)
    """
    s = cam[..., None, :1]
    return s * (points[..., :2] + cam[..., None, 1:])


def image_to_crop(uv: Tensor, box: Tensor) -> Tensor:
    """Pixels to normalised crop coordinates ([-1, 1] across the square box).

    uv: (..., N, 2), box: (..., 3) -> (..., N, 2)
    """
    return (uv - box[..., None, :2]) / (0.5 * box[..., None, 2:])


def crop_to_image(xy: Tensor, box: Tensor) -> Tensor:
    """Normalised crop coordinates to pixels; inverse of `image_to_crop`.

    xy: (..., N, 2), box: (..., 3) -> (..., N, 2)
    """
    return box[..., None, :2] + 0.5 * box[..., None, 2:] * xy
