"""A small multi-person tracker: stable ids across frames from boxes and 2D keypoints.

Each frame, every live track predicts its box at the frame's stamp (constant velocity of the
box centre, so people who cross keep moving the way they were going while hidden), and every
detection gets a match score with every track:

    score = (IoU(predicted box, detection box) + keypoint similarity) / 2

where the keypoint similarity is COCO's OKS form, the mean of exp(-d^2 / (2 sigma^2)) over the
joints both have, with sigma a tenth of the track's box height; without comparable keypoints
the score is the IoU alone. Pairs are taken greedily, best score first, down to
`match_threshold`. IoU alone confuses two overlapping people of similar size; the keypoints
(head above head, feet on feet) tell them apart.

Unmatched detections start tracks. A track gets its id after `min_hits` matched detections
(a tentative track that misses a frame is dropped, so one-off false detections never get an
id); ids count up from 1 and are never reused. A track unseen for `timeout_s` (by stamps, not
frames) is lost: it is removed and its id reported once by `pop_lost`, so that per-person
state elsewhere (the adaptation worker's buffers) can be dropped. A person who comes back
after that gets a new id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.frame import Detection, Keypoints
from .base import box_iou, detection_box

OKS_SIGMA = 0.1  # of the box height: a joint this far off counts exp(-1/2)
VELOCITY_SMOOTHING = 0.5  # weight of the newest displacement in the velocity estimate


@dataclass
class Track:
    """One person being followed. box (4,) xyxy at `last_stamp`; velocity (2,) px/s of the
    box centre; keypoints of the last matched detection (or None)."""

    key: int
    box: np.ndarray
    keypoints: Keypoints | None
    first_stamp: int
    last_stamp: int
    id: int = -1  # -1 while tentative
    hits: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def shift(self, stamp_ns: int, horizon_s: float) -> np.ndarray:
        """(2,) predicted displacement of the box centre since the last match."""
        dt = min(max((stamp_ns - self.last_stamp) / 1e9, 0.0), horizon_s)
        return self.velocity * dt

    def predicted_box(self, stamp_ns: int, horizon_s: float = 1.0) -> np.ndarray:
        d = self.shift(stamp_ns, horizon_s)
        return self.box + np.array([d[0], d[1], d[0], d[1]])


def keypoint_similarity(a: Keypoints, b: Keypoints, shift: np.ndarray, height: float,
                        threshold: float, min_joints: int = 3) -> float | None:
    """OKS-style similarity in [0, 1] of keypoints `a` moved by `shift` (2,) and `b`, or None
    when they share fewer than `min_joints` confident joints or differ in layout."""
    if a.format != b.format:
        return None
    both = (a.confidence > threshold) & (b.confidence > threshold)
    if both.sum() < min_joints or height <= 0:
        return None
    d2 = np.sum((a.xy[both] + shift - b.xy[both]) ** 2, axis=1)
    sigma = OKS_SIGMA * height
    return float(np.mean(np.exp(-d2 / (2.0 * sigma * sigma))))


class Tracker:
    """Greedy IoU + keypoint matching with per-track timeouts; see the module docstring."""

    def __init__(self, match_threshold: float = 0.2, min_hits: int = 1, timeout_s: float = 1.0,
                 keypoint_threshold: float = 0.2) -> None:
        if min_hits < 1 or timeout_s <= 0:
            raise ValueError("min_hits must be >= 1 and timeout_s positive")
        self.match_threshold = match_threshold
        self.min_hits = min_hits
        self.timeout_s = timeout_s
        self.keypoint_threshold = keypoint_threshold
        self.tracks: list[Track] = []
        self._next_id = 1
        self._next_key = 0
        self._lost: list[int] = []
        self._last_stamp: int | None = None

    @classmethod
    def from_config(cls, cfg) -> Tracker:
        """From a `DetectorConfig` (match_threshold, min_hits, timeout_s)."""
        return cls(cfg.tracker.match_threshold, cfg.tracker.min_hits,
                   cfg.tracker.timeout_s)

    @property
    def active_ids(self) -> list[int]:
        return [t.id for t in self.tracks if t.id >= 0]

    def predicted_boxes(self, stamp_ns: int) -> np.ndarray:
        """(N, 4) where the live tracks are expected at `stamp_ns` (for box-prompted sources)."""
        boxes = [t.predicted_box(stamp_ns, self.timeout_s) for t in self.tracks]
        return np.array(boxes).reshape(-1, 4)

    def pop_lost(self) -> list[int]:
        """Ids of tracks lost since the last call (each reported once)."""
        out, self._lost = self._lost, []
        return out

    def reset(self) -> None:
        """Lose every track (ids are still never reused)."""
        self._lost += [t.id for t in self.tracks if t.id >= 0]
        self.tracks = []
        self._last_stamp = None

    def _score(self, track: Track, det: Detection, box: np.ndarray, stamp_ns: int) -> float:
        pred = track.predicted_box(stamp_ns, self.timeout_s)
        iou = float(box_iou(pred, box)[0, 0])
        if track.keypoints is None or det.keypoints is None:
            return iou
        oks = keypoint_similarity(track.keypoints, det.keypoints,
                                  track.shift(stamp_ns, self.timeout_s),
                                  float(track.box[3] - track.box[1]), self.keypoint_threshold)
        return iou if oks is None else 0.5 * (iou + oks)

    def update(self, detections: list[Detection] | tuple[Detection, ...], stamp_ns: int
               ) -> list[int]:
        """Match one frame's detections; returns their ids in input order (-1 for a detection
        without a usable box or on a still tentative track)."""
        if self._last_stamp is not None and stamp_ns < self._last_stamp - self.timeout_s * 1e9:
            self.reset()  # the stream jumped back (a bag played again): start afresh
        self._last_stamp = stamp_ns
        # Time out first, so a track gone too long cannot take a detection.
        keep = []
        for t in self.tracks:
            if (stamp_ns - t.last_stamp) / 1e9 > self.timeout_s:
                if t.id >= 0:
                    self._lost.append(t.id)
            else:
                keep.append(t)
        self.tracks = keep

        boxes = [detection_box(d, self.keypoint_threshold) for d in detections]
        pairs = []
        for ti, t in enumerate(self.tracks):
            for di, (d, b) in enumerate(zip(detections, boxes)):
                if b is None:
                    continue
                s = self._score(t, d, b, stamp_ns)
                if s >= self.match_threshold and s > 0.0:
                    pairs.append((s, ti, di))
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        track_of: dict[int, Track] = {}
        used: set[int] = set()
        for _, ti, di in pairs:
            if ti in used or di in track_of:
                continue
            used.add(ti)
            track_of[di] = self.tracks[ti]

        ids = [-1] * len(detections)
        matched: set[int] = set()
        for di, t in track_of.items():
            self._advance(t, detections[di], boxes[di], stamp_ns)
            matched.add(t.key)
            ids[di] = t.id
        # A tentative track that missed this frame was most likely a false detection.
        self.tracks = [t for t in self.tracks if t.id >= 0 or t.key in matched]
        for di, (d, b) in enumerate(zip(detections, boxes)):
            if di in track_of or b is None:
                continue
            t = Track(self._next_key, b.copy(), d.keypoints, stamp_ns, stamp_ns)
            self._next_key += 1
            self._confirm(t)
            self.tracks.append(t)
            ids[di] = t.id
        return ids

    def _displacement(self, t: Track, det: Detection, box: np.ndarray) -> np.ndarray | None:
        """(2,) how far the person moved since the track's last match: the median shift of
        the joints seen in both (a box shrinks and jumps when the person is half hidden,
        the visible joints still move with the body), else the shift of the box centre if
        the box kept its height; None when neither can be trusted."""
        a, b = t.keypoints, det.keypoints
        if a is not None and b is not None and a.format == b.format:
            thr = self.keypoint_threshold
            both = (a.confidence > thr) & (b.confidence > thr)
            if both.sum() >= 3:
                return np.median(b.xy[both] - a.xy[both], axis=0).astype(np.float64)
        h_old, h_new = float(t.box[3] - t.box[1]), float(box[3] - box[1])
        if not 0.8 <= h_new / max(h_old, 1e-6) <= 1.25:
            return None  # the box changed shape: occlusion or a partial detection
        return ((box[:2] + box[2:]) - (t.box[:2] + t.box[2:])) / 2.0

    def _advance(self, t: Track, det: Detection, box: np.ndarray, stamp_ns: int) -> None:
        dt = (stamp_ns - t.last_stamp) / 1e9
        shift = self._displacement(t, det, box) if dt > 0 else None
        if shift is not None:
            step = shift / dt
            t.velocity = step if t.hits == 1 else (
                VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * t.velocity)
        t.box = box.copy()
        t.keypoints = det.keypoints
        t.last_stamp = stamp_ns
        t.hits += 1
        self._confirm(t)

    def _confirm(self, t: Track) -> None:
        if t.id < 0 and t.hits >= self.min_hits:
            t.id = self._next_id
            self._next_id += 1
