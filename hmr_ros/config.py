"""The one typed configuration of the pipeline.

Commands build it from their flags, the ROS node from its parameters (in one mapping function,
`hmr_ros/ros/params.py`), tests directly. Nested sections are frozen dataclasses; `to_dict`,
`from_dict` and `replace_path` give a flat, checkable view (`section.field` names) that both the
YAML files and the ROS parameters use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Unknown key or bad value in a configuration."""


@dataclass(frozen=True)
class InferenceConfig:
    weights: str = ""  # checkpoint path; empty = the bundled default regressor
    body_model: str = ""  # SMPL .pkl/.npz or folder; empty = the bundled synthetic model
    gender: str = "neutral"
    keypoint_threshold: float = 0.1  # keypoints at or below this confidence are ignored
    min_keypoints: int = 4  # fewer usable keypoints: fall back to the box, else skip the person
    box_scale: float = 1.3  # enlargement of the keypoint box to the square crop
    fallback_focal: float = 525.0  # px, used (with a warning) when no CameraInfo is known
    max_people: int = 8  # the largest people first; others are skipped
    vertices: bool = True  # compute mesh vertices (needed for markers and PVE)
    threads: int = 1  # torch threads of the inference path


@dataclass(frozen=True)
class PipelineConfig:
    inference: InferenceConfig = field(default_factory=InferenceConfig)


def _section_fields(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_section_fields(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def to_flat_dict(cfg: Any) -> dict[str, Any]:
    """{'section.field': value} for every leaf of a config dataclass."""
    return _section_fields(cfg)


def replace_path(cfg: Any, path: str, value: Any) -> Any:
    """A copy of `cfg` with the leaf at `section.field` replaced, type-checked."""
    head, _, rest = path.partition(".")
    names = {f.name: f for f in dataclasses.fields(cfg)}
    if head not in names:
        raise ConfigError(f"unknown config key {path!r}; known: {sorted(to_flat_dict(cfg))}")
    current = getattr(cfg, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{head!r} is a value, not a section (in {path!r})")
        return dataclasses.replace(cfg, **{head: replace_path(current, rest, value)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"{path!r} is a section; set one of its fields")
    return dataclasses.replace(cfg, **{head: _coerce(path, current, value)})


def _coerce(path: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{path}: unsupported type {type(current).__name__}")


def from_flat_dict(values: dict[str, Any], base: Any | None = None) -> Any:
    """Apply {'section.field': value} onto `base` (default PipelineConfig())."""
    cfg = base if base is not None else PipelineConfig()
    for key, value in values.items():
        cfg = replace_path(cfg, key, value)
    return cfg
