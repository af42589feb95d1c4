"""ROS parameters of the node -> the core's `PipelineConfig` and the node's `NodeConfig`.

No rclpy here: `load_parameters` maps a plain {name: value} dict (what the node reads from its
parameters, or a `ros__parameters` YAML section) in ONE place, so the mapping is tested without
ROS. Names:

- `inference.<field>`, `adapt.<field>`, `adapt.<section>.<field>`, `detector.*` and
  `temporal.*`: the core config's flat dotted names (`hmr_ros.config.to_flat_dict`); in a YAML
  file they may also be nested (`adapt: {guard: {loss_factor: ...}}`), which ROS flattens to the
  same dotted names; names of an earlier release are refused with their new names;
- everything else is a `NodeConfig` field (topics, QoS, frames, publish flags, rates).

Unknown names are rejected with the closest known names, so a typo in a launch file or YAML
fails loudly instead of being ignored. ROS' own per-node parameters (`use_sim_time`,
`qos_overrides.*`, ...) are let through untouched.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import (
    ConfigError,
    PipelineConfig,
    coerce_value,
    flatten,
    renamed_error,
    replace_path,
    to_flat_dict,
)
from ..config.coerce import help_texts

QOS_CHOICES = ("sensor_data", "reliable", "best_effort")
EXECUTORS = ("single", "multi")
TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class NodeConfig:
    """Node-only parameters (everything that is not the core pipeline's configuration)."""

    image_topic: str = "image"
    image_transport: str = "raw"
    camera_info_topic: str = "camera_info"
    keypoints_topic: str = "keypoints"
    image_qos: str = "sensor_data"
    image_qos_depth: int = 5
    keypoints_qos: str = "reliable"
    keypoints_qos_depth: int = 10
    keypoints_tolerance: float = 0.0
    image_buffer: int = 8
    camera_frame: str = ""
    tf_prefix: str = ""
    publish_tf: bool = True
    publish_joint_tf: bool = True
    publish_markers: bool = True
    marker_rate: float = 5.0
    marker_alpha: float = 0.8
    publish_cloud: bool = False
    publish_vertices: bool = False
    status_rate: float = 1.0
    diagnostics_rate: float = 1.0
    model_name: str = ""
    executor: str = "single"
    publish_hri: bool = True
    hri_input: bool = False

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.image_transport not in TRANSPORTS:
            raise ConfigError(f"image_transport must be one of {TRANSPORTS}, got "
                              f"{self.image_transport!r}")
        for name in ("image_qos", "keypoints_qos"):
            if getattr(self, name) not in QOS_CHOICES:
                raise ConfigError(f"{name} must be one of {QOS_CHOICES}, got "
                                  f"{getattr(self, name)!r}")
        for name in ("image_topic", "camera_info_topic"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name} must not be empty")
        for name in ("image_qos_depth", "keypoints_qos_depth", "image_buffer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.keypoints_tolerance < 0:
            raise ConfigError(f"keypoints_tolerance must be >= 0 s, got "
                              f"{self.keypoints_tolerance}")
        for name in ("marker_rate", "status_rate", "diagnostics_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 Hz, got {getattr(self, name)}")
        if not 0.0 <= self.marker_alpha <= 1.0:
            raise ConfigError(f"marker_alpha must be in [0, 1], got {self.marker_alpha}")

    @property
    def image_subscription_topic(self) -> str:
        """The topic actually subscribed: `<image_topic>/compressed` for compressed images
        (image_transport's naming)."""
        if self.image_transport == "compressed":
            return self.image_topic.rstrip("/") + "/compressed"
        return self.image_topic


NODE_DESCRIPTIONS: dict[str, str] = {
    "image_topic": "sensor_msgs/Image input (with image_transport=compressed, "
                   "<image_topic>/compressed carries sensor_msgs/CompressedImage)",
    "image_transport": "raw | compressed",
    "camera_info_topic": "sensor_msgs/CameraInfo input; without it inference.fallback_focal "
                         "is used (warned once)",
    "keypoints_topic": "hmr_ros/Keypoints2DArray input, matched to images by header stamp; "
                       "empty = none: people come from the in-process detector "
                       "(detector.kind; MediaPipe with the [mediapipe] extra), or nobody is "
                       "estimated",
    "image_qos": "QoS of the image and camera_info subscriptions: sensor_data (best effort, "
                 "volatile) | reliable | best_effort",
    "image_qos_depth": "history depth of the image and camera_info subscriptions",
    "keypoints_qos": "QoS of the keypoints subscription: sensor_data | reliable | best_effort",
    "keypoints_qos_depth": "history depth of the keypoints subscription",
    "keypoints_tolerance": "s; a keypoints message matches an image whose stamp is within this "
                           "(0 = exact stamps)",
    "image_buffer": "newest images kept while waiting for their keypoints",
    "camera_frame": "frame_id of all outputs; empty = the image header's frame_id",
    "tf_prefix": "prepended to every TF child frame (body_<id>, <joint>_<id>)",
    "publish_tf": "broadcast body_<id> (REP-155) under the camera frame",
    "publish_joint_tf": "also broadcast the 24 joint frames <joint>_<id> under body_<id>",
    "publish_markers": "publish ~/markers (MarkerArray, one TRIANGLE_LIST per body)",
    "marker_rate": "Hz, the most often ~/markers and ~/vertices are published",
    "marker_alpha": "opacity of the body markers, 0..1",
    "publish_cloud": "publish ~/vertices (PointCloud2 of all bodies' vertices)",
    "publish_vertices": "fill SMPLBody.vertices in ~/bodies",
    "status_rate": "Hz of ~/adaptation_status",
    "diagnostics_rate": "Hz of /diagnostics",
    "model_name": "SMPLBodyArray.model_name; empty = the weights file name",
    "publish_hri": "REP-155 (ROS4HRI) output: /humans/bodies/tracked and per body roi, "
                   "cropped, skeleton2d, posture (off, with a warning, without hri_msgs)",
    "hri_input": "people from a ROS4HRI 2D body detector: /humans/bodies/tracked and "
                 "/humans/bodies/<id>/skeleton2d instead of keypoints_topic (ids kept)",
    "executor": "rclpy executor of the subscriptions, services and timers: single "
                "(SingleThreadedExecutor, least overhead) | multi (MultiThreadedExecutor, 2 "
                "threads)",
}

#: Parameters that can be changed while the node runs (`ros2 param set`); all others are read
#: at start and a change is refused with the reason.
DYNAMIC = frozenset({"adapt.enabled", "publish_tf", "publish_joint_tf", "publish_markers",
                     "marker_rate", "marker_alpha", "publish_cloud", "publish_vertices"})

#: Parameters every rclpy node may carry that are not ours.
ROS_BUILTIN = frozenset({"use_sim_time", "start_type_description_service"})
ROS_BUILTIN_PREFIXES = ("qos_overrides.",)


def is_ros_builtin(name: str) -> bool:
    return name in ROS_BUILTIN or name.startswith(ROS_BUILTIN_PREFIXES)


def core_defaults() -> dict[str, Any]:
    return to_flat_dict(PipelineConfig())


def node_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(NodeConfig)}


def parameter_defaults() -> dict[str, Any]:
    """Every parameter of the node (core then node-only) with its default."""
    return {**core_defaults(), **node_defaults()}


def parameter_descriptions() -> dict[str, str]:
    """A one-line description of every parameter (used for ROS parameter descriptors): the
    core fields' help texts (their metadata in hmr_ros/config/), then the node's own."""
    return {**help_texts(PipelineConfig), **NODE_DESCRIPTIONS}


def unknown_names(names: Any) -> list[str]:
    known = parameter_defaults()
    return sorted(n for n in names if n not in known and not is_ros_builtin(n))


def _unknown_error(unknown: list[str]) -> ConfigError:
    for name in unknown:  # a parameter of an earlier release: its new name
        err = renamed_error(name)
        if err is not None:
            return ConfigError(str(err).replace("config key", "parameter", 1))
    known = sorted(parameter_defaults())
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        hints.append(f"{name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)"
                                    if close else ""))
    return ConfigError(f"unknown parameter(s) {', '.join(hints)}; hmr_ros parameters are the "
                       "core config's inference.* / adapt.* fields and the node's own (see "
                       "docs/ros.md)")


def core_config(values: Mapping[str, Any], base: PipelineConfig | None = None
                ) -> PipelineConfig:
    """{'section.field': value} -> PipelineConfig, every value coerced by the core's
    `replace_path` (`coerce_value`) and the whole config validated ONCE at the end (so related
    values such as adapt.tau and adapt.buffer_frames can be given in any order)."""
    base = base if base is not None else PipelineConfig()
    sections = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if head not in sections or not rest:
            raise _unknown_error([key])
        sections[head] = replace_path(sections[head], rest, value, prefix=f"{head}.")
    return dataclasses.replace(base, **sections)


def load_parameters(values: Mapping[str, Any], base: PipelineConfig | None = None
                    ) -> tuple[PipelineConfig, NodeConfig]:
    """THE mapping from ROS parameter values to the typed configs.

    `values`: {name: value}, flat dotted names or nested dicts; ROS' built-in node parameters
    are ignored. Every value, core or node-only, goes through `hmr_ros.config.coerce_value`
    (the coercion of YAML config files and `--set` too). Raises ConfigError naming the
    parameter for unknown names, wrong types and invalid values.
    """
    flat = flatten(values)
    unknown = unknown_names(flat)
    if unknown:
        raise _unknown_error(unknown)
    core_keys = core_defaults()
    node_def = node_defaults()
    core = {k: v for k, v in flat.items() if k in core_keys}
    node = {k: coerce_value(k, node_def[k], v) for k, v in flat.items() if k in node_def}
    pipeline = core_config(core, base)
    try:
        node_cfg = NodeConfig(**node)
    except TypeError as err:  # pragma: no cover - names were checked above
        raise ConfigError(str(err)) from None
    return pipeline, node_cfg


def check_update(name: str, value: Any, pipeline: PipelineConfig, node: NodeConfig
                 ) -> tuple[PipelineConfig, NodeConfig]:
    """Validate a run-time change of one parameter: the new configs, or ConfigError saying
    why not (unknown, read only at start, wrong type or value)."""
    if is_ros_builtin(name):
        return pipeline, node
    if name not in parameter_defaults():
        raise _unknown_error([name])
    if name not in DYNAMIC:
        raise ConfigError(f"{name} is read at start only; restart the node to change it "
                          f"(run-time parameters: {', '.join(sorted(DYNAMIC))})")
    if name in node_defaults():
        return pipeline, dataclasses.replace(
            node, **{name: coerce_value(name, node_defaults()[name], value)})
    return core_config({name: value}, pipeline), node


def read_params_file(path: str | Path, node_name: str = "hmr_ros") -> dict[str, Any]:
    """The flat parameters a ROS params YAML gives to node `node_name`: the `ros__parameters`
    of the `/**` entry and of entries naming the node (`hmr_ros`, `/hmr_ros`, `/ns/hmr_ros`),
    in file order. ConfigError if the file has no `ros__parameters` section."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of node names to ros__parameters")
    out: dict[str, Any] = {}
    found = False
    for key, section in data.items():
        key = str(key)
        if not (key == "/**" or key.rstrip("/").split("/")[-1] == node_name):
            continue
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ConfigError(f"{path}: entry {key!r} has no ros__parameters")
        found = True
        out.update(flatten(section["ros__parameters"] or {}))
    if not found:
        raise ConfigError(f"{path}: no '/**' or {node_name!r} entry with ros__parameters")
    return out


def markdown_table() -> str:
    """The parameter table of docs/ros.md (name, default, run-time changeable, meaning)."""
    desc = parameter_descriptions()
    rows = ["| parameter | default | run time | meaning |", "|---|---|---|---|"]
    for name, default in parameter_defaults().items():
        shown = f"`{default!r}`" if isinstance(default, str) else \
            f"`{str(default).lower() if isinstance(default, bool) else default}`"
        text = desc.get(name, "").replace("|", "\\|")
        rows.append(f"| `{name}` | {shown} | {'yes' if name in DYNAMIC else ''} | {text} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m hmr_ros.ros.params: print the docs table
    print(markdown_table())
