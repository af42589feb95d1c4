"""`BlazePoseBoxes` (detector.kind = mediapipe_hog): several people with BlazePose, which
finds one person per image.

Each frame:
1. every person found before is followed by a video-mode graph of their own on a crop
   around them (`follow.py`: the landmark model only, no person detector);
2. new people are looked for in proposal boxes: OpenCV's HOG people detector's (in its own
   low-priority thread, `hog_thread.py`, or every `hog.every`-th frame in the frame path) and
   the tracker's predicted boxes of people no follower holds (someone lost behind another),
   each box resampled to a `crop_size` square so that small, distant people fill
   BlazePose's input, BlazePose in still-image mode on each;
3. non-maximum suppression on the keypoint boxes (two boxes around one person give one
   detection); the new people who survive it get a follower, followers that slid onto a
   person another one holds are released.

The BlazePose calls of steps 1 and 2 run on `detector.threads` threads: MediaPipe releases
the GIL and runs each graph on one core, so two threads halve a frame's landmark time on two
cores (measured: 25 against 48 ms a call).
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..config import DetectorConfig
from ..data.frame import Detection
from .base import box_overlap
from .follow import Follower, FollowerPool, landmarks_in_box
from .hog import HogPeopleDetector
from .hog_thread import HogThread
from .mediapipe_pose import MIN_BOX_FRACTION, BlazePose, landmarks_to_detection, suppress

# A proposal is not searched when this much of it, or of a box found already (the smaller of
# the two), lies in the other: HOG's person box holds the tighter landmark box of its person.
COVERED = 0.6


class BlazePoseBoxes:
    name = "mediapipe_hog"

    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.cfg = cfg or DetectorConfig()
        c = self.cfg
        hog = HogPeopleDetector(c.hog.upscale, c.hog.threshold, scale=c.hog.scale)
        self.hog = None if c.hog.thread else hog
        self.hog_thread = HogThread(hog, c.hog.nice) if c.hog.thread else None
        # Still-image graphs, one per thread: a graph serves one call at a time.
        self._still: queue.SimpleQueue[BlazePose] = queue.SimpleQueue()
        self._graphs = [self._new_graph(static=True)]
        self._still.put(self._graphs[0])
        self.followers = FollowerPool(lambda: self._new_graph(static=False),
                                      c.max_people if c.follow else 0)
        self._pool = ThreadPoolExecutor(c.threads, thread_name_prefix="hmr_ros-blazepose") \
            if c.threads > 1 else None
        self._prior = np.zeros((0, 4))
        self._calls = 0
        self.hog_runs = 0  # HOG runs in the frame path (hog.thread false)
        self.searched = 0  # proposal boxes searched with a still-image graph
        self.followed = 0  # people found by their follower

    def _new_graph(self, static: bool) -> BlazePose:
        c = self.cfg
        # Followers' crops move now and then: MediaPipe's landmark filter, which runs in
        # crop coordinates, would smear every move.
        return BlazePose(c.model_complexity, c.min_detection_confidence, static=static,
                         smooth=False)

    @property
    def hog_thread_runs(self) -> int:
        return self.hog_thread.runs if self.hog_thread is not None else 0

    def set_prior_boxes(self, boxes: np.ndarray) -> None:
        self._prior = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)

    def _hog_boxes(self, image: np.ndarray, have_boxes: bool) -> np.ndarray:
        """HOG's boxes for this frame: on every hog.every-th call, and whenever there is
        nothing else to look in, a run here, or with hog.thread the newest finished run of
        the thread, which is then offered this frame."""
        due = self._calls % self.cfg.hog.every == 0 or not have_boxes
        if self.hog_thread is not None:
            boxes = self.hog_thread.take()
            if due:
                self.hog_thread.offer(image)
            return boxes if boxes is not None else np.zeros((0, 4))
        if due:
            self.hog_runs += 1
            return self.hog.boxes(image)[0]
        return np.zeros((0, 4))

    def proposals(self, image: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
        """(N, 4) boxes to look for new people in: the prior boxes and HOG's, less those
        that `covered` (M, 4), the boxes of people found already, overlap."""
        h, w = image.shape[:2]
        boxes = self._prior
        if len(boxes):
            # A track coasting out of the view would cost a BlazePose call on an empty crop.
            inter = (np.clip(boxes[:, 2], 0, w) - np.clip(boxes[:, 0], 0, w)) \
                * (np.clip(boxes[:, 3], 0, h) - np.clip(boxes[:, 1], 0, h))
            area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
            boxes = boxes[inter / area >= 0.3]
        covered = np.zeros((0, 4)) if covered is None else covered
        # A person box and a keypoint box of one person: one holds most of the other.
        if len(boxes) and len(covered):
            boxes = boxes[box_overlap(boxes, covered).max(axis=1) < COVERED]
        hog = self._hog_boxes(image, have_boxes=len(boxes) + len(covered) > 0)
        taken = np.concatenate([boxes, covered])
        if len(hog) and len(taken):
            hog = hog[box_overlap(hog, taken).max(axis=1) < COVERED]
        boxes = np.concatenate([boxes, hog]) if len(hog) else boxes
        self._calls += 1
        self._prior = np.zeros((0, 4))  # priors hold for one frame only
        return boxes

    def _map(self, fn, items: list) -> list:
        if self._pool is None or len(items) < 2:
            return [fn(x) for x in items]
        return list(self._pool.map(fn, items))

    def _search(self, image: np.ndarray, box: np.ndarray) -> Detection | None:
        """A new person in proposal `box`, with a free still-image graph (one more is made
        when all are busy, at most one per thread)."""
        c = self.cfg
        try:
            graph = self._still.get_nowait()
        except queue.Empty:
            graph = self._new_graph(static=True)
            self._graphs.append(graph)
        try:
            det = landmarks_in_box(graph, image, box, c.box_scale, c.crop_size,
                                   self._to_detection(image))
        finally:
            self._still.put(graph)
        # A pose much smaller than its person box is a fragment (a face, a bystander's upper
        # body at the crop's edge), not the person the box was proposed for.
        if det is None or (det.box[3] - det.box[1]) < MIN_BOX_FRACTION * (box[3] - box[1]):
            return None
        return det

    def _to_detection(self, image: np.ndarray):
        h, w = image.shape[:2]
        return lambda xy, vis: landmarks_to_detection(xy, vis, w, h, self.cfg.min_visible)

    def detect(self, image: np.ndarray, stamp_ns: int) -> list[Detection]:
        c = self.cfg
        to_det = self._to_detection(image)
        active = list(self.followers.active)

        def follow(f: Follower) -> Detection | None:
            return f.follow(image, c.box_scale, c.crop_size, to_det)

        followed = []
        for f, det in zip(active, self._map(follow, active)):
            if det is None:
                self.followers.release(f)
            else:
                followed.append((det, f))
        self.followed += len(followed)
        covered = np.array([d.box for d, _ in followed]).reshape(-1, 4)
        boxes = list(self.proposals(image, covered))
        self.searched += len(boxes)
        found = [d for d in self._map(lambda b: self._search(image, b), boxes) if d is not None]
        kept = suppress([d for d, _ in followed] + found, c.nms_iou, c.max_people)
        kept_ids = {id(d) for d in kept}
        for det, f in followed:  # a follower that slid onto someone another one holds
            if id(det) not in kept_ids:
                self.followers.release(f)
        for det in found:
            if id(det) in kept_ids:
                self.followers.start(det.box)
        return kept

    def close(self) -> None:
        if self.hog_thread is not None:
            self.hog_thread.close()
        if self._pool is not None:
            self._pool.shutdown()
        self.followers.close()
        for graph in self._graphs:
            graph.close()
