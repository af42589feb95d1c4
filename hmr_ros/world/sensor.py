"""What the synthetic camera records of its people: which points are visible (z-buffer and
image bounds), a detector's noisy 2D keypoints, and the sensor's blur, gain, gamma and noise."""

from __future__ import annotations

import cv2
import numpy as np

from ..data.frame import Keypoints
from ..geometry import perspective_project
from .domain import DomainConfig

# A joint (inside the body) counts as visible if the first surface along its ray is at most
# this much nearer than the joint itself: about a limb's or the torso's half thickness.
JOINT_DEPTH_MARGIN = 0.2
LANDMARK_DEPTH_MARGIN = 0.06


def visible_points(points_cam: np.ndarray, K: np.ndarray, object_map: np.ndarray,
                   depth: np.ndarray, own: int, margins: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Projected points (N, 2) and whether each is visible: inside the image, the surface at
    its pixel belongs to this person and is not much nearer than the point."""
    uv = perspective_project(points_cam, K, min_depth=None)
    h, w = object_map.shape
    px = np.round(uv).astype(np.int64)
    inside = (points_cam[:, 2] > 0.05) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) \
        & (px[:, 1] < h)
    vis = np.zeros(len(uv), dtype=bool)
    r, c = px[inside, 1], px[inside, 0]
    vis[inside] = (object_map[r, c] == own) & (depth[r, c] >= points_cam[inside, 2]
                                                - margins[inside])
    return uv, vis


def detector_noise(rng: np.random.Generator, xy: np.ndarray, visible: np.ndarray,
                   in_image: np.ndarray, box_height: float, domain: DomainConfig) -> Keypoints:
    """Simulated detector output from exact 2D joints (J, 2) and their visibility (J,)."""
    spec = domain.detector
    n = len(xy)
    sigma = spec.jitter * box_height
    out = xy + rng.standard_normal((n, 2)) * sigma
    conf = rng.uniform(0.6, 1.0, n)
    low = rng.random(n) < spec.low_conf_prob
    out[low] += rng.standard_normal((int(low.sum()), 2)) * 2 * sigma
    conf[low] = rng.uniform(0.05, 0.3, int(low.sum()))
    hidden = ~visible & in_image
    if spec.occluded == "drop":
        conf[hidden] = 0.0
    else:
        out[hidden] += rng.standard_normal((int(hidden.sum()), 2)) * spec.occluded_jitter \
            * box_height
        conf[hidden] = rng.uniform(0.05, 0.35, int(hidden.sum()))
    conf[rng.random(n) < spec.drop_prob] = 0.0
    conf[~in_image] = 0.0
    return Keypoints(spec.format, out.astype(np.float32), conf.astype(np.float32))


def apply_sensor(rng: np.random.Generator, image: np.ndarray, blur: float, gain: np.ndarray,
                 gamma: float, noise_std: float) -> np.ndarray:
    """The sensor's effects on a rendered uint8 image (H, W, 3): per-channel gain, gamma, a
    Gaussian blur of `blur` px, additive noise of `noise_std` (drawn from `rng`) -> uint8."""
    img = image.astype(np.float32) / 255.0
    img = np.clip(img * gain[None, None, :], 0, 1) ** gamma
    if blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = img * 255.0 + rng.standard_normal(img.shape, dtype=np.float32) * noise_std
    return np.clip(img, 0, 255).round().astype(np.uint8)
