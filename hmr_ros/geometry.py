"""Rotations, cameras and alignment: batch, differentiable, torch (plus three float64 numpy
quaternion helpers for code that must reproduce its output bit for bit, see below).

Conventions used across the package:
- Camera frame: x right, y down, z forward (ROS optical frame), metres.
- Rotation matrices act on column vectors: p' = R @ p.
- 6D rotations follow SPIN's interleaved layout (see `rot6d_to_matrix`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """SPIN's 6D rotation representation to rotation matrices.

    The 6 numbers are the first two COLUMNS a1, a2 of the matrix, stored interleaved row by row:
    `[a1x, a2x, a1y, a2y, a1z, a2z]` (a (3, 2) matrix flattened in row-major order). This is the
    layout of SPIN's and BOA's `decpose` output, so imported weights produce correct rotations.
    Gram-Schmidt makes the result orthonormal for any input with non-parallel columns.

    x: (..., 6) -> (..., 3, 3)
    """
    m = x.reshape(*x.shape[:-1], 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def matrix_to_rot6d(r: Tensor) -> Tensor:
    """Inverse of `rot6d_to_matrix`: the first two columns, interleaved.

    r: (..., 3, 3) -> (..., 6)
    """
    return r[..., :, :2].reshape(*r.shape[:-2], 6)


# Below this squared angle the closed forms of sin(t)/t and (1 - cos t)/t^2 lose their
# gradients to cancellation (error ~ eps / t^2), while the truncated series are exact to
# ~1e-18 there, so they take over.
_SMALL_ANGLE_SQ = 1e-3


def _sinc_and_versine(theta_sq: Tensor) -> tuple[Tensor, Tensor]:
    """sin(t)/t and (1 - cos t)/t^2 as functions of t^2, smooth through t = 0.

    theta_sq: (...) -> ((...), (...))
    """
    small = theta_sq < _SMALL_ANGLE_SQ
    # The unused branch must not see t = 0 either: torch.where propagates NaN gradients from it.
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    t = torch.sqrt(safe_sq)
    half_sin = torch.sin(0.5 * t)
    a_closed = torch.sin(t) / t
    # 2 sin^2(t/2) avoids the cancellation of 1 - cos t in float32.
    b_closed = 2.0 * half_sin * half_sin / safe_sq
    x = theta_sq
    a_series = 1.0 - x / 6.0 * (1.0 - x / 20.0 * (1.0 - x / 42.0))
    b_series = 0.5 - x / 24.0 * (1.0 - x / 30.0 * (1.0 - x / 56.0))
    return torch.where(small, a_series, a_closed), torch.where(small, b_series, b_closed)


def _skew(v: Tensor) -> Tensor:
    """Cross-product matrix [v]_x, so that [v]_x @ p = v x p.

    v: (..., 3) -> (..., 3, 3)
    """
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Axis-angle (rotation vector, angle = norm) to rotation matrices (Rodrigues).

    R = I + sin(t)/t [a]_x + (1 - cos t)/t^2 [a]_x^2 with t = |a|; the coefficients switch to
    their Taylor series near t = 0, so the map and its gradient are finite (and exact) at a = 0.

    aa: (..., 3) -> (..., 3, 3)
    """
    a, b = _sinc_and_versine((aa * aa).sum(-1))
    k = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Quaternions (w, x, y, z) to rotation matrices.

    The input need not be unit length: it is normalised implicitly (the zero quaternion is
    invalid). ROS messages store (x, y, z, w); reorder before calling.

    q: (..., 4) -> (..., 3, 3)
    """
    w, x, y, z = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    xx, yy, zz = s * x * x, s * y * y, s * z * z
    xy, xz, yz = s * x * y, s * x * z, s * y * z
    wx, wy, wz = s * w * x, s * w * y, s * w * z
    r = torch.stack(
        (
            1.0 - yy - zz, xy - wz, xz + wy,
            xy + wz, 1.0 - xx - zz, yz - wx,
            xz - wy, yz + wx, 1.0 - xx - yy,
        ),
        dim=-1,
    )  # fmt: skip
    return r.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(r: Tensor) -> Tensor:
    """Rotation matrices to unit quaternions (w, x, y, z) with w >= 0.

    Shepperd's method: each of w, x, y, z can be recovered from a square root of a diagonal
    combination and the others by division by it; the branch with the largest square is used.
    That square is always >= 1/4, so the result is accurate for every angle including pi, where
    the trace-only formula breaks down. Slightly non-orthonormal inputs are tolerated (the result
    is renormalised). At exactly w = 0 (angle pi) q and -q are both canonical; either may come
    back. ROS messages store (x, y, z, w); reorder after calling.

    r: (..., 3, 3) -> (..., 4)
    """
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2 for a proper rotation; they sum to 4, so the largest is >= 1.
    sq4 = torch.stack(
        (
            1.0 + r00 + r11 + r22,
            1.0 + r00 - r11 - r22,
            1.0 - r00 + r11 - r22,
            1.0 - r00 - r11 + r22,
        ),
        dim=-1,
    )
    # Clamping below the selected branch's minimum (1) keeps the discarded branches finite, so
    # their zero-weighted gradients cannot turn into NaN; the chosen branch is unaffected.
    two_q = torch.sqrt(sq4.clamp(min=0.1))
    d_wx, d_wy, d_wz = r21 - r12, r02 - r20, r10 - r01
    s_xy, s_xz, s_yz = r01 + r10, r02 + r20, r12 + r21
    # Row i: 4 q_i * (w, x, y, z); dividing by 2 * (2 q_i) gives the quaternion.
    cand = torch.stack(
        (
            torch.stack((sq4[..., 0], d_wx, d_wy, d_wz), dim=-1),
            torch.stack((d_wx, sq4[..., 1], s_xy, s_xz), dim=-1),
            torch.stack((d_wy, s_xy, sq4[..., 2], s_yz), dim=-1),
            torch.stack((d_wz, s_xz, s_yz, sq4[..., 3]), dim=-1),
        ),
        dim=-2,
    ) / (2.0 * two_q[..., None])
    best = sq4.argmax(dim=-1, keepdim=True)[..., None].expand(*sq4.shape[:-1], 1, 4)
    q = torch.gather(cand, -2, best).squeeze(-2)
    q = torch.where(q[..., :1] < 0, -q, q)
    return F.normalize(q, dim=-1)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """Quaternions (w, x, y, z) to axis-angle with angle in [0, pi].

    Uses angle = 2 atan2(|v|, w) (well conditioned everywhere, unlike acos(w) near 0 or asin near
    pi). q and -q give the same result. A series replaces atan(x)/x for small |v| / w, so the
    gradient is finite at the identity.

    q: (..., 4) -> (..., 3)
    """
    q = F.normalize(q, dim=-1)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    n_sq = (v * v).sum(-1)
    # Only reached when w ~ 1, so dividing by w is safe in the series branch.
    x_sq = n_sq / (w * w).clamp(min=0.25)
    small = x_sq < _SMALL_ANGLE_SQ
    safe_n = torch.sqrt(torch.where(small, torch.ones_like(n_sq), n_sq))
    closed = 2.0 * torch.atan2(safe_n, w) / safe_n
    atan_ratio = 1.0 - x_sq * (1.0 / 3.0 - x_sq * (1.0 / 5.0 - x_sq * (1.0 / 7.0 - x_sq / 9.0)))
    series = 2.0 * atan_ratio / w.clamp(min=0.5)
    return torch.where(small, series, closed)[..., None] * v


def axis_angle_to_quaternion(aa: Tensor) -> Tensor:
    """Axis-angle to unit quaternions (w, x, y, z); w >= 0 for angles <= pi.

    aa: (..., 3) -> (..., 4)
    """
    theta_sq = (aa * aa).sum(-1)
    # cos(t/2) and sin(t/2)/t written in terms of t^2 / 4, via the same smooth sinc.
    half_sinc, _ = _sinc_and_versine(0.25 * theta_sq)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    cos_half = torch.where(
        small,
        1.0 - theta_sq / 8.0 * (1.0 - theta_sq / 48.0 * (1.0 - theta_sq / 120.0)),
        torch.cos(0.5 * torch.sqrt(safe)),
    )
    return torch.cat((cos_half[..., None], 0.5 * half_sinc[..., None] * aa), dim=-1)


def matrix_to_axis_angle(r: Tensor) -> Tensor:
    """Rotation matrices to axis-angle (rotation vectors) with angle in [0, pi].

    Goes through `matrix_to_quaternion`, so it is accurate near 0 and near pi. At exactly pi the
    sign of the axis is arbitrary (both describe the same rotation).

    r: (..., 3, 3) -> (..., 3)
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(r))


# ---------------------------------------------------------------------------------------------
# Quaternions in numpy (float64, (w, x, y, z))
#
# The synthetic world poses its bodies in numpy and regenerates every motion bit for bit from a
# seed. The torch functions above normalise their input and switch to series near angle 0, which
# moves the last bits (measured: about 1 value in 5 differs by up to 1e-15), so these keep the
# plain closed forms the motions were generated with. They agree with the torch ones to 1e-15.
# ---------------------------------------------------------------------------------------------


def axis_quaternion_np(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotations by `angle` (rad) about one coordinate axis (0 = x, 1 = y, 2 = z).

    w = cos(angle / 2), so w < 0 for |angle| > pi (the same rotation as -q).

    angle: (...) -> (..., 4)
    """
    q = np.zeros(angle.shape + (4,))
    q[..., 0] = np.cos(0.5 * angle)
    q[..., 1 + axis] = np.sin(0.5 * angle)
    return q


def quaternion_multiply_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b: the rotation b followed by a (R(a * b) = R(a) @ R(b)).

    a, b: (..., 4) -> (..., 4)
    """
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack((aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw), axis=-1)


def quaternion_to_axis_angle_np(q: np.ndarray) -> np.ndarray:
    """UNIT quaternions to rotation vectors with angle in [0, pi] (q is not renormalised).

    q: (..., 4) -> (..., 3)
    """
    # w >= 0 picks the rotation vector with angle <= pi.
    q = np.where(q[..., :1] < 0.0, -q, q)
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(s, q[..., 0])
    # Near zero angle/s -> 2/w; the guard only avoids 0/0, the series is exact to float64 there.
    scale = np.where(s > 1e-12, angle / np.maximum(s, 1e-300), 2.0 / q[..., 0])
    return v * scale[..., None]


# ---------------------------------------------------------------------------------------------
# Cameras
#
# box: (..., 3) = [cx, cy, size], centre and side in pixels of a SQUARE crop.
# K:   (..., 3, 3) pixel intrinsics (sensor_msgs/CameraInfo `k`); may be a shared (3, 3).
# cam: (..., 3) = [s, tx, ty], SPIN/HMR weak-perspective crop camera: a model-frame point X
#      maps to normalised crop coordinates s * (X_xy + [tx, ty]) in [-1, 1] over the box.
# T:   (..., 3) full-perspective translation, P_cam = X + T.
# ---------------------------------------------------------------------------------------------


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


def perspective_project(points: Tensor, k: Tensor, min_depth: float = 1e-6) -> Tensor:
    """Pinhole projection of camera-frame points to pixels (skew in K is honoured).

    Depth is clamped to `min_depth` (metres) from below so that points at or behind the camera
    give large but finite pixels instead of inf/NaN; their gradient through the depth is then
    zero. K must broadcast against the points' leading dims (a shared (3, 3) always does).

    points: (..., N, 3), k: (..., 3, 3) -> (..., N, 2)
    """
    z = points[..., 2:].clamp(min=min_depth)
    xy1 = torch.cat((points[..., :2] / z, torch.ones_like(z)), dim=-1)
    return xy1 @ k[..., :2, :].transpose(-1, -2)


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


# ---------------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------------


def similarity_transform(
    source: Tensor, target: Tensor, weights: Tensor | None = None, eps: float = 1e-12
) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares similarity (scale, proper rotation, translation) from source to target.

    Umeyama (1991): minimises sum_i w_i |scale * R @ source_i + t - target_i|^2 over scale > 0,
    R in SO(3) and t. The sign correction on the smallest singular direction keeps det R = +1
    even when the best orthogonal map is a reflection. `weights` (e.g. a visibility mask) makes
    missing points not count; a batch element needs at least 3 non-collinear weighted points for
    a unique R. Differentiable through the SVD, but its gradient is ill-conditioned when
    singular values repeat (symmetric point sets); intended for evaluation.

    source, target: (..., N, 3), weights: (..., N) or None
    -> scale (...), R (..., 3, 3), t (..., 3)
    """
    if weights is None:
        weights = torch.ones_like(source[..., 0])
    w = weights.to(source.dtype)
    w = (w / w.sum(-1, keepdim=True).clamp(min=eps))[..., None]
    mu_s = (w * source).sum(-2)
    mu_t = (w * target).sum(-2)
    xs = source - mu_s[..., None, :]
    xt = target - mu_t[..., None, :]
    var_s = (w * xs * xs).sum((-2, -1))
    cov = (w * xt).transpose(-1, -2) @ xs
    u, sv, vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    # det can be exactly 0 only for degenerate input; any sign is then as good as the other.
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.cat((torch.ones_like(sv[..., :2]), sign[..., None]), dim=-1)
    r = (u * d[..., None, :]) @ vh
    scale = (sv * d).sum(-1) / var_s.clamp(min=eps)
    t = mu_t - scale[..., None] * (r @ mu_s[..., None]).squeeze(-1)
    return scale, r, t


def procrustes_align(source: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Source aligned onto target by the best similarity transform (see `similarity_transform`).

    This is the alignment of PA-MPJPE. Weighted-out points are still transformed (they just do
    not influence the fit).

    source, target: (..., N, 3), weights: (..., N) or None -> (..., N, 3)
    """
    scale, r, t = similarity_transform(source, target, weights)
    return scale[..., None, None] * source @ r.transpose(-1, -2) + t[..., None, :]
