"""Square person crops: the box from keypoints or a detector box, and the image warp.

A box is `[cx, cy, size]` in image pixels (centre and side of a square). The crop maps the
box's edges onto the crop's edges: with pixel centres at integer coordinates, image x maps to
`(x - (cx - size/2)) * R / size - 0.5` in an R-pixel crop. Training renders through the same
matrix (`crop_matrix @ K`), so training and inference crops agree exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from ..config import InferenceConfig
    from .frame import Detection

# Keypoint boxes are enlarged by this factor: joints sit inside the body, and the head top and
# feet extend beyond the outermost keypoints of most layouts (SPIN uses 1.2 on full boxes).
KEYPOINT_BOX_SCALE = 1.3
BOX_SCALE = 1.1  # enlargement of a tight person box (detector or mask)
MIN_BOX_SIZE = 16.0  # pixels; smaller boxes are rejected as degenerate
# Validation at the door: a crop that is mostly black gives a confident-looking body
# that would be published and adapted on. Keypoints farther outside the image than this
# fraction of its larger side are treated as missing (a detector's extrapolation, or garbage
# such as x1e6); a box may be at most MAX_BOX_FACTOR times the image's larger side and must
# have at least MIN_BOX_OVERLAP of its area on the image; images smaller than MIN_IMAGE_SIZE
# on a side hold no person we can crop.
KEYPOINT_MARGIN = 0.5
MAX_BOX_FACTOR = 2.0
MIN_BOX_OVERLAP = 0.2
MIN_IMAGE_SIZE = 16
MAX_CROP_COORD = 1e7  # px; crop_image refuses boxes with larger centres or sizes


class CropError(ValueError):
    """No usable box: too few keypoints, degenerate or non-finite input."""


def box_from_keypoints(xy: np.ndarray, confidence: np.ndarray, threshold: float = 0.1,
                       scale: float = KEYPOINT_BOX_SCALE, min_joints: int = 4,
                       image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Square box (3,) [cx, cy, size] around keypoints with confidence > threshold.

    xy (J, 2) pixels; confidence (J,); image_size (width, height): keypoints beyond
    KEYPOINT_MARGIN outside it do not count. Raises CropError with fewer than `min_joints`
    usable keypoints or a degenerate extent.
    """
    xy = np.asarray(xy, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    ok = (conf > threshold) & np.all(np.isfinite(xy), axis=1)
    confident = int(ok.sum())
    if image_size is not None and confident:
        w, h = image_size
        m = KEYPOINT_MARGIN * max(w, h)
        with np.errstate(invalid="ignore"):
            inside = ((xy[:, 0] >= -m) & (xy[:, 0] <= w - 1 + m)
                      & (xy[:, 1] >= -m) & (xy[:, 1] <= h - 1 + m))
        ok &= inside
        if ok.sum() < min_joints:
            raise CropError(f"only {int(ok.sum())} of {confident} confident keypoints lie "
                            f"on or near the {w}x{h} image; need {min_joints}")
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


def check_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """`box` if it is a sane crop of a width x height image, else CropError: finite, at least
    MIN_BOX_SIZE and at most MAX_BOX_FACTOR times the image's larger side, with at least
    MIN_BOX_OVERLAP of its area on the image."""
    b = np.asarray(box, dtype=np.float64).reshape(3)
    if min(width, height) < MIN_IMAGE_SIZE:
        raise CropError(f"image of {width}x{height} px is too small to crop a person from")
    if not np.all(np.isfinite(b)) or b[2] < MIN_BOX_SIZE:
        raise CropError(f"box {b.tolist()} is not finite or smaller than {MIN_BOX_SIZE} px")
    if b[2] > MAX_BOX_FACTOR * max(width, height):
        raise CropError(f"box of {b[2]:.0f} px is more than {MAX_BOX_FACTOR:g}x the "
                        f"{width}x{height} image")
    x0, y0, x1, y1 = box_to_xyxy(b)
    on = max(0.0, min(x1, width) - max(x0, 0.0)) * max(0.0, min(y1, height) - max(y0, 0.0))
    if on < MIN_BOX_OVERLAP * b[2] ** 2:
        raise CropError(f"only {on / b[2] ** 2:.0%} of the box lies on the image; need "
                        f"{MIN_BOX_OVERLAP:.0%}")
    return b


def person_box(det: Detection, cfg: InferenceConfig, width: int | None = None,
               height: int | None = None) -> np.ndarray:
    """The square crop box (3,) of a detection, the one crop rule of inference and training:
    from its 2D keypoints (`cfg.keypoint_threshold`, `cfg.box_scale`, `cfg.min_keypoints`),
    else from its box; CropError when it has nothing usable. With the image size, keypoints
    far off the image do not count and the box must be a sane crop of the image
    (`check_box`)."""
    size = (width, height) if width is not None and height is not None else None
    if det.keypoints is not None:
        try:
            box = box_from_keypoints(det.keypoints.xy, det.keypoints.confidence,
                                     cfg.keypoint_threshold, cfg.box_scale,
                                     cfg.min_keypoints, image_size=size)
            return check_box(box, *size) if size else box
        except CropError:
            if det.box is None:
                raise
    if det.box is not None:
        box = box_from_xyxy(det.box)
        return check_box(box, *size) if size else box
    raise CropError("no keypoints and no box")


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
    b = np.asarray(box, dtype=np.float64).reshape(3)
    # Beyond these the crop matrix loses all precision (NaN and wrapped integer taps).
    if not np.all(np.isfinite(b)) or not 1e-3 <= b[2] <= MAX_CROP_COORD or \
            np.abs(b[:2]).max() > MAX_CROP_COORD or image.size == 0:
        raise CropError(f"cannot crop box {b.tolist()} from an image of shape {image.shape}")
    m = crop_matrix(b, size)[:2]
    # Downscaling by a large factor aliases with bilinear sampling; pre-blur in proportion.
    shrink = float(b[2]) / size
    src = image
    if shrink > 2.0:
        # Capped at the image size: a wider blur changes nothing but asks OpenCV for a
        # kernel it cannot allocate (a box of 1e9 px was cv2.error bad_array_new_length).
        sigma = min(0.4 * shrink, float(max(image.shape[:2])))
        src = cv2.GaussianBlur(image, (0, 0), sigma)
    return _bilinear(src, m[0, 0], m[0, 2], m[1, 1], m[1, 2], size)


def _bilinear(src: np.ndarray, ax: float, bx: float, ay: float, by: float,
              size: int) -> np.ndarray:
    """Bilinear resampling of `src` under crop pixel = a * image pixel + b (per axis), black
    outside. Written in numpy rather than cv2.warpAffine: OpenCV's 8-bit fixed-point warp
    gave different crops under opencv-python-headless 5.0 and opencv-contrib-python 5.1
    (one grey level in about 0.01% of pixels, enough to move adaptation results), while
    numpy's elementwise float arithmetic is the same in every build."""
    h, w = src.shape[:2]
    grid = np.arange(size, dtype=np.float64)
    xs, ys = (grid - bx) / ax, (grid - by) / ay
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - x0).astype(np.float32), (ys - y0).astype(np.float32)
    img = src if src.ndim == 3 else src[:, :, None]

    def taps(i: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.clip(i, 0, n - 1), ((i >= 0) & (i < n)).astype(np.float32)

    (xa, mxa), (xb, mxb) = taps(x0, w), taps(x0 + 1, w)
    (ya, mya), (yb, myb) = taps(y0, h), taps(y0 + 1, h)
    # Weights of the four taps, zero where a tap falls outside the image.
    wx0, wx1 = ((1 - fx) * mxa)[None, :, None], (fx * mxb)[None, :, None]
    wy0, wy1 = ((1 - fy) * mya)[:, None, None], (fy * myb)[:, None, None]
    ya, yb, xa, xb = ya[:, None], yb[:, None], xa[None, :], xb[None, :]
    out = (wy0 * (wx0 * img[ya, xa] + wx1 * img[ya, xb])
           + wy1 * (wx0 * img[yb, xa] + wx1 * img[yb, xb]))
    if src.ndim == 2:
        out = out[:, :, 0]
    if src.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(src.dtype)
