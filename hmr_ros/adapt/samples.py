"""`SampleBuffer`: what the adaptation worker keeps of the people inference saw, and which of
them the next step takes.

`submit` (the inference thread) appends the people of one frame to their tracks' bounded
histories and, for the `every_frame` / `every_n` schedules, queues the frame; `next_index`
names the frame to adapt on next and `select` picks its samples: each person of that frame
(plus `batch_frames - 1` earlier frames of the same person, drawn from the worker's rng), the
partner `tau` frames back for the motion term and the sample one frame back for motion cues.
The owner of the buffer serialises calls (the worker holds its lock around every call).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..config import AdaptConfig
from ..data.frame import Keypoints


@dataclass(frozen=True)
class AdaptSample:
    """One person in one frame, as inference saw it: the crop (R, R, 3) uint8, its box (3,),
    K (3, 3) and the 2D keypoints in image pixels."""

    track: int
    index: int
    stamp_ns: int
    crop: np.ndarray
    box: np.ndarray
    K: np.ndarray
    keypoints: Keypoints


@dataclass(frozen=True)
class Picked:
    """The samples of one step: `current[i]`, its motion partner `previous[i]` (itself when
    the person has no sample tau frames back) and `earlier[i]`, the same person one frame
    back (None when that frame is not buffered)."""

    index: int
    current: list[AdaptSample]
    previous: list[AdaptSample]
    earlier: list[AdaptSample | None]

    @property
    def format(self) -> str:
        return self.current[0].keypoints.format


def usable_confidence(sample: AdaptSample, threshold: float) -> np.ndarray:
    """(J,) float32 confidences, 0 for keypoints below `threshold`."""
    conf = sample.keypoints.confidence
    return np.where(conf >= threshold, conf, 0.0).astype(np.float32)


class SampleBuffer:
    """Per-track histories of `AdaptSample`s and the schedule over their frames."""

    def __init__(self, cfg: AdaptConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng  # shared with the worker's other draws: one order of draws per run
        self.tracks: dict[int, deque[AdaptSample]] = {}
        self._frames: deque[int] = deque()  # frame indices waiting (every_frame, every_n)
        self._newest = -1
        self._last_done = -1
        self._counter = -1
        self._since = 0  # frames submitted since the last pick
        self.stands_for = 1  # frames the last pick stands for (schedule latest: those since)
        self.dropped = 0  # queued frames pushed out before a step took them

    def __len__(self) -> int:
        return sum(len(d) for d in self.tracks.values())

    def submit(self, samples: list[AdaptSample]) -> None:
        """Add the people of one frame. Frames are numbered in submission order (their
        `index` is replaced by that number), so tau and the schedules count submitted frames
        even when a source restarts its indices (a replayed bag) or inference skipped
        images."""
        self._counter += 1
        self._since += 1
        index = self._counter
        for s in samples:
            s = dataclasses.replace(s, index=index)
            d = self.tracks.get(s.track)
            if d is None:
                d = self.tracks[s.track] = deque(maxlen=self.cfg.buffer_frames)
            d.append(s)
        self._newest = max(self._newest, index)
        if self.cfg.schedule != "latest" and (self.cfg.schedule == "every_frame"
                                              or index % self.cfg.every_n == 0):
            self._frames.append(index)
            while len(self._frames) > self.cfg.buffer_frames:
                self._frames.popleft()
                self.dropped += 1

    def forget(self, track: int) -> None:
        self.tracks.pop(track, None)

    def next_index(self) -> int | None:
        """The frame to adapt on next (marked as taken), or None while none is pending."""
        if self.cfg.schedule == "latest":
            if self._newest <= self._last_done:
                return None
            index = self._newest
            self.stands_for, self._since = max(1, self._since), 0
        else:
            index = None
            while self._frames:
                candidate = self._frames.popleft()
                if candidate > self._last_done:
                    index = candidate
                    break
            if index is None:
                return None
        self._last_done = index
        return index

    def select(self, index: int) -> Picked | None:
        """The samples of frame `index` (plus earlier frames when batch_frames > 1) and their
        partners, or None when no person of the frame has enough usable keypoints."""
        cfg = self.cfg
        cur, prev, fmt = [], [], None
        for dq in self.tracks.values():
            history = [s for s in dq if s.index <= index]
            if not history or history[-1].index != index:
                continue  # this person is not in the frame
            chosen = [history[-1]]
            extra = min(cfg.batch_frames - 1, len(history) - 1)
            if extra > 0:
                picks = self.rng.choice(len(history) - 1, size=extra, replace=False)
                chosen += [history[int(i)] for i in sorted(picks)]
            for s in chosen:
                if (usable_confidence(s, cfg.keypoint_threshold) > 0).sum() < cfg.min_keypoints:
                    continue
                if fmt is None:
                    fmt = s.keypoints.format
                if s.keypoints.format != fmt:
                    continue
                partners = [p for p in dq if p.index <= s.index - cfg.tau
                            and p.keypoints.format == fmt]
                cur.append(s)
                prev.append(partners[-1] if partners else s)
        if not cur:
            return None
        earlier = [_sample_at(self.tracks[s.track], s.index - 1) for s in cur]
        return Picked(index, cur, prev, earlier)

    def live_keys(self) -> set[tuple[int, int, int]]:
        """(track, index, crop id) of every buffered sample."""
        return {(s.track, s.index, id(s.crop)) for dq in self.tracks.values() for s in dq}


def _sample_at(dq: deque[AdaptSample], index: int) -> AdaptSample | None:
    """The sample of frame `index` in a track's buffer, or None."""
    for s in reversed(dq):
        if s.index == index:
            return s
        if s.index < index:
            return None
    return None
