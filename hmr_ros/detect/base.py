"""Keypoint sources: anything that turns an image into people with 2D keypoints.

A source returns `Detection`s (data/frame.py) with id -1: ids are the tracker's job
(`tracker.py`), so every source gets the same stable, never reused ids. Sources in this
package: MediaPipe BlazePose in-process (`mediapipe_pose.py`, an optional dependency), and the
ground truth of a synthetic stream (`GroundTruthSource`, below). Keypoints that arrive with the
input (an upstream topic, a bag's `hmr_ros/msg/Keypoints2DArray`) need no source: the
detection stage (`stage.py`) only asks a source when a frame has no detections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ..data.frame import Detection, Frame, Keypoints
from ..errors import HmrRosError

if TYPE_CHECKING:
    from ..world.scene import SyntheticFrame, SyntheticSequence


class DetectorUnavailable(HmrRosError, RuntimeError):
    """A detector's optional dependency is missing; the message says how to install it."""


@runtime_checkable
class KeypointSource(Protocol):
    """`detect(image, stamp_ns)`: image (H, W, 3) RGB uint8 -> the people in it, id -1."""

    name: str

    def detect(self, image: np.ndarray, stamp_ns: int) -> list[Detection]: ...

    def close(self) -> None: ...


@runtime_checkable
class BoxPrompted(Protocol):
    """A source that can also look where the tracker expects people: `prior_boxes` (N, 4)
    x_min, y_min, x_max, y_max in pixels, set before each `detect`."""

    def set_prior_boxes(self, boxes: np.ndarray) -> None: ...


def keypoint_box(kp: Keypoints, threshold: float = 0.2, pad: float = 0.1) -> np.ndarray | None:
    """Tight (4,) x_min, y_min, x_max, y_max box of the keypoints above `threshold`, grown by
    `pad` of its height on every side (joints sit inside the body, the silhouette extends
    beyond them); None with fewer than 2 such keypoints or a degenerate extent."""
    ok = kp.confidence > threshold
    if ok.sum() < 2:
        return None
    lo, hi = kp.xy[ok].min(0).astype(np.float64), kp.xy[ok].max(0).astype(np.float64)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    if not np.isfinite(extent) or extent < 2.0:
        return None
    m = pad * extent
    return np.array([lo[0] - m, lo[1] - m, hi[0] + m, hi[1] + m])


def detection_box(det: Detection, threshold: float = 0.2) -> np.ndarray | None:
    """The box a detection brings, or else the one its keypoints span."""
    if det.box is not None:
        return np.asarray(det.box, dtype=np.float64).reshape(4)
    return keypoint_box(det.keypoints, threshold) if det.keypoints is not None else None


def _areas(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersections (N, M) of boxes a (N, 4) and b (M, 4), xyxy, and their areas (N,), (M,)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    return inter, area_a, area_b


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) and b (M, 4), xyxy -> (N, M)."""
    inter, area_a, area_b = _areas(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box of boxes a (N, 4) and b (M, 4), xyxy -> (N, M): 1
    when one box holds the other (a person box around a tighter keypoint box)."""
    inter, area_a, area_b = _areas(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


class GroundTruthSource:
    """The people of a synthetic stream as a keypoint source: the detector-noise keypoints
    (or, with `exact`, the exact projections with visibility as confidence) and the visible
    box of every person, ids removed so that a tracker has to find them.

    `frames()` yields the stream's frames without their detections (image, camera, ground
    truth kept); `detect` then answers for the frame with that stamp from the same rendering,
    so each frame is rendered once. `truth_ids` holds the true ids of the last answer, in the
    order of its detections (for tests of tracking).
    """

    name = "ground_truth"

    def __init__(self, sequence: SyntheticSequence, exact: bool = False,
                 start_ns: int | None = None) -> None:
        self.sequence = sequence
        self.exact = exact
        # Frame i has stamp start_ns + i / fps; a video written from the stream starts at 0.
        self.start_ns = sequence.start_ns if start_ns is None else int(start_ns)
        self._cached: tuple[int, SyntheticFrame] | None = None
        self.truth_ids: list[int] = []

    def _frame(self, i: int) -> SyntheticFrame:
        if self._cached is None or self._cached[0] != i:
            self._cached = (i, self.sequence.frame(i))
        return self._cached[1]

    def index_of(self, stamp_ns: int) -> int:
        return int(round((stamp_ns - self.start_ns) * self.sequence.fps / 1e9))

    def frames(self) -> Iterator[Frame]:
        for i in range(len(self.sequence)):
            f = self._frame(i).frame
            yield dataclasses.replace(f, detections=(),
                                      stamp_ns=self.start_ns + f.stamp_ns
                                      - self.sequence.start_ns)

    def detect(self, image: np.ndarray, stamp_ns: int) -> list[Detection]:
        i = self.index_of(stamp_ns)
        if not 0 <= i < len(self.sequence):
            self.truth_ids = []
            return []
        out, ids = [], []
        for view in self._frame(i).people:
            if view.box is None:
                continue  # nothing of this person is visible
            kp = view.keypoints_gt if self.exact else view.keypoints
            out.append(Detection(-1, kp, view.box.copy()))
            ids.append(view.id)
        self.truth_ids = ids
        return out

    def close(self) -> None:
        self._cached = None
