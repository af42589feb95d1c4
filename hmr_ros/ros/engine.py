"""`NodeEngine`: everything the ROS node does, without ROS.

The node (`node.py`) owns the rclpy objects and forwards to this class: subscription callbacks
call `on_image` / `on_camera_info` / `on_keypoints` (they only store, never wait), timers call
`publish_status` / `publish_diagnostics`, services call `reset_adaptation` /
`save_adaptation` / `set_adaptation`, parameter changes go through `update_parameters`.
Inference runs in the engine's own thread (`start`): it takes the newest image that has its
keypoints (`FrameSync`), converts it to a `Frame`, runs `Pipeline.process` and publishes
through an `Outputs` object. Adaptation runs in the pipeline's `AdaptationWorker` thread.

Messages are built with a `MessageFactory` (rclpy classes in the node, rosbags classes in the
tests), so this whole file runs and is tested on machines without ROS 2.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..adapt.worker import AdaptStatus
from ..config import ConfigError, PipelineConfig
from ..data.frame import CameraModel, Frame
from ..detect.base import DetectorUnavailable, KeypointSource
from ..detect.stage import DetectionStage, make_source, resolve_kind
from ..messages.bodies import bodies_to_msg
from ..messages.camera import msg_to_camera
from ..messages.factory import ConversionError, MessageFactory, stamp_to_ns
from ..messages.image import compressed_to_image, msg_to_image
from ..messages.keypoints import msg_to_detections
from ..messages.marker_cdr import bodies_to_markers_cdr
from ..messages.markers import bodies_to_markers, faces_to_msg, vertices_to_cloud
from ..messages.status import (
    DIAG_ERROR,
    DIAG_OK,
    DIAG_WARN,
    DiagnosticEntry,
    adaptation_status_to_msg,
    diagnostics_to_msg,
)
from ..messages.tf import transforms_to_msgs
from .params import NodeConfig, check_update
from .sync import FrameSync, Match

# Output names (the node maps them to publishers).
BODIES, FACES, MARKERS, CLOUD, STATUS, DIAGNOSTICS = (
    "bodies", "mesh_faces", "markers", "vertices", "adaptation_status", "diagnostics")

STALE_S = 3.0  # inputs silent for longer than this are reported in diagnostics
LATENCY_WINDOW = 300


class Outputs(Protocol):
    def publish(self, name: str, msg: Any) -> None:
        """Publish `msg` on the output called `name` (one of the names above)."""

    def send_transforms(self, transforms: list[Any]) -> None:
        """All TransformStamped of one frame in ONE call (tf2_ros sendTransform)."""

    def has_subscribers(self, name: str) -> bool:
        """Whether anyone listens (debug outputs are skipped otherwise)."""


class Log(Protocol):
    def info(self, msg: str) -> None: ...

    def warning(self, msg: str) -> None: ...

    def error(self, msg: str) -> None: ...


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.times: deque[float] = deque()
        self.count = 0
        self.last: float | None = None

    def tick(self, now: float) -> None:
        self.times.append(now)
        self.count += 1
        self.last = now
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self.times) < 2:
            return 0.0
        span = max(now - self.times[0], self.times[-1] - self.times[0])
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def silent_for(self, now: float) -> float:
        return float("inf") if self.last is None else now - self.last


def default_model_name(cfg: PipelineConfig) -> str:
    if cfg.inference.weights:
        return Path(cfg.inference.weights).stem
    from ..model.weights import DEFAULT_WEIGHTS

    return Path(DEFAULT_WEIGHTS).stem


class NodeEngine:
    def __init__(self, pipeline: Any, config: PipelineConfig, node: NodeConfig,
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
        self.log: Log = log or logging.getLogger("hmr_ros")
        self.clock = clock
        self.name = name
        self.model_name = node.model_name or default_model_name(config)
        self.faces = np.asarray(pipeline.body.faces)
        self._camera: CameraModel | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._throttle: dict[str, float] = {}
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
        self.bad_inputs = 0
        self.last_error = ""
        self._errors_reported = 0
        self.frame_id = ""
        source = keypoint_source
        unavailable = ""
        if source is None:
            try:
                source = make_source(config.detector,
                                     resolve_kind(config.detector, bool(node.keypoints_topic)))
            except DetectorUnavailable as err:
                if config.detector.kind != "auto":
                    raise  # asked for by name: refuse to start rather than find nobody
                unavailable = str(err)
        # People come from the keypoints topic, or from the in-process detector on every
        # image when there is no topic (or when a keypoints message brings nobody and a
        # detector was asked for by name). Ids come from the stage's tracker.
        self.stage = DetectionStage.from_config(config.detector, source)
        self.sync = FrameSync(int(round(node.keypoints_tolerance * 1e9)), node.image_buffer,
                              need_keypoints=bool(node.keypoints_topic))
        if source is not None:
            self.log.info(f"people from the in-process detector {source.name}"
                          + (f" where {node.keypoints_topic} brings nobody"
                             if node.keypoints_topic else ""))
        elif not node.keypoints_topic:
            self.warn_once("no_keypoints_topic", (
                f"keypoints_topic is empty and there is no in-process detector "
                f"({unavailable or 'detector.kind is none'}). People are found only through a "
                "hmr_ros/Keypoints2DArray topic or the in-process MediaPipe detector (the "
                "[mediapipe] extra); without either the node estimates nothing and publishes "
                "only /diagnostics and ~/adaptation_status."))

    # ------------------------------------------------------------ logging helpers

    def warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning(msg)

    def warn_throttled(self, key: str, msg: str, period: float = 10.0) -> None:
        now = self.clock()
        if now - self._throttle.get(key, -float("inf")) >= period:
            self._throttle[key] = now
            self.log.warning(msg)

    # ------------------------------------------------------------ inputs (callback threads)

    def on_image(self, msg: Any, compressed: bool = False) -> None:
        """Store the image (the newest few wait for their keypoints); never blocks long."""
        now = self.clock()
        self.images.tick(now)
        if not self.node.keypoints_topic and self.stage.source is None:
            return  # nobody could be found in it
        self.sync.add_image(stamp_to_ns(msg.header.stamp), (msg, compressed), now)

    def reject_image(self, reason: str) -> None:
        """An image that could not even be read (e.g. truncated bytes): counted, logged."""
        self.images.tick(self.clock())
        self.bad_inputs += 1
        self.warn_throttled("image", f"{self.node.image_subscription_topic}: {reason}; image "
                            "skipped", 10.0)

    def on_keypoints(self, msg: Any) -> None:
        self.keypoints.tick(self.clock())
        self.sync.add_keypoints(stamp_to_ns(msg.header.stamp), msg)

    def on_camera_info(self, msg: Any) -> None:
        try:
            camera = msg_to_camera(msg)
        except ConversionError as err:
            self.warn_throttled("camera_info", f"{self.node.camera_info_topic}: {err}; "
                                "ignored (using the fallback focal length)", 30.0)
            return
        self.camera_infos.tick(self.clock())
        with self._lock:
            first = self._camera is None
            self._camera = camera
        if first and "no_camera_info" in self._warned:
            self.log.info(f"CameraInfo received on {self.node.camera_info_topic}; using its "
                          "intrinsics from now on")

    @property
    def camera(self) -> CameraModel | None:
        with self._lock:
            return self._camera

    # ------------------------------------------------------------ inference thread

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
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
        close = getattr(self.pipeline, "close", None)
        if close is not None:
            close()

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
            self.warn_throttled("process", f"frame at {match.stamp_ns} ns failed: "
                                f"{self.last_error} ({self.errors} errors so far)")
        return True

    def _image(self, match: Match) -> np.ndarray | None:
        msg, compressed = match.image
        try:
            return compressed_to_image(msg) if compressed else msg_to_image(msg)
        except ConversionError as err:
            self.bad_inputs += 1
            self.warn_throttled("image", f"{self.node.image_subscription_topic}: {err}; "
                                "image skipped", 10.0)
            return None

    def _camera_for(self, image: np.ndarray) -> CameraModel | None:
        camera = self.camera
        if camera is None:
            self.warn_once("no_camera_info", (
                f"no CameraInfo received on {self.node.camera_info_topic} (yet): using the "
                f"fallback focal length inference.fallback_focal = "
                f"{self.config.inference.fallback_focal:g} px with the principal point at "
                "the image centre. Depth and translation are only as right as that focal; "
                "publish the camera's CameraInfo for metric results."))
            return None
        h, w = image.shape[:2]
        if (camera.width, camera.height) != (w, h):
            self.warn_throttled("camera_size", (
                f"CameraInfo is {camera.width}x{camera.height} but the images are {w}x{h}: "
                "ignoring CameraInfo (fallback focal length) for these images"), 30.0)
            return None
        return camera

    def _frame_id(self, msg: Any, camera: CameraModel | None) -> str:
        if self.node.camera_frame:
            return self.node.camera_frame
        frame_id = str(msg.header.frame_id)
        if frame_id:
            return frame_id
        fallback = camera.frame_id if camera is not None else "camera_optical_frame"
        self.warn_once("empty_frame_id", f"images carry an empty header.frame_id: outputs use "
                       f"{fallback!r} (set camera_frame to choose)")
        return fallback

    def process(self, match: Match) -> Any:
        """One matched image -> Frame -> Pipeline.process -> published outputs. Returns the
        FrameResult (None when the image could not be decoded)."""
        image = self._image(match)
        if image is None:
            return None
        msg = match.image[0]
        detections: tuple = ()
        if match.keypoints is not None:
            try:
                detections = msg_to_detections(match.keypoints)
            except ConversionError as err:
                self.bad_inputs += 1
                self.warn_throttled("keypoints", f"{self.node.keypoints_topic}: {err}; these "
                                    "keypoints are ignored", 10.0)
        camera = self._camera_for(image)
        frame_id = self._frame_id(msg, camera)
        self.frame_id = frame_id
        frame = Frame(image=image, stamp_ns=match.stamp_ns, camera=camera,
                      detections=detections, index=self.frames)
        # Stable ids: upstream ids are kept when they are distinct, otherwise the tracker
        # assigns them; people gone for detector.timeout_s leave the adaptation buffers.
        frame = self.stage.process(frame)
        worker = getattr(self.pipeline, "adaptation", None)
        for lost in self.stage.pop_lost():
            if worker is not None:
                worker.forget(lost)
        result = self.pipeline.process(frame)
        self.frames += 1
        self.publish_result(result, frame_id, match.received)
        return result

    def publish_result(self, result: Any, frame_id: str, received: float | None = None) -> None:
        node = self.node
        stamp = int(result.stamp_ns)
        people = list(result.people)
        self.outputs.publish(BODIES, bodies_to_msg(
            self.factory, people, stamp, frame_id, result.model_version, self.model_name,
            with_vertices=node.publish_vertices))
        if node.publish_tf and people:
            self.outputs.send_transforms(transforms_to_msgs(
                self.factory, people, stamp, frame_id, node.tf_prefix, node.publish_joint_tf))
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

    def _publish_debug(self, people: Sequence[Any], stamp: int, frame_id: str) -> None:
        if any(getattr(p, "vertices", None) is None for p in people):
            self.warn_once("no_vertices", "inference.vertices is false: no ~/markers or "
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
        worker = getattr(self.pipeline, "adaptation", None)
        if worker is not None:
            return worker.status()
        version = int(getattr(getattr(self.pipeline, "backend", None), "version", 0))
        return AdaptStatus("paused", False, self.config.adapt.method, version, 0, 0, 0.0,
                           float("nan"), 0, 0, 0, "adaptation is off (adapt.method is none)")

    def publish_status(self, stamp_ns: int) -> None:
        self.outputs.publish(STATUS, adaptation_status_to_msg(self.factory, self.adapt_status(),
                                                              stamp_ns))

    def diagnostic_entries(self) -> list[DiagnosticEntry]:
        now = self.clock()
        node = self.node
        level, message = DIAG_OK, ""
        images_silent = self.images.silent_for(now)
        kp_silent = self.keypoints.silent_for(now)
        out_silent = self.outputs_rate.silent_for(now)
        new_errors = self.errors - self._errors_reported
        self._errors_reported = self.errors
        problems: list[tuple[int, str]] = []
        if new_errors:
            problems.append((DIAG_ERROR, f"{new_errors} frame(s) failed: {self.last_error}"))
        if not node.keypoints_topic and self.stage.source is None:
            problems.append((DIAG_WARN, "no keypoints topic: nobody can be found, nothing is "
                                        "estimated"))
        if images_silent > STALE_S:
            problems.append((DIAG_WARN, f"no images on {node.image_subscription_topic}"))
        elif node.keypoints_topic and kp_silent > STALE_S:
            problems.append((DIAG_WARN, f"no keypoints on {node.keypoints_topic}"))
        elif node.keypoints_topic and out_silent > STALE_S:
            problems.append((DIAG_WARN, "images and keypoints arrive but their stamps do not "
                                        "match (see keypoints_tolerance)"))
        if self.camera is None:
            problems.append((DIAG_WARN, f"no CameraInfo on {node.camera_info_topic}: fallback "
                                        f"focal {self.config.inference.fallback_focal:g} px"))
        if problems:
            level = max(p[0] for p in problems)
            message = "; ".join(p[1] for p in problems)
        else:
            message = f"estimating at {self.outputs_rate.rate(now):.1f} Hz"

        def mean(values: deque[float]) -> str:
            return f"{np.mean(values):.1f}" if values else "nan"

        def p95(values: deque[float]) -> str:
            return f"{np.percentile(values, 95):.1f}" if values else "nan"

        estimator = DiagnosticEntry(f"{self.name}: estimator", level, message, {
            "image topic": node.image_subscription_topic,
            "keypoints topic": node.keypoints_topic or "(none)",
            "detector": self.stage.source.name if self.stage.source is not None else "(none)",
            "input rate (Hz)": f"{self.images.rate(now):.2f}",
            "keypoints rate (Hz)": f"{self.keypoints.rate(now):.2f}",
            "output rate (Hz)": f"{self.outputs_rate.rate(now):.2f}",
            "images received": str(self.images.count),
            "frames processed": str(self.frames),
            "images dropped": str(self.sync.dropped),
            "images waiting": str(self.sync.waiting),
            "people (last frame)": str(self.people_last),
            "latency (ms)": mean(self.latency_ms),
            "latency p95 (ms)": p95(self.latency_ms),
            "receive to publish (ms)": mean(self.end_to_end_ms),
            "receive to publish p95 (ms)": p95(self.end_to_end_ms),
            "camera info": "yes" if self.camera is not None else "no (fallback focal)",
            "errors": str(self.errors),
            "bad inputs": str(self.bad_inputs),
            "model version": str(self.adapt_status().version),
        }, hardware_id=self.frame_id)
        st = self.adapt_status()
        adapt_level = DIAG_ERROR if st.state == "error" else DIAG_OK
        adapt_msg = (st.message or st.state) if st.state == "error" else \
            (f"{st.state}, {st.steps_per_second:.2f} steps/s" if st.enabled else "disabled")
        adaptation = DiagnosticEntry(f"{self.name}: adaptation", adapt_level, adapt_msg, {
            "state": st.state, "enabled": str(st.enabled).lower(), "method": st.method,
            "model version": str(st.version), "steps": str(st.steps),
            "steps per second": f"{st.steps_per_second:.3f}", "rollbacks": str(st.rollbacks),
            "last loss": f"{st.last_loss:.5g}", "buffered frames": str(st.buffered),
            "dropped": str(st.dropped), "errors": str(st.errors), "message": st.message,
        }, hardware_id=self.frame_id)
        return [estimator, adaptation]

    def publish_diagnostics(self, stamp_ns: int) -> None:
        self.outputs.publish(DIAGNOSTICS, diagnostics_to_msg(
            self.factory, self.diagnostic_entries(), stamp_ns))

    # ------------------------------------------------------------ services

    def _worker(self) -> Any:
        return getattr(self.pipeline, "adaptation", None)

    def reset_adaptation(self) -> tuple[bool, str]:
        worker = self._worker()
        if worker is None:
            return False, "adaptation is off (adapt.method is none): nothing to reset"
        version = worker.reset()
        return True, f"weights reset to the source weights (model version {version})"

    def save_adaptation(self, path: str | None = None) -> tuple[bool, str]:
        worker = self._worker()
        if worker is None:
            return False, "adaptation is off (adapt.method is none): nothing to save"
        try:
            saved = worker.save(path or self.config.adapt.save_path or None)
        except Exception as err:
            return False, f"saving failed: {type(err).__name__}: {err}"
        return True, f"adapted weights (model version {worker.status().version}) saved to " \
                     f"{saved}"

    def set_adaptation(self, enabled: bool) -> tuple[bool, str]:
        worker = self._worker()
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
        if switch and pipeline.adapt.enabled and self._worker() is None:
            return False, "adaptation cannot be enabled: adapt.method is none"
        self.config, self.node = pipeline, node
        if switch:
            self.set_adaptation(pipeline.adapt.enabled)
        return True, ""
