"""Every input becomes `Frame`s by one rule: stamps, cameras and frame ids.

The rule, the same for the ROS node, `hmr-ros replay` of a bag or a video, `hmr-ros live`, and
anything else that feeds images (`FrameAssembler`):
- keypoints belong to the image whose header stamp is nearest to theirs, within a tolerance
  (`nearest_stamp`; 0 = the same stamp, the default of the node's `keypoints_tolerance`);
- the camera is the input's own intrinsics where it has them (a video's assumed focal, see
  data/video.py), else the newest CameraInfo received before the image (for a bag, the first
  one for images that precede it); a CameraInfo whose size differs from the image's is not used for
  that image (fallback focal, warned), and one that cannot be read is ignored (counted);
- the output frame id is the configured `camera_frame` if any, else the image header's
  frame_id, else the camera's, else `camera_optical_frame` (warned once for an image message
  with an empty frame_id; an input without headers, a video, takes the camera's silently);
- an image, keypoints or CameraInfo that cannot be converted is skipped, counted per kind in
  `FrameAssembler.skipped` and logged (throttled); nothing raises out of an input.

Live inputs wait in `FrameSync` (the node's callbacks only append; the inference thread takes
the newest matched image and drops older ones); a bag is read in order by `bag_frames`, every
image becoming a frame.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.frame import BodyParams, CameraModel, Detection, Frame
from ..logs import Log, ThrottledLog
from ..messages.bag import COMPRESSED, BagError, BagMessage, BagReader, FrameTopics
from ..messages.bodies import msg_to_bodies
from ..messages.camera import msg_to_camera
from ..messages.factory import ConversionError, stamp_to_ns
from ..messages.hri import msg_to_skeleton
from ..messages.image import compressed_to_image, msg_to_image
from ..messages.keypoints import msg_to_detections

DEFAULT_FRAME = "camera_optical_frame"


def nearest_stamp(stamp_ns: int, candidates: Sequence[int], tolerance_ns: int) -> int | None:
    """Index of the candidate stamp nearest to `stamp_ns` within `tolerance_ns` (the first of
    equals), or None. The one matching rule for keypoints (and ground truth) to images."""
    best, best_dt = None, None
    for j, s in enumerate(candidates):
        dt = abs(int(s) - int(stamp_ns))
        if dt <= tolerance_ns and (best_dt is None or dt < best_dt):
            best, best_dt = j, dt
    return best


@dataclass(frozen=True)
class SkeletonPeople:
    """The people of one stamp as ROS4HRI Skeleton2D messages (normalised coordinates, so
    they become pixels only with the image's size): ((track, Skeleton2D), ...)."""

    skeletons: tuple[tuple[int, Any], ...]


@dataclass(frozen=True)
class RawImage:
    """An image message not decoded yet (decoding happens on the inference thread)."""

    msg: Any
    compressed: bool = False


@dataclass(frozen=True)
class Match:
    stamp_ns: int
    image: RawImage
    keypoints: Any  # a Keypoints2DArray message; None when not needed
    received: float  # when the image arrived (the caller's clock)
    offset_ns: int  # keypoints stamp - image stamp


class FrameSync:
    def __init__(self, tolerance_ns: int = 0, image_buffer: int = 8, keypoint_buffer: int = 64,
                 need_keypoints: bool = True) -> None:
        if tolerance_ns < 0 or image_buffer < 1 or keypoint_buffer < 1:
            raise ValueError("tolerance_ns must be >= 0 and the buffers >= 1")
        self.tolerance_ns = int(tolerance_ns)
        self.need_keypoints = need_keypoints
        self._images: deque[tuple[int, RawImage, float]] = deque()
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

    def add_image(self, stamp_ns: int, image: RawImage, received: float = 0.0) -> None:
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
            best = nearest_stamp(stamp, [k for k, _ in self._keypoints], self.tolerance_ns)
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


class FrameAssembler:
    """Raw messages -> `Frame` by the rule in the module docstring. Not thread-safe except
    `camera_info`, which a subscription callback may call while the inference thread
    assembles frames."""

    KINDS = ("image", "keypoints", "camera_info", "camera_size", "damaged_bag")

    def __init__(self, camera_frame: str = "", log: ThrottledLog | Log | None = None,
                 topics: dict[str, str] | None = None) -> None:
        """camera_frame: overrides every frame id; topics: names for the log lines
        ({"image": ..., "keypoints": ..., "camera_info": ...})."""
        self.camera_frame = camera_frame
        self.log = log if isinstance(log, ThrottledLog) else ThrottledLog(log)
        self.topics = {"image": "images", "keypoints": "keypoints",
                       "camera_info": "camera_info", **(topics or {})}
        self._camera: CameraModel | None = None
        self._lock = threading.Lock()
        self.skipped = dict.fromkeys(self.KINDS, 0)
        self.camera_infos = 0

    @property
    def camera(self) -> CameraModel | None:
        with self._lock:
            return self._camera

    def skip(self, kind: str, reason: str, what: str = "skipped") -> None:
        """Count and log an input that could not be used: the first few of each kind, then
        at most one line per kind every 10 s."""
        self.skipped[kind] += 1
        msg = f"{self.topics.get(kind, kind)}: {reason}; {what} ({self.skipped[kind]} so far)"
        if self.skipped[kind] <= 3:
            self.log.log.warning(msg)
        else:
            self.log.throttled(kind, msg, 10.0)

    def camera_info(self, msg: Any) -> CameraModel | None:
        """Store a CameraInfo message (the newest one is used); None if it is unreadable."""
        try:
            camera = msg_to_camera(msg)
        except ConversionError as err:
            self.skip("camera_info", str(err), "ignored (using the fallback focal length)")
            return None
        with self._lock:
            self._camera = camera
            self.camera_infos += 1
        return camera

    def decode(self, image: RawImage, index: int | None = None) -> np.ndarray | None:
        try:
            return (compressed_to_image(image.msg) if image.compressed
                    else msg_to_image(image.msg))
        except ConversionError as err:
            where = f"image {index}: " if index is not None else ""
            self.skip("image", f"{where}{err}", "image skipped")
            return None

    def detections(self, msg: Any | None, width: int = 0, height: int = 0
                   ) -> tuple[Detection, ...]:
        """A Keypoints2DArray message, or `SkeletonPeople` (needs the image size)."""
        if msg is None:
            return ()
        try:
            if isinstance(msg, SkeletonPeople):
                return tuple(Detection(track, msg_to_skeleton(m, width, height))
                             for track, m in msg.skeletons)
            return msg_to_detections(msg)
        except ConversionError as err:
            self.skip("keypoints", str(err), "these keypoints are ignored")
            return ()

    def camera_for(self, width: int, height: int) -> CameraModel | None:
        camera = self.camera
        if camera is not None and (camera.width, camera.height) != (width, height):
            self.skipped["camera_size"] += 1
            self.log.throttled("camera_size", (
                f"CameraInfo is {camera.width}x{camera.height} but the images are "
                f"{width}x{height}: ignoring CameraInfo (fallback focal length) for these "
                "images"), 30.0)
            return None
        return camera

    def frame_id(self, header_frame_id: str, camera: CameraModel | None) -> str:
        if self.camera_frame:
            return self.camera_frame
        if header_frame_id:
            return header_frame_id
        fallback = camera.frame_id if camera is not None else DEFAULT_FRAME
        self.log.once("empty_frame_id", f"images carry an empty header.frame_id: outputs use "
                      f"{fallback!r} (set camera_frame to choose)")
        return fallback

    def frame(self, image: RawImage, keypoints: Any | None = None, index: int = 0,
              ground_truth: dict[int, BodyParams] | None = None,
              stamp_ns: int | None = None) -> Frame | None:
        """One image (+ its matched keypoints message) -> Frame; None when the image cannot
        be decoded (counted and logged)."""
        pixels = self.decode(image, index)
        if pixels is None:
            return None
        stamp = stamp_to_ns(image.msg.header.stamp) if stamp_ns is None else stamp_ns
        return self.image_frame(pixels, stamp, index, None, str(image.msg.header.frame_id),
                                keypoints, ground_truth)

    def image_frame(self, pixels: np.ndarray, stamp_ns: int, index: int,
                    camera: CameraModel | None = None, header_frame_id: str | None = None,
                    keypoints: Any | None = None,
                    ground_truth: dict[int, BodyParams] | None = None) -> Frame:
        """A decoded RGB image (H, W, 3) uint8 -> Frame. camera: the input's own intrinsics
        (None: the stored CameraInfo); header_frame_id: None for an input without headers."""
        height, width = pixels.shape[:2]
        if camera is None:
            camera = self.camera_for(width, height)
        detections = self.detections(keypoints, width, height)
        frame_id = (self.camera_frame if header_frame_id is None
                    else self.frame_id(header_frame_id, camera))
        return Frame(image=pixels, stamp_ns=stamp_ns, camera=camera, detections=detections,
                     index=index, ground_truth=ground_truth or {}, frame_id=frame_id)


def bag_frames(reader: BagReader, topics: FrameTopics, assembler: FrameAssembler | None = None,
               tolerance_ns: int = 0, limit: int | None = None) -> Iterator[Frame]:
    """The frames of a bag in image order, every image becoming one frame (or one counted
    skip). Keypoints and ground truth are matched to images by `nearest_stamp` (they may be
    logged before or after their image, so they are read first); a frame's index is its
    image's position on the topic, so a skip leaves a gap (which ACCEL respects)."""
    if assembler is None:
        assembler = FrameAssembler(topics={"image": topics.image,
                                           "keypoints": topics.keypoints or "keypoints",
                                           "camera_info": topics.camera_info or "camera_info"})
    kp_stamps: list[int] = []
    kp_msgs: list[Any] = []
    gt_stamps: list[int] = []
    gt_bodies: list[dict[int, BodyParams]] = []
    first_info: Any = None
    side = [t for t in (topics.keypoints, topics.ground_truth) if t]
    if side or topics.camera_info:
        for m in _until_damaged(reader.messages(
                side + ([topics.camera_info] if topics.camera_info else [])), assembler):
            if m.topic == topics.camera_info:
                first_info = m.msg if first_info is None else first_info
                continue
            stamp = stamp_to_ns(m.msg.header.stamp)
            if m.topic == topics.keypoints:
                kp_stamps.append(stamp)
                kp_msgs.append(m.msg)
                continue
            try:
                bodies = msg_to_bodies(m.msg)
            except ConversionError as err:
                assembler.log.throttled("ground_truth", f"{m.topic} at {stamp}: {err}; "
                                        "ignored", 10.0)
                continue
            gt_stamps.append(stamp)
            gt_bodies.append(bodies)
    if first_info is not None:  # images before the first CameraInfo use the first one
        assembler.camera_info(first_info)
    keypoints = _StampIndex(kp_stamps, kp_msgs, tolerance_ns)
    truth = _StampIndex(gt_stamps, gt_bodies, tolerance_ns)
    index = yielded = 0
    wanted = [topics.image] + ([topics.camera_info] if topics.camera_info else [])
    for m in _until_damaged(reader.messages(wanted), assembler):
        if m.topic == topics.camera_info:
            assembler.camera_info(m.msg)
            continue
        stamp = stamp_to_ns(m.msg.header.stamp)
        frame = assembler.frame(RawImage(m.msg, m.msgtype == COMPRESSED),
                                keypoints.match(stamp), index, truth.match(stamp), stamp)
        index += 1  # the next image is the next one on the topic, skipped or not
        if frame is None:
            continue
        yield frame
        yielded += 1
        if limit is not None and yielded >= limit:
            break


def _until_damaged(messages: Iterator[BagMessage], assembler: FrameAssembler
                   ) -> Iterator[BagMessage]:
    """The messages up to where the storage breaks: a damaged bag gives the frames before
    the damage (one warning, counted as `damaged_bag`) instead of ending the run."""
    try:
        yield from messages
    except BagError as err:
        assembler.skipped["damaged_bag"] += 1
        assembler.log.log.warning(f"{err}; using the messages before the damage")


class _StampIndex:
    """Messages by stamp, for `nearest_stamp` over only those within the tolerance window."""

    def __init__(self, stamps: list[int], items: list[Any], tolerance_ns: int) -> None:
        order = sorted(range(len(stamps)), key=stamps.__getitem__)
        self.stamps = [stamps[i] for i in order]
        self.items = [items[i] for i in order]
        self.tolerance_ns = tolerance_ns

    def match(self, stamp: int) -> Any | None:
        lo = bisect.bisect_left(self.stamps, stamp - self.tolerance_ns)
        hi = bisect.bisect_right(self.stamps, stamp + self.tolerance_ns)
        j = nearest_stamp(stamp, self.stamps[lo:hi], self.tolerance_ns)
        return None if j is None else self.items[lo + j]
