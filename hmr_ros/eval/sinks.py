"""Sinks of the stream runner that measure or draw: ground-truth metrics, the held-out 2D
keypoint error (adapted, and a frozen twin on the same crops) and the overlay video."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..body import BodyModel
from ..data.frame import CameraModel, Frame, FrameResult, PersonEstimate
from ..pipeline import Pipeline
from .evaluate import StreamEvaluator
from .keypoint_error import KeypointErrorMeter
from .overlay import FrameSink, colour_for, draw_people

CameraFor = Callable[[Frame], CameraModel]


class TruthSink:
    """MPJPE / PA-MPJPE / PVE / ACCEL against the frames' ground truth."""

    def __init__(self, body: BodyModel) -> None:
        self.evaluator = StreamEvaluator(body)
        self.last: dict[str, float] = {}

    def add(self, frame: Frame, result: FrameResult) -> None:
        self.last = self.evaluator.add(frame, result)

    def summary(self) -> dict:
        return self.evaluator.summary()


class KeypointErrorSink:
    """The 2D error of the estimates against the input keypoints, and with `frozen` the same
    for the unadapted regressor run on the same frame (never submitted for adaptation)."""

    def __init__(self, camera_for: CameraFor, threshold: float,
                 frozen: Pipeline | None = None) -> None:
        self.camera_for = camera_for
        self.threshold = threshold
        self.frozen = frozen
        self.adapted = KeypointErrorMeter(threshold)
        self.baseline = KeypointErrorMeter(threshold) if frozen is not None else None
        self.last: float | None = None

    def add(self, frame: Frame, result: FrameResult) -> None:
        camera = self.camera_for(frame)
        self.last = self.adapted.add(frame.index, result.people, camera)
        if self.frozen is not None and self.baseline is not None:
            base = self.frozen.process(frame, submit=False)
            self.baseline.add(frame.index, base.people, camera)

    def report(self, adapt: bool, protocol: str) -> dict:
        adapted = self.adapted.summary()
        report = {
            "threshold": self.threshold,
            "normalised_by": "side of the square crop box",
            # Under `after` each frame is predicted after adapting on its own keypoints.
            "held_out": not (adapt and protocol == "after"),
            "protocol": protocol if adapt else "none",
        }
        if self.baseline is not None:
            report["frozen"] = self.baseline.summary()
            report["adapted"] = adapted
        elif adapt:
            report["adapted"] = adapted
        else:
            report["frozen"] = adapted
        return report


def draw_keypoints(image: np.ndarray, people: Sequence[PersonEstimate],
                   threshold: float = 0.2) -> np.ndarray:
    """Dots (in each person's colour) on the keypoints the estimates were made from."""
    out = image
    for p in people:
        if p.keypoints is None:
            continue
        c = tuple(int(v) for v in colour_for(p.id) * 255)
        for (x, y), conf in zip(p.keypoints.xy, p.keypoints.confidence):
            if conf > threshold:
                cv2.circle(out, (int(round(x)), int(round(y))), 2, c, -1, cv2.LINE_AA)
    return out


class OverlaySink:
    """Each person's mesh in its colour, its id, the model version and its keypoints, drawn
    over the images into a video (and a strip of frames beside it)."""

    def __init__(self, path: str | Path, fps: float, faces: np.ndarray, camera_for: CameraFor,
                 threshold: float) -> None:
        self.sink = FrameSink(Path(path), fps=fps)
        self.faces = faces
        self.camera_for = camera_for
        self.threshold = threshold
        self.path: Path | None = None  # the video written (set by `close`)

    def add(self, frame: Frame, result: FrameResult) -> None:
        img = draw_people(frame.image, result.people, self.faces, self.camera_for(frame),
                          label=f"v{result.model_version}")
        self.sink.add(draw_keypoints(img, result.people, self.threshold))

    def close(self) -> Path | None:
        self.path = self.sink.close()
        return self.path
