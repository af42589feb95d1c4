"""`NodeSink`: the node's publishers as a sink of the stream runner (stream/runner.py).

Per frame: `~/bodies`, the TF frames of the people (one sendTransform), and at most
`marker_rate` times a second the debug outputs `~/markers` and `~/vertices` (only when someone
listens). It also keeps what /diagnostics reports about the outputs: their rate, the people of
the last frame, and the inference and receive-to-publish latencies of the last frames.

ROS-free like the engine: messages come from a `MessageFactory`, topics from `Outputs`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..data.frame import Frame, FrameResult, PersonEstimate
from ..logs import ThrottledLog
from ..messages.bodies import bodies_to_msg
from ..messages.factory import MessageFactory
from ..messages.hri import HriIds
from ..messages.marker_cdr import bodies_to_markers_cdr
from ..messages.markers import bodies_to_markers, vertices_to_cloud
from ..messages.tf import transforms_to_msgs
from .diagnostics import RateMeter
from .params import NodeConfig

# Output names (the node maps them to publishers).
BODIES, FACES, MARKERS, CLOUD, STATUS, DIAGNOSTICS = (
    "bodies", "mesh_faces", "markers", "vertices", "adaptation_status", "diagnostics")

# The last LATENCY_WINDOW frames (10 s at 30 Hz): /diagnostics reports their mean and p95,
# which is what `hmr-ros bench node` compares the end-to-end latency with.
LATENCY_WINDOW = 300


class Outputs(Protocol):
    def publish(self, name: str, msg: Any) -> None:
        """Publish `msg` on the output called `name` (one of the names above)."""

    def send_transforms(self, transforms: list[Any]) -> None:
        """All TransformStamped of one frame in ONE call (tf2_ros sendTransform)."""

    def has_subscribers(self, name: str) -> bool:
        """Whether anyone listens (debug outputs are skipped otherwise)."""


class NodeSink:
    """node: the node's settings (the engine replaces them on a parameter change);
    received: when the image of the frame being published arrived (None: unknown)."""

    def __init__(self, factory: MessageFactory, outputs: Outputs, node: NodeConfig,
                 faces: np.ndarray, model_name: str, ids: HriIds, warn: ThrottledLog,
                 clock: Callable[[], float], received: Callable[[], float | None]) -> None:
        self.factory = factory
        self.outputs = outputs
        self.node = node
        self.faces = faces
        self.model_name = model_name
        self.ids = ids
        self.warn = warn
        self.clock = clock
        self.received = received
        self._last_markers = -float("inf")
        self.rate = RateMeter()
        self.people_last = 0
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.end_to_end_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def add(self, frame: Frame, result: FrameResult) -> None:
        """Bodies, TF (one call), and at `marker_rate` the debug outputs, stamped like the
        frame the result describes, in its output frame."""
        node = self.node
        frame_id = frame.frame_id
        stamp = int(result.stamp_ns)
        people = list(result.people)
        self.outputs.publish(BODIES, bodies_to_msg(
            self.factory, people, stamp, frame_id, result.model_version, self.model_name,
            with_vertices=node.publish_vertices))
        if node.publish_tf and people:
            self.outputs.send_transforms(transforms_to_msgs(
                self.factory, people, stamp, frame_id, node.tf_prefix, node.publish_joint_tf,
                self.ids.name))
        now = self.clock()
        if (node.publish_markers or node.publish_cloud) and \
                now - self._last_markers >= 1.0 / node.marker_rate:
            self._last_markers = now
            self._publish_debug(people, stamp, frame_id)
        self.rate.tick(now)
        self.people_last = len(people)
        self.latency_ms.append(float(result.latency_ms))
        received = self.received()
        if received is not None:
            self.end_to_end_ms.append((now - received) * 1e3)

    def _publish_debug(self, people: Sequence[PersonEstimate], stamp: int, frame_id: str
                       ) -> None:
        if any(p.vertices is None for p in people):
            self.warn.once("no_vertices", "inference.vertices is false: no ~/markers or "
                           "~/vertices (set inference.vertices to true to see meshes)")
            return
        node = self.node
        if node.publish_markers and self.outputs.has_subscribers(MARKERS):
            textured = self.factory.marker_bytes_textured
            if textured is None:
                markers = bodies_to_markers(self.factory, people, self.faces, stamp, frame_id,
                                            node.marker_alpha)
            else:  # serialized from numpy: no Point objects on the inference thread
                markers = bodies_to_markers_cdr(people, self.faces, stamp, frame_id,
                                                node.marker_alpha, textured)
            self.outputs.publish(MARKERS, markers)
        if node.publish_cloud and self.outputs.has_subscribers(CLOUD):
            self.outputs.publish(CLOUD, vertices_to_cloud(self.factory, people, stamp,
                                                          frame_id))
