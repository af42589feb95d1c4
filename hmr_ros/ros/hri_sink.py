"""The node's REP-155 (ROS4HRI) sink of the stream runner: `/humans/bodies/tracked` for
every frame and, per tracked body, `roi`, `cropped`, `skeleton2d` and `posture` under
`/humans/bodies/<id>/`.

Per-body topics are created when a body is first estimated and removed when its track ends
(the tracker's timeout, `detector.tracker.timeout_s`: the runner calls `lost` before that frame's
`add`); ids are `HriIds` names (`b<track>`, or the id of the ROS4HRI detector the skeleton
came from), the same as in the TF frames `body_<id>`. The
3D body is in TF; `joint_states` is not published (ROS4HRI's joint names belong to its own
URDF human model, which our SMPL joints do not map onto one to one).

ROS-free like the engine: messages come from a `MessageFactory`, topics from `Outputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..body.posture import classify_posture
from ..data.frame import CameraModel, Frame, FrameResult
from ..messages import hri
from ..messages.factory import MessageFactory
from ..messages.image import image_to_msg


class TopicOutputs(Protocol):
    def publish_topic(self, topic: str, msgtype: str, msg: Any) -> None:
        """Publish on `topic` (its publisher created on first use)."""

    def remove_topics(self, prefix: str) -> None:
        """Destroy the publishers of every topic under `prefix`."""


class HriSink:
    def __init__(self, factory: MessageFactory, outputs: TopicOutputs, ids: hri.HriIds,
                 camera_for: Callable[[Frame], CameraModel]) -> None:
        self.factory = factory
        self.outputs = outputs
        self.ids = ids
        self.camera_for = camera_for
        self.tracked: set[int] = set()

    def lost(self, tracks: Iterable[int]) -> None:
        """These tracks ended: their topics go, and their ids are free again."""
        for track in tracks:
            if track in self.tracked:
                self.tracked.discard(track)
                self.outputs.remove_topics(hri.body_topic(self.ids.name(track), ""))
            self.ids.forget(track)

    def add(self, frame: Frame, result: FrameResult) -> None:
        f = self.factory
        stamp, frame_id = int(result.stamp_ns), frame.output_frame_id
        self.tracked.update(p.id for p in result.people)
        self.outputs.publish_topic(hri.TRACKED, hri.IDS_LIST, hri.ids_to_msg(
            f, hri.tracked_names(self.ids, sorted(self.tracked)), stamp, frame_id))
        if not result.people:
            return
        camera = self.camera_for(frame)
        for p in result.people:
            name = self.ids.name(p.id)
            topic = lambda n, name=name: hri.body_topic(name, n)  # noqa: E731
            self.outputs.publish_topic(topic("roi"), hri.ROI, hri.roi_to_msg(
                f, p, frame.width, frame.height, stamp, frame_id))
            self.outputs.publish_topic(topic("cropped"), "sensor_msgs/msg/Image", image_to_msg(
                f, hri.cropped_image(frame.image, p), stamp, frame_id))
            self.outputs.publish_topic(topic("skeleton2d"), hri.SKELETON, hri.skeleton_to_msg(
                f, hri.skeleton_points(p, camera), stamp, frame_id))
            posture = classify_posture(p.joints)
            self.outputs.publish_topic(topic("posture"), hri.POSTURE, hri.posture_to_msg(
                f, posture.code, stamp, frame_id))
