"""2D keypoint detection and multi-person tracking for inputs without keypoints.

`base` (the KeypointSource protocol, boxes, the synthetic ground-truth source), `tracker`
(stable ids), `stage` (DetectionStage between an input and the pipeline), `mediapipe_pose`
(BlazePose, optional dependency, imported only when used), `hog` (OpenCV's HOG person boxes).
The 2D error of the predictions against the detected keypoints is a metric:
`hmr_ros.eval.keypoint_error`.
"""

from __future__ import annotations

from .base import (
    BoxPrompted,
    DetectorUnavailable,
    GroundTruthSource,
    KeypointSource,
    box_iou,
    detection_box,
    keypoint_box,
)
from .stage import DetectionStage, build_stage, hog_available, make_source, resolve_kind
from .tracker import Tracker

__all__ = [
    "BoxPrompted",
    "DetectionStage",
    "DetectorUnavailable",
    "GroundTruthSource",
    "KeypointSource",
    "Tracker",
    "box_iou",
    "build_stage",
    "detection_box",
    "hog_available",
    "keypoint_box",
    "make_source",
    "resolve_kind",
]
