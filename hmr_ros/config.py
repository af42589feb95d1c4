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
    # torch's intra-op pool is process-wide: inference and adaptation each run their ops on
    # their own Python thread, with this many pool threads per op. 1 suits 2 cores (one
    # core per path); use about cores / 2 on larger machines.
    threads: int = 1
    backend: str = "torch"  # torch | onnxruntime | tensorrt
    device: str = "cpu"  # cpu | cuda (torch, onnxruntime's CUDA provider; tensorrt is cuda)
    half: bool = False  # fp16 on CUDA (torch .half(), TensorRT fp16 engine)
    engine_cache: str = ""  # folder for exported ONNX / TensorRT engines ("" = ~/.cache/hmr_ros)


BACKENDS = ("torch", "onnxruntime", "tensorrt")
METHODS = ("none", "framewise", "joint", "two_stage", "boa_1st", "boa_2nd")
SCHEDULES = ("every_frame", "every_n", "latest")


@dataclass(frozen=True)
class AdaptConfig:
    """Online adaptation (BOA and its baselines). Defaults follow BOA (CVPR 2021) where it
    fixes a value; rates are tuned for our regressor (see README, "Adaptation")."""

    enabled: bool = True
    method: str = "boa_2nd"  # none | framewise (B1) | joint (B3) | two_stage | boa_1st | boa_2nd
    schedule: str = "latest"  # every_frame | every_n | latest (newest frame, as fast as possible)
    every_n: int = 2  # with schedule every_n: adapt on every n-th frame
    steps_per_frame: int = 1  # adaptation steps on one frame before taking the next
    batch_frames: int = 1  # frames per step: the newest plus recent ones of the same people
    inner_lr: float = 8e-6  # lower-level SGD step (BOA's weight probe)
    outer_lr: float = 3e-6  # Adam on the upper level (and on every baseline)
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    w_keypoints: float = 10.0  # L_F: confidence-weighted 2D reprojection
    w_pose_prior: float = 1e-4  # L_F: GMM pose prior
    w_shape_prior: float = 2e-6  # L_F: squared betas
    w_replay: float = 0.1  # L_F: labelled source replay (only with replay > 0)
    w_teacher: float = 0.1  # L_T: mean-teacher consistency
    w_motion: float = 0.1  # L_T: 2D motion over tau frames
    tau: int = 5  # frames between the two ends of the motion term
    teacher_decay: float = 0.1  # teacher = decay * teacher + (1 - decay) * student
    replay: int = 0  # source crops rendered at start for L_S (0 = no replay)
    keypoint_threshold: float = 0.2  # keypoints below this confidence do not enter the losses
    min_keypoints: int = 6  # people with fewer usable keypoints are not adapted on
    buffer_frames: int = 16  # recent frames kept per person (>= tau + 1)
    guard_loss_factor: float = 20.0  # roll back when a loss exceeds this times the median
    guard_disagreement: float = 0.25  # m, roll back when student and teacher drift apart
    save_path: str = ""  # where `save` writes adapted weights (empty: runs/adapted.pt)


@dataclass(frozen=True)
class PipelineConfig:
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)

    def __post_init__(self) -> None:
        a = self.adapt
        if a.method not in METHODS:
            raise ConfigError(f"adapt.method must be one of {METHODS}, got {a.method!r}")
        if a.schedule not in SCHEDULES:
            raise ConfigError(f"adapt.schedule must be one of {SCHEDULES}, got {a.schedule!r}")
        if a.tau < 1 or a.buffer_frames < a.tau + 1:
            raise ConfigError("adapt.tau must be >= 1 and adapt.buffer_frames >= tau + 1")
        if min(a.every_n, a.steps_per_frame, a.batch_frames) < 1:
            raise ConfigError("adapt.every_n, steps_per_frame and batch_frames must be >= 1")
        if not 0.0 <= a.teacher_decay < 1.0:
            raise ConfigError("adapt.teacher_decay must be in [0, 1)")
        i = self.inference
        if i.backend not in BACKENDS:
            raise ConfigError(f"inference.backend must be one of {BACKENDS}, got {i.backend!r}")
        if i.fallback_focal <= 0 or i.box_scale <= 0 or i.max_people < 1 or i.threads < 1:
            raise ConfigError("inference: fallback_focal, box_scale, max_people and threads "
                              "must be positive")


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
