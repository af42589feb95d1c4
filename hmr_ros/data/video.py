"""Images from a video file, a folder of images or a webcam (OpenCV), and their intrinsics.

`VideoReader.images()` gives the decoded images with their stamps and indices; they become
`Frame`s by `FrameAssembler`'s rule, as a bag's images do (`video_frames`,
stream/sources.py).

Such inputs carry no CameraInfo. Unless a focal length is given (`--focal`,
`detector.focal`), the camera is assumed to have a `DEFAULT_HFOV_DEG` (60 degrees) horizontal
field of view, typical of webcams and phone main cameras (roughly 55-75 degrees): focal =
(width / 2) / tan(hfov / 2), 554 px at 640 px wide, 665 px at 768; principal point at the image
centre, square pixels. The regressor's crop camera is focal-free, so a wrong focal moves the
metric depth and translation (in proportion) but not the pose or the 2D fit.

Stamps: video files and folders count frames at their frame rate from 0 (deterministic);
webcams and streams use the wall-clock time each image arrived, and a reader thread keeps only
the newest image, so a pipeline slower than the camera works on current images (older ones
are dropped) instead of falling further and further behind.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import HmrRosError
from .frame import CameraModel

log = logging.getLogger("hmr_ros")

DEFAULT_HFOV_DEG = 60.0
DEFAULT_FOLDER_FPS = 30.0  # frame rate assumed for a folder of images
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".wmv", ".flv", ".ogv", ".3gp", ".ts"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm",
                            ".pgm"})
BAG_SUFFIXES = frozenset({".mcap", ".db3"})


class VideoError(HmrRosError, RuntimeError):
    """An input that cannot be opened or read."""


def focal_from_hfov(width: int, hfov_deg: float = DEFAULT_HFOV_DEG) -> float:
    """Focal length (px) of a pinhole camera `width` px wide with this horizontal FOV."""
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f"horizontal field of view must be in (0, 180) degrees, got {hfov_deg}")
    return (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)


def input_kind(source: str | Path | int) -> str:
    """What an input is: camera (a device index), stream (a URL such as rtsp://...), bag
    (rosbag2 folder or .mcap/.db3 file), images (a folder of image files, or one image), or
    video (any other file). VideoError if it does not exist or a folder holds neither a bag
    nor images."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "camera"
    if isinstance(source, str) and "://" in source:
        return "stream"
    path = Path(source)
    if path.is_dir():
        if (path / "metadata.yaml").is_file() or any(
                p.suffix in BAG_SUFFIXES for p in path.iterdir()):
            return "bag"
        if image_files(path):
            return "images"
        raise VideoError(f"{path} holds neither a rosbag2 nor image files "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    if path.is_file():
        suffix = path.suffix.lower()
        return "bag" if suffix in BAG_SUFFIXES else "images" if suffix in IMAGE_SUFFIXES \
            else "video"
    raise VideoError(f"{path} does not exist")


def _natural_key(name: str) -> list:
    # frame2.png before frame10.png
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: _natural_key(p.name))


@dataclass(frozen=True)
class VideoImage:
    """One decoded image: RGB (H, W, 3) uint8, its stamp (ns) and its index in the input
    (a skipped image leaves a gap)."""

    rgb: np.ndarray
    stamp_ns: int
    index: int


@dataclass(frozen=True)
class VideoInfo:
    """What an input is: source, kind (video | images | camera), first image size, fps,
    frame count (None for cameras), the focal used and where it came from."""

    source: str
    kind: str
    width: int
    height: int
    fps: float
    frames: int | None
    focal: float
    focal_note: str


class _Grabber:
    """Reads a live capture on its own thread and keeps only the newest image.

    A camera delivers frames at its own rate whether or not we keep up; OpenCV's capture
    buffers a few, so a slow reader would get ever older images. The reader instead takes the
    newest one (with the wall-clock time it arrived) and frames it had no time for are
    dropped, as on the robot.
    """

    def __init__(self, cap: cv2.VideoCapture, first: np.ndarray) -> None:
        self._cap = cap
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int] | None = (first, time.time_ns())
        self._done = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="hmr_ros-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ok, bgr = self._cap.read()
            stamp = time.time_ns()
            with self._cond:
                if self._done:
                    return
                if not ok or bgr is None:
                    self._done = True
                    self._cond.notify_all()
                    return
                if self._latest is not None:
                    self.dropped += 1
                self._latest = (bgr, stamp)
                self._cond.notify_all()

    def next(self) -> tuple[np.ndarray, int] | None:
        """The newest image not returned yet and its arrival stamp; None at the end."""
        with self._cond:
            while self._latest is None and not self._done:
                self._cond.wait(0.5)
            out, self._latest = self._latest, None
            return out

    def stop(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._thread.join(2.0)


class VideoReader:
    """RGB images (`images`; the pinhole camera of each size: `camera`) from a video file,
    an image folder, a webcam or a stream URL. focal: px, or 0 for the `hfov_deg` default;
    fps: overrides the file's rate (and sets a folder's, default 30); limit: at most this
    many frames; latest: always take the newest captured image, dropping those the caller
    had no time for (default: for cameras and streams, not for files)."""

    def __init__(self, source: str | Path | int, focal: float = 0.0,
                 hfov_deg: float = DEFAULT_HFOV_DEG, fps: float | None = None,
                 limit: int | None = None, latest: bool | None = None) -> None:
        self.kind = input_kind(source)
        if self.kind == "bag":
            raise VideoError(f"{source} is a rosbag2; read it with hmr_ros.messages.bag")
        self.source = str(source)
        self.limit = limit
        self.hfov_deg = hfov_deg
        self.focal_given = float(focal)
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None  # the first frame, read to learn the size
        self._files: list[Path] = []
        self.skipped = 0  # unreadable images of a folder (each logged once)
        self._unreadable: set[Path] = set()
        count: int | None = None
        if self.kind == "images":
            path = Path(source)
            self._files = image_files(path) if path.is_dir() else [path]
            first = self._first_readable()
            count = len(self._files)
            rate = fps or DEFAULT_FOLDER_FPS
        else:
            cap = cv2.VideoCapture(int(source) if self.kind == "camera" else str(source))
            if not cap.isOpened():
                what = f"{'video' if self.kind == 'video' else self.kind} {source}"
                raise VideoError(f"OpenCV cannot open {what}")
            self._cap = cap
            ok, bgr = cap.read()
            if not ok or bgr is None:
                cap.release()
                raise VideoError(f"no frame could be read from {self.source}")
            self._pending = bgr
            first = bgr
            file_fps = cap.get(cv2.CAP_PROP_FPS)
            rate = fps or (file_fps if np.isfinite(file_fps) and file_fps > 0 else 30.0)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "video" else -1
            count = n if n > 0 else None
        if limit is not None and count is not None:
            count = min(count, limit)
        h, w = first.shape[:2]
        focal_px = self.focal_given or focal_from_hfov(w, hfov_deg)
        note = (f"focal {focal_px:.1f} px given" if self.focal_given else
                f"no intrinsics known: focal {focal_px:.1f} px from an assumed {hfov_deg:g} deg "
                f"horizontal field of view at {w} px wide (set it with --focal F)")
        self.info = VideoInfo(self.source, self.kind, w, h, float(rate), count, focal_px, note)
        self._cameras: dict[tuple[int, int], CameraModel] = {}
        live = self.kind in ("camera", "stream")
        self._grabber: _Grabber | None = None
        if self._cap is not None and (live if latest is None else latest):
            self._grabber = _Grabber(self._cap, self._pending)
            self._pending = None

    @property
    def dropped(self) -> int:
        """Images skipped because a newer one had arrived (latest mode)."""
        return self._grabber.dropped if self._grabber is not None else 0

    def camera(self, width: int, height: int) -> CameraModel:
        """The pinhole camera of a width x height image (the hfov default scales with it)."""
        key = (width, height)
        if key not in self._cameras:
            f = self.focal_given or focal_from_hfov(width, self.hfov_deg)
            self._cameras[key] = CameraModel.from_focal(f, width, height)
        return self._cameras[key]

    def _first_readable(self) -> np.ndarray:
        """The first image of the folder that decodes (it gives the size); unreadable ones
        before it (a 0-byte PNG) are skipped later like any other."""
        for p in self._files:
            try:
                return self._imread(p)
            except VideoError:
                self._unreadable.add(p)
        raise VideoError(f"none of the {len(self._files)} images in {self.source} can be read")

    @staticmethod
    def _imread(path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VideoError(f"cannot read image {path}")
        return bgr

    def _bgr_frames(self) -> Iterator[tuple[np.ndarray | None, int | None]]:
        """(BGR image or None for a skipped one, wall-clock stamp or None for counted
        stamps)."""
        if self.kind == "images":
            for p in self._files:
                try:
                    if p in self._unreadable:
                        raise VideoError(f"cannot read image {p}")
                    yield self._imread(p), None
                except VideoError as err:
                    self.skipped += 1
                    log.warning("%s; skipped (%d so far)", err, self.skipped)
                    yield None, None  # the index (and the counted stamp) still advance
            return
        if self._grabber is not None:
            while (item := self._grabber.next()) is not None:
                yield item
            return
        assert self._cap is not None
        live = self.kind in ("camera", "stream")
        while True:
            if self._pending is not None:
                bgr, self._pending = self._pending, None
            else:
                ok, bgr = self._cap.read()
                if not ok or bgr is None:
                    return
            yield bgr, (time.time_ns() if live else None)

    def images(self) -> Iterator[VideoImage]:
        """The decoded images in order: counted stamps (index / fps) for files and folders,
        the arrival time for cameras and streams."""
        index = 0
        yielded = 0
        for bgr, wall in self._bgr_frames():
            if self.limit is not None and yielded >= self.limit:
                return
            if bgr is None:  # a skipped image: a gap in the stream, not a renumbering
                index += 1
                continue
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            rgb = np.ascontiguousarray(bgr[:, :, 2::-1])
            stamp = wall if wall is not None else int(round(index * 1e9 / self.info.fps))
            yield VideoImage(rgb, stamp, index)
            index += 1
            yielded += 1

    def close(self) -> None:
        if self._grabber is not None:
            self._grabber.stop()
            self._grabber = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
