"""The one typed configuration of the pipeline.

Commands build it from their flags, the ROS node from its parameters (in one mapping function,
`hmr_ros/ros/params.py`), tests directly. Sections are frozen dataclasses (`coerce.Section`)
that carry each field's help text and choices and validate themselves; `to_flat_dict`,
`from_flat_dict` and `replace_path` give a flat, checkable view (`section.field` names, nested
sections as `adapt.guard.loss_factor`) that both the YAML files and the ROS parameters use, and
`coerce_value` is the one coercion of their values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .adapt import AdaptConfig
from .choices import (
    BACKENDS,
    DAPA_POSES,
    DAPA_TEXTURES,
    DETECTORS,
    FLOW_PRESETS,
    METHODS,
    SCHEDULES,
    SCOPES,
    TEMPORAL_BRANCHES,
    TEMPORAL_MODES,
    WORKER_KINDS,
)
from .coerce import ConfigError, Section, coerce_value, section
from .perception import DetectorConfig, InferenceConfig, TemporalConfig

__all__ = ["ConfigError", "coerce_value", "PipelineConfig", "InferenceConfig", "AdaptConfig",
           "DetectorConfig", "TemporalConfig", "RENAMED", "replace_path", "to_flat_dict",
           "from_flat_dict", "updated", "load_config_file", "parse_value", "BACKENDS",
           "DAPA_POSES",
           "DAPA_TEXTURES", "DETECTORS", "FLOW_PRESETS", "METHODS", "SCHEDULES", "SCOPES",
           "TEMPORAL_BRANCHES", "TEMPORAL_MODES", "WORKER_KINDS"]


@dataclass(frozen=True)
class PipelineConfig(Section):
    inference: InferenceConfig = section(InferenceConfig, "the inference path")
    adapt: AdaptConfig = section(AdaptConfig, "online adaptation")
    detector: DetectorConfig = section(DetectorConfig, "in-process detector and tracker")
    temporal: TemporalConfig = section(TemporalConfig, "temporal refinement")

    def __post_init__(self) -> None:
        self.check()


#: Keys of an earlier release -> their names now. An old key is refused with its new name.
RENAMED: dict[str, str] = {
    **{f"adapt.{old}": f"adapt.{new}" for old, new in {
        "w_keypoints": "loss.keypoints", "w_pose_prior": "loss.pose_prior",
        "w_shape_prior": "loss.shape_prior", "w_motion": "loss.motion",
        "w_anchor": "loss.anchor", "w_teacher": "teacher.weight",
        "teacher_decay": "teacher.decay", "adam_beta1": "adam.beta1",
        "adam_beta2": "adam.beta2", "guard_loss_factor": "guard.loss_factor",
        "guard_disagreement": "guard.disagreement",
        "max_consecutive_rollbacks": "guard.max_consecutive_rollbacks",
        "w_replay": "replay.weight", "w_flow": "flow.weight", "flow_preset": "flow.preset",
        "dapa_weight": "dapa.weight", "dapa_noise": "dapa.noise", "dapa_batch": "dapa.batch",
        "dapa_every": "dapa.every", "dapa_pose": "dapa.pose", "dapa_texture": "dapa.texture",
        "dapa_history": "dapa.history", "dapa_vae": "dapa.vae",
        "dualnet_weight": "dualnet.weight", "dualnet_aux": "dualnet.aux",
        "thread_nice": "worker.thread_nice", "device": "worker.device",
        "save_path": "worker.save_path", "replay": "replay.count"}.items()},
    **{f"detector.{old}": f"detector.{new}" for old, new in {
        "hog_every": "hog.every", "hog_upscale": "hog.upscale",
        "hog_threshold": "hog.threshold", "match_threshold": "tracker.match_threshold",
        "min_hits": "tracker.min_hits", "timeout_s": "tracker.timeout_s",
        "retrack": "tracker.retrack"}.items()},
}


def renamed_error(key: str) -> ConfigError | None:
    """The error for a key of an earlier release (None for any other key)."""
    new = RENAMED.get(key)
    return None if new is None else ConfigError(f"config key {key!r} was renamed to {new!r}")


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{'section.field': value} for every leaf of a config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def replace_path(cfg: Any, path: str, value: Any, prefix: str = "") -> Any:
    """A copy of `cfg` with the leaf at `section.field` replaced, its value passed through
    `coerce_value`. `prefix` is where `cfg` sits in a larger config (`"adapt."` for an
    AdaptConfig), so that errors name the full key. Keys of an earlier release are refused
    with their new names (`RENAMED`)."""
    err = renamed_error(prefix + path)
    if err is not None:
        raise err
    head, _, rest = path.partition(".")
    names = {f.name: f for f in dataclasses.fields(cfg)}
    if head not in names:
        raise ConfigError(f"unknown config key {prefix + path!r}; known: "
                          f"{sorted(prefix + k for k in to_flat_dict(cfg))}")
    current = getattr(cfg, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{prefix + head!r} is a value, not a section (in "
                              f"{prefix + path!r})")
        return dataclasses.replace(
            cfg, **{head: replace_path(current, rest, value, f"{prefix}{head}.")})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"{prefix + path!r} is a section; set one of its fields")
    return dataclasses.replace(cfg, **{head: coerce_value(prefix + path, current, value)})


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings (as in a YAML file) -> dotted names (as ROS gives them to the node)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def updated(cfg: Any, values: Mapping[str, Any], prefix: str = "") -> Any:
    """`cfg` (any section) with {'field' or 'section.field': value} applied through
    `replace_path`; `prefix` names where `cfg` sits (`"adapt."`) for the errors."""
    for key, value in values.items():
        cfg = replace_path(cfg, key, value, prefix)
    return cfg


def from_flat_dict(values: dict[str, Any], base: Any | None = None) -> Any:
    """Apply {'section.field': value} onto `base` (default PipelineConfig())."""
    cfg = base if base is not None else PipelineConfig()
    for key, value in values.items():
        cfg = replace_path(cfg, key, value)
    return cfg


def load_config_file(path: str, base: Any | None = None) -> Any:
    """Apply a YAML file of `section.field` keys or nested sections onto `base` (default
    PipelineConfig()). ConfigError, one line, for syntax errors, a top level that is not a
    mapping, unknown keys and bad values."""
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of section.field: value at the top "
                          f"level, found a {type(data).__name__}")
    return from_flat_dict(flatten({str(k): v for k, v in data.items()}), base)


def parse_value(text: str) -> Any:
    """A `--set key=value` value read as YAML (numbers, booleans, strings, lists); ConfigError
    instead of a parser traceback."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot read value {text!r}: {getattr(err, 'problem', err)}") from None
