"""`FrameSync`: pairs the newest images with their keypoints by header stamp (no ROS).

Subscription callbacks only call `add_image` / `add_keypoints` (an append under a lock, never
a wait); the inference thread calls `wait`, which hands out the NEWEST image that has a
keypoints message with the same stamp (or the nearest one within `tolerance_ns`) and drops
every older image. Images wait in a small ring (`image_buffer`): a detector that runs behind
the camera still gets its images matched, older ones fall off and are counted as dropped.
Without keypoints (`need_keypoints=False`) the newest image is handed out alone.

Stamps that jump backwards (a bag restarted, sim time reset) clear both rings.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Match:
    stamp_ns: int
    image: Any
    keypoints: Any  # None when keypoints are not needed
    received: float  # when the image arrived (the caller's clock)
    offset_ns: int  # keypoints stamp - image stamp


class FrameSync:
    def __init__(self, tolerance_ns: int = 0, image_buffer: int = 8, keypoint_buffer: int = 64,
                 need_keypoints: bool = True) -> None:
        if tolerance_ns < 0 or image_buffer < 1 or keypoint_buffer < 1:
            raise ValueError("tolerance_ns must be >= 0 and the buffers >= 1")
        self.tolerance_ns = int(tolerance_ns)
        self.need_keypoints = need_keypoints
        self._images: deque[tuple[int, Any, float]] = deque()
        self._image_buffer = image_buffer
        self._keypoints: deque[tuple[int, Any]] = deque(maxlen=keypoint_buffer)
        self._cond = threading.Condition()
        self._closed = False
        self._newest_image = -1
        self._newest_keypoints = -1
        self.images_in = 0
        self.keypoints_in = 0
        self.matched = 0
        self.dropped = 0  # images never handed out
        self.resets = 0

    # ------------------------------------------------------------ callbacks (any thread)

    def add_image(self, stamp_ns: int, image: Any, received: float = 0.0) -> None:
        with self._cond:
            self.images_in += 1
            if stamp_ns < self._newest_image - 1_000_000_000:
                self._reset()
            self._newest_image = max(self._newest_image, stamp_ns)
            self._images.append((int(stamp_ns), image, received))
            while len(self._images) > self._image_buffer:
                self._images.popleft()
                self.dropped += 1
            self._cond.notify_all()

    def add_keypoints(self, stamp_ns: int, keypoints: Any) -> None:
        with self._cond:
            self.keypoints_in += 1
            if stamp_ns < self._newest_keypoints - 1_000_000_000:
                self._reset()
            self._newest_keypoints = max(self._newest_keypoints, stamp_ns)
            self._keypoints.append((int(stamp_ns), keypoints))
            self._cond.notify_all()

    def close(self) -> None:
        """Wake and end every `wait`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _reset(self) -> None:
        self.dropped += len(self._images)
        self._images.clear()
        self._keypoints.clear()
        self._newest_image = self._newest_keypoints = -1
        self.resets += 1

    # ------------------------------------------------------------ consumer (inference thread)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._images)

    def _find(self) -> Match | None:
        if not self._images:
            return None
        if not self.need_keypoints:
            stamp, image, received = self._images.pop()
            self.dropped += len(self._images)
            self._images.clear()
            self.matched += 1
            return Match(stamp, image, None, received, 0)
        for i in range(len(self._images) - 1, -1, -1):
            stamp, image, received = self._images[i]
            best, best_dt = None, None
            for j, (kstamp, _) in enumerate(self._keypoints):
                dt = abs(kstamp - stamp)
                if dt <= self.tolerance_ns and (best_dt is None or dt < best_dt):
                    best, best_dt = j, dt
            if best is None:
                continue
            kstamp, kp = self._keypoints[best]
            # This image and every older one leave; keypoints that can no longer match a
            # newer image (older than this stamp - tolerance) and the used one go too.
            self.dropped += i
            for _ in range(i + 1):
                self._images.popleft()
            kept = [(s, k) for n, (s, k) in enumerate(self._keypoints)
                    if n != best and s >= stamp - self.tolerance_ns]
            self._keypoints.clear()
            self._keypoints.extend(kept)
            self.matched += 1
            return Match(stamp, image, kp, received, kstamp - stamp)
        return None

    def pop(self) -> Match | None:
        """The newest matched image now, or None."""
        with self._cond:
            return self._find()

    def wait(self, timeout: float | None = None) -> Match | None:
        """Block until a match is there (or `timeout` s, or `close`)."""
        with self._cond:
            match = self._find()
            if match is None and not self._closed:
                self._cond.wait(timeout)
                match = self._find()
            return match
