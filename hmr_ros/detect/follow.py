"""Following found people from frame to frame with the landmark model alone.

BlazePose in video mode follows the one person of an image: it derives the next frame's
region from the previous landmarks and runs its person detector only when it loses them. A
crop around one person keeps that one person where the graph expects them, so one video-mode
graph per person, fed a crop around that person, follows several people at the cost of the
landmark model alone (about half of a still-image call, which runs the person detector
first). The crop stays put while the person stays well inside it and moves only when they
drift off its centre or change size: a crop re-centred on every frame's landmark box (which
swings with the limbs) moves the person under the graph's own tracking, which then loses
them and runs the detector again, and the saving is gone (measured on `vtest.avi`: 60 ms
against 68 ms for a still-image call, where a steady crop costs 38 against 75).
A person the graph loses is handed back to the
proposals (HOG boxes, the tracker's predicted boxes), which find them afresh.

Graphs are pooled: a released follower's graph is reset and serves the next person, so a
crowded scene costs at most `max_people` graphs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..data.crop import CropError, box_from_xyxy, crop_image, crop_matrix
from ..data.frame import Detection

# A followed pose whose box is shorter than this fraction of the person's usual height (a
# slow average of their box heights) has slid onto a fragment (a face, an arm at the edge of
# someone passing in front): the person is lost, not followed. Against the last height only,
# a pose could shrink onto a fragment a little at a time.
MIN_SHRINK = 0.6
HEIGHT_AVERAGING = 0.2  # weight of the newest height in the usual height
# The crop square moves when the square the person's box asks for is off its centre by more
# than this fraction of its side, or differs in side by more than this ratio.
RECENTRE = 0.12
RESIZE = 1.2

Landmarks = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]
ToDetection = Callable[[np.ndarray, np.ndarray], "Detection | None"]


def landmarks_in_box(pose: Landmarks, image: np.ndarray, box: np.ndarray, scale: float,
                     size: int, to_detection: ToDetection) -> Detection | None:
    """`pose` on the `size` square crop of `image` around `box` (4,) xyxy grown by `scale`,
    its landmarks mapped back to image pixels; None when the box is degenerate or no pose is
    found."""
    try:
        square = box_from_xyxy(box, scale=scale)
    except CropError:
        return None
    return landmarks_in_square(pose, image, square, size, to_detection)


def landmarks_in_square(pose: Landmarks, image: np.ndarray, square: np.ndarray, size: int,
                        to_detection: ToDetection) -> Detection | None:
    """`pose` on the `size` crop of `image` of `square` (3,) centre x, y and side."""
    found = pose(crop_image(image, square, size))
    if found is None:
        return None
    # Crop pixels back to image pixels through the inverse of the crop's affine map.
    inv = np.linalg.inv(crop_matrix(square, size))
    return to_detection(found[0] @ inv[:2, :2].T + inv[:2, 2], found[1])


class Follower:
    """One person followed by one video-mode graph. `box` (4,) xyxy: their last landmark
    box; `square` (3,): the crop the graph sees, kept while the person stays inside it."""

    def __init__(self, graph, box: np.ndarray) -> None:
        self.graph = graph
        self.box = np.asarray(box, dtype=np.float64).reshape(4)
        self.height = float(self.box[3] - self.box[1])  # the usual height, px
        self.square: np.ndarray | None = None
        self.moves = 0  # times the crop square moved

    def place(self, scale: float) -> np.ndarray:
        """The crop square for the next frame: the current one unless the person's box asks
        for one off its centre or of another size (raises CropError for a degenerate box)."""
        want = box_from_xyxy(self.box, scale=scale)
        sq = self.square
        if sq is None or np.hypot(*(want[:2] - sq[:2])) > RECENTRE * sq[2] \
                or not 1 / RESIZE <= want[2] / sq[2] <= RESIZE:
            self.square = want
            self.moves += 1
        return self.square

    def follow(self, image: np.ndarray, scale: float, size: int,
               to_detection: ToDetection) -> Detection | None:
        """The person in this frame, or None when lost (the caller releases the follower)."""
        try:
            square = self.place(scale)
        except CropError:
            return None
        det = landmarks_in_square(self.graph, image, square, size, to_detection)
        height = float(det.box[3] - det.box[1]) if det is not None else 0.0
        if height < MIN_SHRINK * self.height:
            return None
        self.box = np.asarray(det.box, dtype=np.float64).reshape(4)
        self.height += HEIGHT_AVERAGING * (height - self.height)
        return det


class FollowerPool:
    """At most `capacity` followers; `make_graph()` builds a video-mode graph when no
    released one is left to reuse (each graph has `reset()` and `close()`)."""

    def __init__(self, make_graph: Callable[[], object], capacity: int) -> None:
        self.make_graph = make_graph
        self.capacity = capacity
        self.active: list[Follower] = []
        self._idle: list = []
        self.started = 0  # followers started (people picked up from proposals)

    @property
    def full(self) -> bool:
        return len(self.active) >= self.capacity

    def start(self, box: np.ndarray) -> Follower | None:
        """A follower for a person just found at `box`, or None when the pool is full."""
        if self.full:
            return None
        graph = self._idle.pop() if self._idle else self.make_graph()
        follower = Follower(graph, box)
        self.active.append(follower)
        self.started += 1
        return follower

    def release(self, follower: Follower) -> None:
        """Stop following; the graph forgets its person and waits for the next one."""
        self.active.remove(follower)
        follower.graph.reset()
        self._idle.append(follower.graph)

    def boxes(self) -> np.ndarray:
        """(N, 4) the followed people's last boxes."""
        return np.array([f.box for f in self.active]).reshape(-1, 4)

    def close(self) -> None:
        for graph in [f.graph for f in self.active] + self._idle:
            graph.close()
        self.active, self._idle = [], []
