"""`DetectionStage`: the step between an input and `Pipeline.process`.

For each frame it
1. asks the keypoint source for people when the frame brings none (a video, a webcam, a bag
   without a keypoint topic); a box-prompted source is first told where the tracks are
   expected, so people the whole-image detector misses are still looked for;
2. gives the people stable ids: detections that arrive with distinct ids (an upstream tracker,
   a synthetic stream) keep them unless `retrack`; all others go through the `Tracker`, whose
   ids become the REP-155 body ids of the estimates;
3. returns a new Frame (the input is never modified) and collects the ids of people gone for
   longer than the timeout, which `pop_lost` hands to the caller once
   (`AdaptationWorker.forget` drops their history).
"""

from __future__ import annotations

import dataclasses
import logging

from ..config import DetectorConfig
from ..data.frame import Frame
from .base import BoxPrompted, DetectorUnavailable, KeypointSource
from .tracker import Tracker

log = logging.getLogger("hmr_ros")


class DetectionStage:
    def __init__(self, source: KeypointSource | None = None, tracker: Tracker | None = None,
                 retrack: bool = False, timeout_s: float = 1.0) -> None:
        self.source = source
        self.tracker = tracker if tracker is not None else Tracker(timeout_s=timeout_s)
        self.retrack = retrack
        self.timeout_s = timeout_s
        self._given_seen: dict[int, int] = {}  # ids that came with the input -> last stamp
        self._lost: list[int] = []
        self.frames = 0
        self.detected = 0  # frames whose people came from the source
        self.time_jumps = 0  # times the stamps went backwards (bag loop, restarted camera)
        self._last_stamp: int | None = None

    @classmethod
    def from_config(cls, cfg: DetectorConfig, source: KeypointSource | None) -> DetectionStage:
        return cls(source, Tracker.from_config(cfg), cfg.tracker.retrack,
                   cfg.tracker.timeout_s)

    def process(self, frame: Frame) -> Frame:
        self.frames += 1
        if self._last_stamp is not None and frame.stamp_ns < self._last_stamp:
            self._time_jumped(self._last_stamp - frame.stamp_ns)
        self._last_stamp = frame.stamp_ns
        dets = tuple(frame.detections)
        if not dets and self.source is not None:
            if isinstance(self.source, BoxPrompted):
                self.source.set_prior_boxes(self.tracker.predicted_boxes(frame.stamp_ns))
            dets = tuple(self.source.detect(frame.image, frame.stamp_ns))
            self.detected += 1
        ids = [d.id for d in dets]
        given = (not self.retrack and len(dets) > 0 and min(ids) >= 0
                 and len(set(ids)) == len(ids))
        if given:
            for i in ids:
                self._given_seen[i] = frame.stamp_ns
            out = dets
            # Keep the tracker's clock and timeouts running through frames it does not see.
            self.tracker.update((), frame.stamp_ns)
        else:
            new = self.tracker.update(dets, frame.stamp_ns)
            out = tuple(dataclasses.replace(d, id=i) for d, i in zip(dets, new) if i >= 0)
        for i, stamp in list(self._given_seen.items()):
            if (frame.stamp_ns - stamp) / 1e9 > self.timeout_s or frame.stamp_ns < stamp:
                del self._given_seen[i]
                self._lost.append(i)
        self._lost += self.tracker.pop_lost()
        return dataclasses.replace(frame, detections=out)

    def _time_jumped(self, back_ns: int) -> None:
        """Stamps went backwards: nobody seen before the jump may be paired with a frame after
        it (tracking, and the adaptation's motion term over tau frames), so every person is
        lost; upstream ids may come back, tracker ids are new."""
        self.time_jumps += 1
        log.warning("image stamps jumped back by %.3f s (a bag loop or a restarted camera): "
                    "every person is lost and their adaptation history dropped", back_ns / 1e9)
        self._lost += list(self._given_seen)
        self._given_seen.clear()
        self.tracker.reset()

    def pop_lost(self) -> list[int]:
        """Ids whose person has not been seen for `timeout_s`, each reported once."""
        out, self._lost = self._lost, []
        return out

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def hog_available() -> bool:
    """Whether this OpenCV build has the HOG people detector (OpenCV 4, or 5's contrib)."""
    import cv2

    return hasattr(cv2, "HOGDescriptor") and hasattr(cv2,
                                                     "HOGDescriptor_getDefaultPeopleDetector")


def resolve_kind(cfg: DetectorConfig, input_has_keypoints: bool) -> str:
    """The detector to run: `auto` is none for inputs that bring keypoints, else
    mediapipe_hog where OpenCV has HOG, else mediapipe (one person)."""
    if cfg.kind != "auto":
        return cfg.kind
    if input_has_keypoints:
        return "none"
    return "mediapipe_hog" if hog_available() else "mediapipe"


def make_source(cfg: DetectorConfig, kind: str) -> KeypointSource | None:
    """The keypoint source of a resolved kind (None for none). DetectorUnavailable, with the
    install command, when its optional dependency is missing."""
    if kind == "none":
        return None
    from .mediapipe_pose import BlazePoseWhole
    from .multi_pose import BlazePoseBoxes

    if kind == "mediapipe":
        return BlazePoseWhole(cfg)
    if kind == "mediapipe_hog":
        return BlazePoseBoxes(cfg)
    raise DetectorUnavailable(f"unknown detector kind {kind!r}")


def build_stage(cfg: DetectorConfig, input_has_keypoints: bool, required: bool = False,
                source: KeypointSource | None = None) -> tuple[DetectionStage, str]:
    """The stage for an input, and a line saying what it does.

    `source` overrides the configured detector (tests, synthetic ground truth). When the
    configured detector is unavailable: an error if `required` (a video has no other
    keypoints) or the kind was asked for explicitly, else a warning and no detector.
    """
    if source is not None:
        return DetectionStage.from_config(cfg, source), f"keypoints from {source.name}"
    kind = resolve_kind(cfg, input_has_keypoints)
    try:
        src = make_source(cfg, kind)
    except DetectorUnavailable as err:
        if required or cfg.kind != "auto":
            raise
        log.warning("%s; without keypoints no person can be cropped", err)
        src, kind = None, "none"
    what = ("keypoints from the input" if input_has_keypoints and src is None
            else f"keypoints from {src.name}" if src is not None else "no keypoint detector")
    return DetectionStage.from_config(cfg, src), what
