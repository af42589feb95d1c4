"""HOG person proposals in their own thread.

OpenCV's HOG people detector takes about half a second on a 768x576 frame upscaled 1.5x for
small people (2 cores): run in the frame path, it sets the frame rate. People already found
are followed by their landmarks (`follow.py`), so HOG only has to find people who are new;
in its own low-priority thread it works on the newest frame it was offered whenever it is
free, and its boxes join the proposals of the next frame that asks. A walker moves a few
pixels between two frames at 10-30 Hz, far less than the margin of the crop a proposal is
searched in, so boxes one run old still find their person.

No PyPI package ships a person detector for people this small: BlazePose's own detector
(the one in the mediapipe wheel, 224x224 input, for people close to the camera) found nobody
in the first 100 frames of OpenCV's `vtest.avi`, where HOG finds about three per frame.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from ..threads import lower_thread_priority
from .hog import HogPeopleDetector

log = logging.getLogger("hmr_ros")


class HogThread:
    """`offer(image)` hands a frame to the thread when it is free (never waits);
    `take()` returns the boxes (N, 4) of the newest finished run once, else None."""

    def __init__(self, hog: HogPeopleDetector, nice: int = 10) -> None:
        self.hog = hog
        self.nice = nice
        self._cv = threading.Condition()
        self._image: np.ndarray | None = None
        self._boxes: np.ndarray | None = None
        self._busy = False
        self._stop = False
        self.runs = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="hmr_ros-hog", daemon=True)
        self._thread.start()

    def offer(self, image: np.ndarray) -> bool:
        """Give the thread `image` (H, W, 3) if it is idle; True when it took it."""
        with self._cv:
            if self._busy or self._stop:
                return False
            # A copy: the caller's buffer may be reused for the next frame meanwhile.
            self._image = np.array(image, copy=True)
            self._busy = True
            self._cv.notify()
            return True

    def take(self) -> np.ndarray | None:
        with self._cv:
            boxes, self._boxes = self._boxes, None
            return boxes

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the run in progress has finished (tests, orderly shutdown)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._busy, timeout)

    def _run(self) -> None:
        lower_thread_priority(self.nice, "detector.hog.nice")
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._image is not None or self._stop)
                if self._stop:
                    return
                image, self._image = self._image, None
            try:
                boxes, _ = self.hog.boxes(image)
            except Exception:  # noqa: BLE001 -- a failed run must not end the proposals
                self.errors += 1
                log.exception("HOG people detector failed on a frame")
                boxes = np.zeros((0, 4))
            with self._cv:
                self._boxes = boxes
                self._busy = False
                self.runs += 1
                self._cv.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout)
