"""`NodeEngine`: everything the ROS node does, without ROS.

The node (`node.py`) owns the rclpy objects and forwards to this class: subscription callbacks
call `on_image` / `on_camera_info` / `on_keypoints` (they only store, never wait), timers call
`publish_status` / `publish_diagnostics`, services call `reset_adaptation` /
`save_adaptation` / `set_adaptation`, parameter changes go through `update_parameters`.

A frame's path (docs/architecture.md): `on_image` stores the raw image in `FrameSync`
(stream/frames.py); the inference thread (`start`) runs `run_stream` (stream/run.py) over the
node's `SyncSource` (stream/sources.py: the newest image that has its keypoints, made a
`Frame` by `FrameAssembler`'s rule); the `StreamRunner` (stream/runner.py) finds people
(detect/stage.py), runs `Pipeline.process` (pipeline.py) and hands each result to the node's
sinks, `NodeSink` (node_sink.py: bodies, TF, markers) and `HriSink` (hri_sink.py: REP-155).
Adaptation runs in the pipeline's `AdaptationWorker` thread, or with `adapt.worker.kind:
process` in the child process of its `ProcessAdaptationWorker`.

Messages are built with a `MessageFactory` (rclpy classes in the node, rosbags classes in the
tests), so this whole file runs and is tested on machines without ROS 2.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..adapt.worker import AdaptStatus
from ..config import ConfigError, PipelineConfig
from ..data.frame import CameraModel, Frame
from ..detect.base import DetectorUnavailable, KeypointSource
from ..detect.stage import DetectionStage, make_source, resolve_kind
from ..logs import Log, ThrottledLog
from ..messages.factory import MessageFactory, stamp_to_ns
from ..messages.hri import HriIds
from ..messages.markers import faces_to_msg
from ..messages.status import DiagnosticEntry, adaptation_status_to_msg, diagnostics_to_msg
from ..pipeline import Pipeline
from ..stream.frames import FrameAssembler, FrameSync, RawImage
from ..stream.run import feed, run_stream
from ..stream.runner import StreamRunner
from ..stream.sources import SyncSource
from .diagnostics import RateMeter, diagnostic_entries
from .hri_input import SkeletonGather
from .hri_sink import HriSink
from .node_sink import (  # noqa: F401  (the output names, for the node)
    BODIES,
    CLOUD,
    DIAGNOSTICS,
    FACES,
    MARKERS,
    STATUS,
    NodeSink,
    Outputs,
)
from .params import NodeConfig, check_update


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
        self.factory = factory
        self.warn = ThrottledLog(log, clock)
        self.log = self.warn.log
        self.clock = clock
        self.name = name
        self.model_name = node.model_name or default_model_name(config)
        self.faces = np.asarray(pipeline.body.faces)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.images = RateMeter()
        self.keypoints = RateMeter()
        self.camera_infos = RateMeter()
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
        # The live input, numbered by the frames processed so far.
        self.frame_source = SyncSource(self.sync, self.assembler, lambda: self.runner.frames,
                                       self._on_frame)
        # REP-155 ids (`b<track>`, or a ROS4HRI detector's own), shared by TF and the topics.
        self.hri_ids = HriIds()
        self.publisher = NodeSink(factory, outputs, node, self.faces, self.model_name,
                                  self.hri_ids, self.warn, clock,
                                  lambda: self.frame_source.received)
        self._node = node
        self._hri: HriSink | None = None
        self.hri = (HriSink(factory, outputs, self.hri_ids, pipeline.camera_for)
                    if node.publish_hri and hasattr(outputs, "publish_topic") else None)
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

    # ------------------------------------------------------------ settings and sinks

    @property
    def node(self) -> NodeConfig:
        return self._node

    @node.setter
    def node(self, node: NodeConfig) -> None:
        self._node = self.publisher.node = node

    @property
    def outputs(self) -> Outputs:
        return self.publisher.outputs

    @outputs.setter
    def outputs(self, outputs: Outputs) -> None:
        self.publisher.outputs = outputs

    @property
    def hri(self) -> HriSink | None:
        """The REP-155 sink (None: `publish_hri` is off)."""
        return self._hri

    @hri.setter
    def hri(self, sink: HriSink | None) -> None:
        self._hri = sink
        self.runner.sinks = [self.publisher] + ([sink] if sink is not None else [])

    @property
    def frames(self) -> int:
        """Frames processed (the next frame's index)."""
        return self.runner.frames

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
        frames = self.frame_source.frames(self._stop, self._failed)
        for _ in run_stream(self.runner, frames, on_error=self._failed, flush=False):
            pass

    def step(self, timeout: float | None = 0.0) -> bool:
        """Process the newest matched image, if one comes within `timeout` s (the inference
        thread's step, for callers that drive it). Never raises: errors are counted, logged
        (throttled) and shown in /diagnostics."""
        match = self.frame_source.take(timeout)
        if match is None:
            return False
        try:
            frame = self.frame_source.frame(match)
        except Exception as err:
            self._failed(match.stamp_ns, err)
            return True
        if frame is not None:
            feed(self.runner, frame, self._failed)
        return True

    def _on_frame(self, frame: Frame) -> None:
        """Each frame of the live input, before it is processed."""
        if frame.camera is None and self.assembler.camera is None:
            self.warn.once("no_camera_info", (
                f"no CameraInfo received on {self.node.camera_info_topic} (yet): using the "
                f"fallback focal length inference.fallback_focal = "
                f"{self.config.inference.fallback_focal:g} px with the principal point at "
                "the image centre. Depth and translation are only as right as that focal; "
                "publish the camera's CameraInfo for metric results."))
        self.frame_id = frame.frame_id

    def _failed(self, stamp_ns: int, err: Exception) -> None:
        """One frame failed: counted, logged (throttled), shown in /diagnostics."""
        self.errors += 1
        self.last_error = f"{type(err).__name__}: {err}"
        self.warn.throttled("process", f"frame at {stamp_ns} ns failed: "
                            f"{self.last_error} ({self.errors} errors so far)")

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
        except (TimeoutError, RuntimeError) as err:
            # The worker did not get to it in time, or (process worker) its child is gone.
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
