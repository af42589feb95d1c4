"""Sinks of the stream runner that write messages: the estimates bag of `hmr-ros replay`.

(The node's publishers are `NodeSink` and `HriSink` in hmr_ros/ros/; the evaluator, the 2D
keypoint error and the overlay video are in hmr_ros/eval/sinks.py; the run's tally in
stream/summary.py.)
"""

from __future__ import annotations

from pathlib import Path

from ..adapt.worker import AdaptationWorker
from ..data.frame import Frame, FrameResult
from ..messages.bag import BODIES, BagWriter
from ..messages.bodies import bodies_to_msg
from ..messages.status import adaptation_status_to_msg

TOPIC_BODIES = "/hmr/bodies"
TOPIC_STATUS = "/hmr/adaptation_status"
STATUS = "hmr_ros/msg/AdaptationStatus"


class BagSink:
    """`/hmr/bodies` (SMPLBodyArray, stamped like the images, in their camera frame) and, with
    a worker, `/hmr/adaptation_status` for every frame, into a new mcap bag."""

    def __init__(self, path: str | Path, worker: AdaptationWorker | None = None,
                 model_name: str = "hmr_ros") -> None:
        self.writer = BagWriter(path)
        self.worker = worker
        self.model_name = model_name

    def add(self, frame: Frame, result: FrameResult) -> None:
        f = self.writer.factory
        frame_id = frame.output_frame_id
        self.writer.write(TOPIC_BODIES, BODIES, bodies_to_msg(
            f, result.people, frame.stamp_ns, frame_id, result.model_version, self.model_name),
            frame.stamp_ns)
        if self.worker is not None:
            msg = adaptation_status_to_msg(f, self.worker.status(), frame.stamp_ns)
            msg.header.frame_id = frame_id
            self.writer.write(TOPIC_STATUS, STATUS, msg, frame.stamp_ns)

    def close(self) -> None:
        self.writer.close()
