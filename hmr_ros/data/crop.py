"""Square person crops: the box from keypoints or a detector box, and the image warp.

A box is `[cx, cy, size]` in image pixels (centre and side of a square). The crop maps the
box's edges onto the crop's edges: with pixel centres at integer coordinates, image x maps to
`(x - (cx - size/2)) * R / size - 0.5` in an R-pixel crop. Training renders through the same
matrix (`crop_matrix @ K`), so training and inference crops agree exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

# Keypoint boxes are enlarged by this factor: joints sit inside the body, and the head top and
# feet extend beyond the outermost keypoints of most layouts (SPIN uses 1.2 on full boxes).
KEYPOINT_BOX_SCALE = 1.3
BOX_SCALE = 1.1  # enlargement of a tight person box (detector or mask)
MIN_BOX_SIZE = 16.0  # pixels; smaller boxes are rejected as degenerate


class CropError(ValueError):
    """No usable box: too few keypoints, degenerate or non-finite input."""


def box_from_keypoints(xy: np.ndarray, confidence: np.ndarray, threshold: float = 0.1,
                       scale: float = KEYPOINT_BOX_SCALE, min_joints: int = 4) -> np.ndarray:
    """Square box (3,) [cx, cy, size] around keypoints with confidence > threshold.

    xy (J, 2) pixels; confidence (J,). Raises CropError with fewer than `min_joints` usable
    keypoints or a degenerate extent.
    """
    xy = np.asarray(xy, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    ok = (conf > threshold) & np.all(np.isfinite(xy), axis=1)
    if ok.sum() < min_joints:
        raise CropError(f"only {int(ok.sum())} keypoints above confidence {threshold}; "
                        f"need {min_joints}")
    lo, hi = xy[ok].min(0), xy[ok].max(0)
    size = float((hi - lo).max()) * scale
    if not np.isfinite(size) or size < MIN_BOX_SIZE:
        raise CropError(f"keypoint box of {size:.1f} px is too small")
    centre = (lo + hi) / 2.0
    return np.array([centre[0], centre[1], size])


def box_from_xyxy(box: np.ndarray, scale: float = BOX_SCALE) -> np.ndarray:
    """Square box (3,) around an (x_min, y_min, x_max, y_max) rectangle."""
    b = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
        raise CropError(f"invalid box {b.tolist()}")
    size = float(max(b[2] - b[0], b[3] - b[1])) * scale
    if size < MIN_BOX_SIZE:
        raise CropError(f"box of {size:.1f} px is too small")
    return np.array([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, size])


def box_to_xyxy(box: np.ndarray) -> np.ndarray:
    cx, cy, s = np.asarray(box, dtype=np.float64).reshape(3)
    return np.array([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])


def crop_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """(3, 3) affine map from image pixels to crop pixels of a `size`-pixel square crop."""
    cx, cy, s = np.asarray(box, dtype=np.float64).reshape(3)
    a = size / s
    return np.array([[a, 0.0, -(cx - s / 2.0) * a - 0.5],
                     [0.0, a, -(cy - s / 2.0) * a - 0.5],
                     [0.0, 0.0, 1.0]])


def crop_image(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, C) crop of `image` for `box`; outside the image is black."""
    m = crop_matrix(box, size)[:2]
    # Downscaling by a large factor aliases with bilinear sampling; pre-blur in proportion.
    shrink = float(np.asarray(box).reshape(3)[2]) / size
    src = image
    if shrink > 2.0:
        sigma = 0.4 * shrink
        src = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
