"""Person boxes from OpenCV's HOG + linear SVM people detector (Dalal & Triggs).

It ships inside OpenCV (no model file to download) and finds upright people whose body is
about 96 px tall or more in its 64x128 window; smaller people are found by upscaling the image
first (`upscale`). OpenCV 4 has it in the main module; OpenCV 5 moved it to the contrib build
(`opencv-contrib-python`, the one OpenCV distribution this package and MediaPipe depend on).
It is a box proposer only: BlazePose then confirms each box and finds the keypoints.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import DetectorUnavailable


class HogPeopleDetector:
    def __init__(self, upscale: float = 1.5, threshold: float = 1.0, stride: int = 8,
                 scale: float = 1.05) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorUnavailable(
                f"OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 moved it to "
                "opencv-contrib-python, which hmr_ros depends on; `python -m hmr_ros.envcheck` "
                "finds a second OpenCV installed over it); or use detector.kind=mediapipe "
                "(one person)")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale = upscale
        self.threshold = threshold
        self.stride = stride
        self.scale = scale

    def boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (N, 4) x_min, y_min, x_max, y_max in pixels of `image` (H, W, 3)
        and their SVM scores (N,), best first."""
        # Gradients of one grey channel cost a third of three colour channels and find the
        # same silhouettes.
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.upscale != 1.0:
            grey = cv2.resize(grey, None, fx=self.upscale, fy=self.upscale,
                              interpolation=cv2.INTER_LINEAR)
        rects, weights = self.hog.detectMultiScale(
            grey, winStride=(self.stride, self.stride), padding=(8, 8), scale=self.scale)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / self.upscale
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        keep = scores >= self.threshold
        rects, scores = rects[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")
        boxes = rects[order]
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x_min, y_min, x_max, y_max
        return boxes, scores[order]
