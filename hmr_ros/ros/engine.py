"""`NodeEngine`: everything the ROS node does, without ROS.

The node (`node.py`) owns the rclpy objects and forwards to this class: subscription callbacks
call `on_image` / `on_camera_info` / `on_keypoints` (they only store, never wait), timers call
`publish_status` / `publish_diagnostics`, services call `reset_adaptation` /
`save_adaptation` / `set_adaptation`, parameter changes go through `update_parameters`.

A frame's path (docs/architecture.md): `on_image` stores the raw image in `FrameSync`
(stream/frames.py); the inference thread (`start`) takes the newest image that has its
keypoints, the `FrameAssembler` makes it a `Frame` by the one rule of every input, the
`StreamRunner` (stream/runner.py) finds people (detect/stage.py) and runs `Pipeline.process`
(pipeline.py), and `publish_result` (this file) is the node's sink. Adaptation runs in the
pipeline's `AdaptationWorker` thread.

Messages are built with a `MessageFactory` (rclpy classes in the node, rosbags classes in the
tests), so this whole file runs and is tested on machines without ROS 2.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..adapt.worker import AdaptStatus
from ..config import ConfigError, PipelineConfig
from ..data.frame import CameraModel, FrameResult, PersonEstimate
from ..detect.base import DetectorUnavailable, KeypointSource
from ..detect.stage import DetectionStage, make_source, resolve_kind
from ..logs import Log, ThrottledLog
from ..messages.bodies import bodies_to_msg
from ..messages.factory import MessageFactory, stamp_to_ns
from ..messages.hri import HriIds
from ..messages.marker_cdr import bodies_to_markers_cdr
from ..messages.markers import bodies_to_markers, faces_to_msg, vertices_to_cloud
from ..messages.status import DiagnosticEntry, adaptation_status_to_msg, diagnostics_to_msg
from ..messages.tf import transforms_to_msgs
from ..pipeline import Pipeline
from ..stream.frames import FrameAssembler, FrameSync, Match, RawImage
from ..stream.runner import StreamRunner
from .diagnostics import RateMeter, diagnostic_entries
from .hri_input import SkeletonGather
from .hri_sink import HriSink
from .params import NodeConfig, check_update

# Output names (the node maps them to publishers).
BODIES, FACES, MARKERS, CLOUD, STATUS, DIAGNOSTICS = (
    "bodies", "mesh_faces", "markers", "vertices", "adaptation_status", "diagnostics")

LATENCY_WINDOW = 300


class Outputs(Protocol):
    def publish(self, name: str, msg: Any) -> None:
        """Publish `msg` on the output called `name` (one of the names above)."""

    def send_transforms(self, transforms: list[Any]) -> None:
        """All TransformStamped of one frame in ONE call (tf2_ros sendTransform)."""

    def has_subscribers(self, name: str) -> bool:
        """Whether anyone listens (debug outputs are skipped otherwise)."""


def default_model_name(cfg: PipelineConfig) -> str:
    if cfg.inference.weights:
        return Path(cfg.inference.weights).stem
    from ..model.weights import DEFAULT_WEIGHTS

    return Path(DEFAULT_WEIGHTS).stem


class NodeEngine:
    def __init__(self, pipeline: Pipeline, config: PipelineConfig, node: NodeConfig,
                 factory: MessageFactory, outputs: Outputs, log: Log | None = None,
                 clock: Callable[[], float] = time.monotonic, name: str = "hmr_ros",
                 keypoint_source: KeypointSource | None = None) -> None:
        """keypoint_source: the in-process detector to use instead of the configured one
        (tests); by default `detector.kind` decides (auto: MediaPipe when there is no
        keypoints topic and the [mediapipe] extra is installed)."""
        self.pipeline = pipeline
        pipeline.warn_missing_camera = False  # the engine warns itself, naming the topic
        self.config = config
        self.node = node
        self.factory = factory
        self.outputs = outputs
        self.warn = ThrottledLog(log, clock)
        self.log = self.warn.log
        self.clock = clock
        self.name = name
        self.model_name = node.model_name or default_model_name(config)
        self.faces = np.asarray(pipeline.body.faces)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_markers = -float("inf")
        self.images = RateMeter()
        self.keypoints = RateMeter()
        self.camera_infos = RateMeter()
        self.outputs_rate = RateMeter()
        # The last LATENCY_WINDOW frames (10 s at 30 Hz): /diagnostics reports their mean and
        # p95, which is what `hmr-ros bench node` compares the end-to-end latency with.
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.end_to_end_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.frames = 0
        self.people_last = 0
        self.errors = 0
        self.errors_reported = 0
        self.rejected_images = 0  # raw bytes that were not even an Image message
        self.last_error = ""
        self.frame_id = ""
        # People come with the images from a keypoints topic or ROS4HRI skeletons.
        self.keypoint_input = bool(node.keypoints_topic) or node.hri_input
        source = keypoint_source
        unavailable = ""
        if source is None:
            try:
                source = make_source(config.detector,
                                     resolve_kind(config.detector, self.keypoint_input))
            except DetectorUnavailable as err:
                if config.detector.kind != "auto":
                    raise  # asked for by name: refuse to start rather than find nobody
                unavailable = str(err)
        # People come from the keypoints topic, or from the in-process detector on every
        # image when there is no topic (or when a keypoints message brings nobody and a
        # detector was asked for by name). Ids come from the stage's tracker.
        self.stage = DetectionStage.from_config(config.detector, source)
        self.sync = FrameSync(int(round(node.keypoints_tolerance * 1e9)), node.image_buffer,
                              need_keypoints=self.keypoint_input)
        self.assembler = FrameAssembler(node.camera_frame, self.warn, topics={
            "image": node.image_subscription_topic, "keypoints": node.keypoints_topic,
            "camera_info": node.camera_info_topic})
        self.runner = StreamRunner(pipeline, self.stage, "async")
        # REP-155 ids (`b<track>`, or a ROS4HRI detector's own), shared by TF and the topics.
        self.hri_ids = HriIds()
        self.hri: HriSink | None = None
        if node.publish_hri and hasattr(outputs, "publish_topic"):
            self.hri = HriSink(factory, outputs, self.hri_ids, pipeline.camera_for)
        self.skeletons = SkeletonGather(self.hri_ids) if node.hri_input else None
        if source is not None:
            self.log.info(f"people from the in-process detector {source.name}"
                          + (f" where {node.keypoints_topic} brings nobody"
                             if node.keypoints_topic else ""))
        elif not self.keypoint_input:
            self.warn.once("no_keypoints_topic", (
                f"keypoints_topic is empty and there is no in-process detector "
                f"({unavailable or 'detector.kind is none'}). People are found only through a "
                "hmr_ros/Keypoints2DArray topic or the in-process MediaPipe detector (the "
                "[mediapipe] extra); without either the node estimates nothing and publishes "
                "only /diagnostics and ~/adaptation_status."))

    @property
    def bad_inputs(self) -> int:
        """Inputs skipped because they could not be read (images, keypoints, CameraInfo)."""
        s = self.assembler.skipped
        return s["image"] + s["keypoints"] + s["camera_info"] + self.rejected_images

    # ------------------------------------------------------------ inputs (callback threads)

    def on_image(self, msg: Any, compressed: bool = False) -> None:
        """Store the image (the newest few wait for their keypoints); never blocks long."""
        now = self.clock()
        self.images.tick(now)
        if not self.keypoint_input and self.stage.source is None:
            return  # nobody could be found in it
        self.sync.add_image(stamp_to_ns(msg.header.stamp), RawImage(msg, compressed), now)

    def reject_image(self, reason: str) -> None:
        """An image that could not even be read (e.g. truncated bytes): counted, logged."""
        self.images.tick(self.clock())
        self.rejected_images += 1
        self.warn.throttled("image", f"{self.node.image_subscription_topic}: {reason}; image "
                            "skipped", 10.0)

    def on_keypoints(self, msg: Any) -> None:
        self.keypoints.tick(self.clock())
        self.sync.add_keypoints(stamp_to_ns(msg.header.stamp), msg)

    def on_hri_tracked(self, ids: list[str]) -> None:
        """The ROS4HRI detector's tracked bodies (`hri_input`)."""
        if self.skeletons is not None:
            self.skeletons.tracked(ids)

    def on_skeleton(self, body: str, msg: Any) -> None:
        """One body's Skeleton2D (`hri_input`): people of a stamp go to the sync together."""
        if self.skeletons is None:
            return
        self.keypoints.tick(self.clock())
        for stamp, people in self.skeletons.add(body, msg):
            self.sync.add_keypoints(stamp, people)

    def on_camera_info(self, msg: Any) -> None:
        first = self.assembler.camera is None
        if self.assembler.camera_info(msg) is None:
            return
        self.camera_infos.tick(self.clock())
        if first and self.warn.warned("no_camera_info"):
            self.log.info(f"CameraInfo received on {self.node.camera_info_topic}; using its "
                          "intrinsics from now on")

    @property
    def camera(self) -> CameraModel | None:
        return self.assembler.camera

    # ------------------------------------------------------------ inference thread

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.runner.start()
        self._thread = threading.Thread(target=self._run, name="hmr_ros-inference",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.sync.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop inference, the detector and the adaptation thread."""
        self.stop()
        self.stage.close()
        self.pipeline.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step(0.2)

    def step(self, timeout: float | None = 0.0) -> bool:
        """Process the newest matched image, if one comes within `timeout` s. Never raises:
        errors are counted, logged (throttled) and shown in /diagnostics."""
        match = self.sync.wait(timeout) if timeout else self.sync.pop()
        if match is None:
            return False
        try:
            self.process(match)
        except Exception as err:  # keep the thread alive whatever one frame does
            self.errors += 1
            self.last_error = f"{type(err).__name__}: {err}"
            self.warn.throttled("process", f"frame at {match.stamp_ns} ns failed: "
                                f"{self.last_error} ({self.errors} errors so far)")
        return True

    def process(self, match: Match) -> FrameResult | None:
        """One matched image -> Frame -> StreamRunner -> published outputs. Returns the
        FrameResult (None when the image could not be decoded, and with the temporal
        stage's lookahead while its first frames wait)."""
        frame = self.assembler.frame(match.image, match.keypoints, self.frames,
                                     stamp_ns=match.stamp_ns)
        if frame is None:
            return None
        if frame.camera is None and self.assembler.camera is None:
            self.warn.once("no_camera_info", (
                f"no CameraInfo received on {self.node.camera_info_topic} (yet): using the "
                f"fallback focal length inference.fallback_focal = "
                f"{self.config.inference.fallback_focal:g} px with the principal point at "
                "the image centre. Depth and translation are only as right as that focal; "
                "publish the camera's CameraInfo for metric results."))
        self.frame_id = frame.frame_id
        # Stable ids: upstream ids are kept when they are distinct, otherwise the tracker
        # assigns them; people gone for detector.tracker.timeout_s leave the adaptation buffers.
        # One pair per image, except with the temporal stage's lookahead: then the pairs of
        # earlier frames, each published with the stamp of the frame it describes.
        pairs = self.runner.process_all(frame)
        self.frames += 1
        result = None
        for frame, result in pairs:
            self.publish_result(result, frame.frame_id, match.received)
            if self.hri is not None:
                self.hri.add(frame, result, self.runner.lost)
        return result

    def publish_result(self, result: FrameResult, frame_id: str,
                       received: float | None = None) -> None:
        """The node's sink: bodies, TF (one call), and at `marker_rate` the debug outputs."""
        node = self.node
        stamp = int(result.stamp_ns)
        people = list(result.people)
        self.outputs.publish(BODIES, bodies_to_msg(
            self.factory, people, stamp, frame_id, result.model_version, self.model_name,
            with_vertices=node.publish_vertices))
        if node.publish_tf and people:
            self.outputs.send_transforms(transforms_to_msgs(
                self.factory, people, stamp, frame_id, node.tf_prefix, node.publish_joint_tf,
                self.hri_ids.name))
        now = self.clock()
        if (node.publish_markers or node.publish_cloud) and \
                now - self._last_markers >= 1.0 / node.marker_rate:
            self._last_markers = now
            self._publish_debug(people, stamp, frame_id)
        self.outputs_rate.tick(now)
        self.people_last = len(people)
        self.latency_ms.append(float(result.latency_ms))
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

    # ------------------------------------------------------------ periodic outputs

    def publish_faces(self) -> None:
        """The mesh triangles, once (transient-local topic: late subscribers get it too)."""
        self.outputs.publish(FACES, faces_to_msg(self.factory, self.faces))

    def adapt_status(self) -> AdaptStatus:
        worker = self.pipeline.adaptation
        if worker is not None:
            return worker.status()
        version = int(self.pipeline.backend.version)
        return AdaptStatus("paused", False, self.config.adapt.method, version, 0, 0, 0.0,
                           float("nan"), 0, 0, 0, "adaptation is off (adapt.method is none)")

    def publish_status(self, stamp_ns: int) -> None:
        self.outputs.publish(STATUS, adaptation_status_to_msg(self.factory, self.adapt_status(),
                                                              stamp_ns))

    def diagnostic_entries(self) -> list[DiagnosticEntry]:
        return diagnostic_entries(self)

    def publish_diagnostics(self, stamp_ns: int) -> None:
        self.outputs.publish(DIAGNOSTICS, diagnostics_to_msg(
            self.factory, self.diagnostic_entries(), stamp_ns))

    # ------------------------------------------------------------ services

    def reset_adaptation(self) -> tuple[bool, str]:
        worker = self.pipeline.adaptation
        if worker is None:
            return False, "adaptation is off (adapt.method is none): nothing to reset"
        try:
            version = worker.reset()
        except TimeoutError as err:  # the worker's thread did not get to it in time
            return False, f"reset failed: {err}"
        return True, f"weights reset to the source weights (model version {version})"

    def save_adaptation(self, path: str | None = None) -> tuple[bool, str]:
        worker = self.pipeline.adaptation
        if worker is None:
            return False, "adaptation is off (adapt.method is none): nothing to save"
        try:
            saved = worker.save(path or self.config.adapt.worker.save_path or None)
        except Exception as err:
            return False, f"saving failed: {type(err).__name__}: {err}"
        return True, f"adapted weights (model version {worker.status().version}) saved to " \
                     f"{saved}"

    def set_adaptation(self, enabled: bool) -> tuple[bool, str]:
        worker = self.pipeline.adaptation
        if worker is None:
            if enabled:
                return False, "adaptation cannot be enabled: adapt.method is none"
            return True, "adaptation is off"
        worker.set_enabled(bool(enabled))
        self.config = dataclasses.replace(
            self.config, adapt=dataclasses.replace(self.config.adapt, enabled=bool(enabled)))
        return True, "adaptation enabled" if enabled else "adaptation disabled (inference " \
                                                          "keeps the current weights)"

    # ------------------------------------------------------------ run-time parameters

    def update_parameters(self, changes: Sequence[tuple[str, Any]]) -> tuple[bool, str]:
        """Validate ALL changes, then apply them (or none): (ok, reason)."""
        pipeline, node = self.config, self.node
        try:
            for name, value in changes:
                pipeline, node = check_update(name, value, pipeline, node)
        except ConfigError as err:
            return False, str(err)
        switch = any(name == "adapt.enabled" for name, _ in changes)
        if switch and pipeline.adapt.enabled and self.pipeline.adaptation is None:
            return False, "adaptation cannot be enabled: adapt.method is none"
        self.config, self.node = pipeline, node
        if switch:
            self.set_adaptation(pipeline.adapt.enabled)
        return True, ""
