"""Dense optical flow between a person's crops in consecutive frames (OpenCV DIS).

Consecutive crops of one person have different boxes (the box follows the keypoints), so the
flow DIS finds between them is in crop pixels of two different frames of reference. `crop_flow`
turns it into IMAGE-pixel motion: for crop pixel c of frame a, DIS says the same content is at
c + f in crop b; the image points are `inv(M_a) c` and `inv(M_b) (c + f)` (M the crop matrix
of `crop.crop_matrix`), and their difference is the image flow at that point of frame a,
stored on crop a's grid. The backward field (b to a) is stored likewise on crop b's grid.

Colour noise on the inputs (the paper's robustness detail) is not added here: our sensor model
already puts noise on every frame, and DIS runs on grey levels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from .crop import crop_matrix

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
           "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

_local = threading.local()  # one DIS object per thread and preset (they hold buffers)


@dataclass(frozen=True)
class CropFlow:
    """Image motion between two frames of one person, on the two crops' grids.

    forward (2, R, R) float16: image-pixel displacement (dx, dy) from frame a to b at crop a's
    pixel centres; backward (2, R, R) float16: from b to a at crop b's pixel centres. float16
    keeps 8 R^2 bytes per pair (131 kB at R = 128) with a resolution of 1/32 px below 64 px.
    """

    forward: np.ndarray
    backward: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.forward.nbytes + self.backward.nbytes)


def _dis(preset: str) -> cv2.DISOpticalFlow:
    if preset not in PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; one of {sorted(PRESETS)}")
    cache = getattr(_local, "dis", None)
    if cache is None:
        cache = _local.dis = {}
    if preset not in cache:
        cache[preset] = cv2.DISOpticalFlow_create(PRESETS[preset])
    return cache[preset]


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB or (H, W) -> (H, W) uint8 grey levels."""
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def dis_flow(a: np.ndarray, b: np.ndarray, preset: str = "fast") -> np.ndarray:
    """Dense flow (H, W, 2) float32 in pixels from image a to image b (same size, RGB or grey)
    by OpenCV's DIS in `preset` (ultrafast | fast | medium)."""
    ga, gb = grey(a), grey(b)
    if ga.shape != gb.shape:
        raise ValueError(f"flow between images of different sizes: {ga.shape} vs {gb.shape}")
    return _dis(preset).calc(ga, gb, None)


def to_image_motion(flow: np.ndarray, box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """Crop-pixel flow (R, R, 2) from crop a (box_a) to crop b (box_b) -> image-pixel motion
    (R, R, 2) at crop a's pixel centres."""
    r = flow.shape[0]
    ma, mb = crop_matrix(box_a, r), crop_matrix(box_b, r)
    # Crop matrices are axis-aligned (image = (crop - offset) / scale per axis), so the motion
    # is flow / scale_b plus a term linear in the crop coordinate: 1-D, in float32 (a 2-D
    # float64 meshgrid took 1.4 ms per call at R = 128).
    grid = np.arange(r, dtype=np.float64)
    out = np.empty((r, r, 2), dtype=np.float32)
    for axis, shape in ((0, (1, r)), (1, (r, 1))):
        sa, oa, sb, ob = ma[axis, axis], ma[axis, 2], mb[axis, axis], mb[axis, 2]
        base = (grid * (1.0 / sb - 1.0 / sa) + (oa / sa - ob / sb)).astype(np.float32)
        out[..., axis] = flow[..., axis] * np.float32(1.0 / sb) + base.reshape(shape)
    return out


def crop_flow(crop_a: np.ndarray, box_a: np.ndarray, crop_b: np.ndarray, box_b: np.ndarray,
              preset: str = "fast") -> CropFlow:
    """Forward and backward image motion between a person's crops (R, R, 3) of frames a and
    b, with their boxes (3,) [cx, cy, size]."""
    fwd = to_image_motion(dis_flow(crop_a, crop_b, preset), box_a, box_b)
    bwd = to_image_motion(dis_flow(crop_b, crop_a, preset), box_b, box_a)
    return CropFlow(np.ascontiguousarray(fwd.transpose(2, 0, 1), dtype=np.float16),
                    np.ascontiguousarray(bwd.transpose(2, 0, 1), dtype=np.float16))
