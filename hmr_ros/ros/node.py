"""The hmr_ros ROS 2 node: rclpy wiring around `NodeEngine` (all logic lives there).

A plain rclpy node (not a lifecycle node; docs/ros.md says why). It

- reads its parameters (config/adapt.yaml, launch overrides) and maps them in ONE call to the
  core's `PipelineConfig` and the node's `NodeConfig` (`params.load_parameters`);
- builds the pipeline with `hmr_ros.pipeline.build_pipeline`; the adaptation worker is
  created whenever adapt.method is not `none`, so `~/set_adaptation` can switch it on later;
- subscribes to the image (raw or compressed), CameraInfo and Keypoints2DArray topics; the
  callbacks only store messages, inference runs in the engine's thread;
- publishes ~/bodies, ~/mesh_faces (transient local, once), ~/markers, ~/vertices,
  ~/adaptation_status, /diagnostics and TF (one sendTransform per frame);
- offers ~/reset_adaptation, ~/save_adaptation (std_srvs/Trigger) and ~/set_adaptation
  (std_srvs/SetBool).

With `player.py` and `launch_file.py`, the only code of the package that imports ROS (rclpy,
tf2_ros, generated messages); the frame path and the sinks (engine.py) are ROS-free.
Run it with `ros2 run hmr_ros hmr_ros_node` or `ros2 launch hmr_ros adapt.launch.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import UInt32MultiArray
from std_srvs.srv import SetBool, Trigger
from tf2_ros import TransformBroadcaster
from visualization_msgs.msg import MarkerArray

from hmr_ros.msg import AdaptationStatus, Keypoints2DArray, SMPLBodyArray

from ..config import ConfigError
from ..messages.cdr import image_from_cdr
from ..messages.factory import ConversionError
from .engine import BODIES, CLOUD, DIAGNOSTICS, FACES, MARKERS, STATUS, NodeEngine
from .params import (
    load_parameters,
    parameter_defaults,
    parameter_descriptions,
    unknown_names,
)
from .rclpy_factory import RclpyFactory

NODE_NAME = "hmr_ros"

try:  # Humble and newer
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover
    ExternalShutdownException = KeyboardInterrupt  # type: ignore[misc, assignment]


def qos_profile(kind: str, depth: int) -> QoSProfile:
    """`sensor_data` (rclpy's qos_profile_sensor_data: keep last, best effort, volatile),
    `reliable` or `best_effort`, with the given history depth."""
    reliability = ReliabilityPolicy.RELIABLE if kind == "reliable" else \
        ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=reliability, durability=DurabilityPolicy.VOLATILE)


def _reliable(depth: int, latched: bool = False) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else
                      DurabilityPolicy.VOLATILE)


class _RosLog:
    """The engine's logger on top of the node's rcutils logger."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def info(self, msg: str) -> None:
        self._logger.info(msg)

    def warning(self, msg: str) -> None:
        (getattr(self._logger, "warning", None) or self._logger.warn)(msg)

    def error(self, msg: str) -> None:
        self._logger.error(msg)


class _LoggingBridge(logging.Handler):
    """Forwards the core's Python `hmr_ros` logger (pipeline, adaptation worker) to ROS."""

    def __init__(self, log: _RosLog) -> None:
        super().__init__(logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self._log.error(text)
            elif record.levelno >= logging.WARNING:
                self._log.warning(text)
            else:
                self._log.info(text)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _have_hri_msgs() -> bool:
    import importlib.util

    return importlib.util.find_spec("hri_msgs") is not None


class _Outputs:
    def __init__(self, node: Node, publishers: dict[str, Any], broadcaster: TransformBroadcaster,
                 factory: RclpyFactory) -> None:
        self._node = node
        self._pubs = publishers
        self._tf = broadcaster
        self._factory = factory
        self._topics: dict[str, Any] = {}  # the REP-155 topics, created as bodies appear

    def publish_topic(self, topic: str, msgtype: str, msg: Any) -> None:
        pub = self._topics.get(topic)
        if pub is None:
            pub = self._node.create_publisher(self._factory.message_class(msgtype), topic,
                                              _reliable(5))
            self._topics[topic] = pub
        pub.publish(msg)

    def remove_topics(self, prefix: str) -> None:
        for topic in [t for t in self._topics if t.startswith(prefix)]:
            self._node.destroy_publisher(self._topics.pop(topic))

    def publish(self, name: str, msg: Any) -> None:
        self._pubs[name].publish(msg)

    def send_transforms(self, transforms: list[Any]) -> None:
        if transforms:
            self._tf.sendTransform(transforms)

    def has_subscribers(self, name: str) -> bool:
        count = getattr(self._pubs[name], "get_subscription_count", None)
        return True if count is None else count() > 0


class HmrRosNode(Node):
    def __init__(self, pipeline: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("automatically_declare_parameters_from_overrides", True)
        super().__init__(kwargs.pop("node_name", NODE_NAME), **kwargs)
        self._declare_parameters()
        self.pipeline_config, self.node_config = load_parameters(self._our_parameters())
        cfg, ncfg = self.pipeline_config, self.node_config
        log = _RosLog(self.get_logger())
        self._bridge = _LoggingBridge(log)
        core_log = logging.getLogger("hmr_ros")
        core_log.addHandler(self._bridge)
        core_log.setLevel(logging.INFO)
        self._propagate = core_log.propagate
        core_log.propagate = False

        if pipeline is None:
            from ..pipeline import build_pipeline
            from ..source_replay import replay_for

            # The worker exists whenever there is a method, so ~/set_adaptation can start it
            # later; adapt.enabled only says whether it adapts from the start.
            adapt = cfg.adapt.method != "none"
            pipeline = build_pipeline(cfg, adapt=adapt, replay=replay_for(cfg, adapt))
        self.pipeline = pipeline

        control = MutuallyExclusiveCallbackGroup()
        publishers = {
            BODIES: self.create_publisher(SMPLBodyArray, "~/bodies", _reliable(10)),
            FACES: self.create_publisher(UInt32MultiArray, "~/mesh_faces",
                                         _reliable(1, latched=True)),
            MARKERS: self.create_publisher(MarkerArray, "~/markers", _reliable(1)),
            CLOUD: self.create_publisher(PointCloud2, "~/vertices", _reliable(1)),
            STATUS: self.create_publisher(AdaptationStatus, "~/adaptation_status",
                                          _reliable(10)),
            DIAGNOSTICS: self.create_publisher(DiagnosticArray, "/diagnostics", _reliable(10)),
        }
        if (ncfg.publish_hri or ncfg.hri_input) and not _have_hri_msgs():
            self.get_logger().warning(
                "hri_msgs (ROS4HRI) is not installed: no /humans/bodies/* output or input "
                "(build ros4hri/hri_msgs in the workspace, or set publish_hri false)")
            ncfg = self.node_config = dataclasses.replace(ncfg, publish_hri=False,
                                                          hri_input=False)
        factory = RclpyFactory()
        self.engine = NodeEngine(pipeline, cfg, ncfg, factory,
                                 _Outputs(self, publishers, TransformBroadcaster(self), factory),
                                 log, name=self.get_name())

        image_qos = qos_profile(ncfg.image_qos, ncfg.image_qos_depth)
        if ncfg.image_transport == "compressed":
            self.create_subscription(CompressedImage, ncfg.image_subscription_topic,
                                     lambda m: self.engine.on_image(m, compressed=True),
                                     image_qos)
        else:
            # raw=True: rclpy hands over the serialized bytes, read with numpy
            # (messages/cdr.py) instead of being turned into Python objects under the GIL.
            self.create_subscription(Image, ncfg.image_topic,
                                     lambda raw: self._on_raw_image(raw), image_qos, raw=True)
        self.create_subscription(CameraInfo, ncfg.camera_info_topic, self.engine.on_camera_info,
                                 image_qos)
        self._skeleton_subs: dict[str, Any] = {}
        if ncfg.hri_input:
            from hri_msgs.msg import IdsList

            self.create_subscription(IdsList, "/humans/bodies/tracked", self._on_hri_tracked,
                                     _reliable(10))
        elif ncfg.keypoints_topic:
            self.create_subscription(Keypoints2DArray, ncfg.keypoints_topic,
                                     self.engine.on_keypoints,
                                     qos_profile(ncfg.keypoints_qos, ncfg.keypoints_qos_depth))

        self.create_service(Trigger, "~/reset_adaptation", self._reset, callback_group=control)
        self.create_service(Trigger, "~/save_adaptation", self._save, callback_group=control)
        self.create_service(SetBool, "~/set_adaptation", self._set, callback_group=control)
        self.create_timer(1.0 / ncfg.status_rate, self._status, callback_group=control)
        self.create_timer(1.0 / ncfg.diagnostics_rate, self._diagnostics,
                          callback_group=control)
        # Registered last: rclpy also runs this callback for declarations.
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.engine.publish_faces()
        worker = getattr(pipeline, "adaptation", None)
        self.get_logger().info(
            f"hmr_ros ready: model {self.engine.model_name}, images on "
            f"{self.resolve(ncfg.image_subscription_topic)} ({ncfg.image_qos}), keypoints on "
            f"{self.resolve(ncfg.keypoints_topic) if ncfg.keypoints_topic else '(none)'}, "
            f"in-process detector {getattr(self.engine.stage.source, 'name', '(none)')}, "
            f"adaptation {cfg.adapt.method if worker is not None else 'off'}"
            f"{'' if worker is None or cfg.adapt.enabled else ' (disabled)'}")

    def _on_hri_tracked(self, msg: Any) -> None:
        """Follow the ROS4HRI detector's bodies: one Skeleton2D subscription per tracked id."""
        from hri_msgs.msg import Skeleton2D

        ids = [str(i) for i in msg.ids]
        self.engine.on_hri_tracked(ids)
        for gone in set(self._skeleton_subs) - set(ids):
            self.destroy_subscription(self._skeleton_subs.pop(gone))
        for body in ids:
            if body not in self._skeleton_subs:
                self._skeleton_subs[body] = self.create_subscription(
                    Skeleton2D, f"/humans/bodies/{body}/skeleton2d",
                    lambda m, body=body: self.engine.on_skeleton(body, m), _reliable(10))

    def _on_raw_image(self, raw: bytes) -> None:
        try:
            image = image_from_cdr(raw)
        except ConversionError as err:
            self.engine.reject_image(str(err))
            return
        self.engine.on_image(image)

    # ------------------------------------------------------------ parameters

    def resolve(self, topic: str) -> str:
        try:
            return self.resolve_topic_name(topic)
        except Exception:  # older rclpy without resolve_topic_name
            return topic

    def _declare_parameters(self) -> None:
        descriptions = parameter_descriptions()
        for name, default in parameter_defaults().items():
            if self.has_parameter(name):
                continue  # given as an override (params file, launch, command line)
            self.declare_parameter(name, default, ParameterDescriptor(
                description=descriptions.get(name, ""),
                # Floating-point parameters also take integers (`500` for `500.0`); the
                # typed mapping in params.py checks every value.
                dynamic_typing=isinstance(default, float)))

    def _our_parameters(self) -> dict[str, Any]:
        """Every parameter value the node holds, minus ROS' own node parameters. Names that
        are neither ours nor ROS' stay in when they came from an override, so a typo in a
        params file or launch file is an error rather than silently ignored."""
        values = {}
        for name, param in self.get_parameters_by_prefix("").items():
            values[name] = getattr(param, "value", param)
        overrides = getattr(self, "_parameter_overrides", None)
        stray = set(unknown_names(values))
        if overrides is not None:
            stray -= set(overrides)
        return {k: v for k, v in values.items() if k not in stray}

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        ok, reason = self.engine.update_parameters([(p.name, p.value) for p in params])
        return SetParametersResult(successful=ok, reason=reason)

    # ------------------------------------------------------------ services and timers

    def _reset(self, request: Any, response: Any) -> Any:
        response.success, response.message = self.engine.reset_adaptation()
        self._status()
        return response

    def _save(self, request: Any, response: Any) -> Any:
        response.success, response.message = self.engine.save_adaptation()
        return response

    def _set(self, request: Any, response: Any) -> Any:
        enabled = bool(request.data)
        response.success, response.message = self.engine.set_adaptation(enabled)
        if response.success and self.get_parameter("adapt.enabled").value != enabled:
            # Keep the adapt.enabled parameter in step with the service.
            self.set_parameters([Parameter("adapt.enabled", value=enabled)])
        self._status()
        return response

    def _now_ns(self) -> int:
        return int(self.get_clock().now().nanoseconds)

    def _status(self) -> None:
        self.engine.publish_status(self._now_ns())

    def _diagnostics(self) -> None:
        self.engine.publish_diagnostics(self._now_ns())

    # ------------------------------------------------------------ lifetime

    def start(self) -> None:
        self.engine.start()

    def shutdown(self) -> None:
        """Stop inference and adaptation; detach the logging bridge."""
        self.engine.close()
        core_log = logging.getLogger("hmr_ros")
        core_log.removeHandler(self._bridge)
        core_log.propagate = self._propagate


def make_executor(kind: str) -> Executor:
    """The executor of the node's callbacks. They only store messages or answer services
    (inference runs in the engine's thread), so one thread is enough, and the executor's own
    Python overhead per callback is what limits the input rate: with 30 Hz images, keypoints
    and CameraInfo on 2 cores, MultiThreadedExecutor's wait loop held the GIL for most of
    the process's time (README, "The node at camera rate"). rclpy's C++ EventsExecutor
    (rclpy.experimental, Jazzy) would cost less, but with these wheels it published no timer
    output and ignored SIGINT, so it is not offered."""
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=2)
    return SingleThreadedExecutor()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = HmrRosNode()
        executor = make_executor(node.node_config.executor)
        executor.add_node(node)
        node.start()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ConfigError as err:
        print(f"[hmr_ros] configuration error: {err}", file=sys.stderr)
        code = 2
    except (FileNotFoundError, OSError, ValueError) as err:  # weights, body model, ...
        print(f"[hmr_ros] cannot start: {type(err).__name__}: {err}", file=sys.stderr)
        code = 1
    finally:
        # A Ctrl-C in a terminal reaches the node twice under `ros2 launch`: from the terminal
        # (the process group) and forwarded by launch. The second one must not cut the
        # shutdown short with a KeyboardInterrupt traceback and exit code -2; launch's SIGTERM
        # still ends a shutdown that hangs.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
