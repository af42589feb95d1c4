"""Frame sources for `run_stream`: the node's live topics (`SyncSource`), a video, an image
folder or a webcam (`video_frames`) and synthetic streams (`synthetic_frames`). A bag's
frames: `bag_frames` in stream/frames.py. Images become frames by `FrameAssembler`'s rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..data.frame import Frame
from ..data.video import VideoReader
from .frames import FrameAssembler, FrameSync, Match

if TYPE_CHECKING:
    from ..world.scene import SyntheticSequence


class SyncSource:
    """The live input of the ROS node: the newest image that has its keypoints (`FrameSync`),
    made a `Frame` by the assembler. Iterating blocks until a match arrives and ends when
    `stop` is set (`FrameSync.close` wakes it).

    index: the next frame's index (the node numbers the frames it has processed);
    on_frame: called with each assembled frame before it is handed on."""

    def __init__(self, sync: FrameSync, assembler: FrameAssembler, index: Callable[[], int],
                 on_frame: Callable[[Frame], None] | None = None) -> None:
        self.sync = sync
        self.assembler = assembler
        self.index = index
        self.on_frame = on_frame
        self.received: float | None = None  # when the image of the newest frame arrived

    def take(self, timeout: float | None = 0.0) -> Match | None:
        """The newest match, waiting up to `timeout` s (0: no wait)."""
        return self.sync.wait(timeout) if timeout else self.sync.pop()

    def frame(self, match: Match) -> Frame | None:
        """The match as a Frame; None when its image cannot be decoded (counted, logged)."""
        frame = self.assembler.frame(match.image, match.keypoints, self.index(),
                                     stamp_ns=match.stamp_ns)
        if frame is None:
            return None
        self.received = match.received
        if self.on_frame is not None:
            self.on_frame(frame)
        return frame

    def frames(self, stop: threading.Event, on_error: Callable[[int, Exception], None],
               poll_s: float = 0.2) -> Iterator[Frame]:
        """Frames until `stop`; a match that cannot be made a frame goes to `on_error`
        (its stamp, the error) and the stream goes on."""
        while not stop.is_set():
            match = self.take(poll_s)
            if match is None:
                continue
            try:
                frame = self.frame(match)
            except Exception as err:  # one bad input never ends the node's stream
                on_error(match.stamp_ns, err)
                continue
            if frame is not None:
                yield frame


def synthetic_frames(seq: SyntheticSequence) -> Iterator[Frame]:
    """Every frame of a synthetic stream in order (people, ids and ground truth come with
    them, so no detection stage is needed)."""
    for i in range(len(seq)):
        yield seq.frame(i).frame


def video_frames(reader: VideoReader, assembler: FrameAssembler | None = None
                 ) -> Iterator[Frame]:
    """The frames of a video, an image folder or a webcam: the reader's images with its
    camera (the given or assumed focal; such inputs carry no CameraInfo), no header frame id
    (outputs are in the camera's frame unless `camera_frame` is set)."""
    assembler = assembler or FrameAssembler()
    for image in reader.images():
        height, width = image.rgb.shape[:2]
        yield assembler.image_frame(image.rgb, image.stamp_ns, image.index,
                                    reader.camera(width, height))
