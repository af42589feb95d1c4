"""The one typed configuration of the pipeline.

Commands build it from their flags, the ROS node from its parameters (in one mapping function,
`hmr_ros/ros/params.py`), tests directly. Nested sections are frozen dataclasses; `to_dict`,
`from_dict` and `replace_path` give a flat, checkable view (`section.field` names) that both the
YAML files and the ROS parameters use, and `coerce_value` is the one coercion of their values.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import HmrRosError


class ConfigError(HmrRosError, ValueError):
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
FLOW_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV DIS (data/optical_flow.py)
# Which weights adaptation changes (adapt/scope.py): all of them (BOA), the last backbone
# stage and the head, the head only, or the normalisation layers' affine weights.
SCOPES = ("all", "layer4_head", "head", "norm")


@dataclass(frozen=True)
class AdaptConfig:
    """Online adaptation (BOA and its baselines). Loss weights, Adam betas, tau and the
    teacher follow BOA (CVPR 2021); the two learning rates are tuned for our regressor."""

    enabled: bool = True
    method: str = "boa_2nd"  # none | framewise (B1) | joint (B3) | two_stage | boa_1st | boa_2nd
    schedule: str = "latest"  # every_frame | every_n | latest (newest frame, as fast as possible)
    every_n: int = 2  # with schedule every_n: adapt on every n-th frame
    # The weights that adapt: all (BOA) | layer4_head | head | norm. layer4_head with outer_lr 1e-4
    # by the rule of docs/adaptation_tuning.md (issue 14): the best PA-MPJPE on both domains'
    # report seeds and 2.7x the lock-step steps/s of all@3e-5 (use all with 3e-5 for BOA's
    # own setting).
    scope: str = "layer4_head"
    steps_per_frame: int = 1  # adaptation steps on one frame before taking the next
    batch_frames: int = 1  # frames per step: the newest plus recent ones of the same people
    # Rates tuned on pw3d_like streams (seeds 100, 101; README "Adaptation"): BOA's own
    # 8e-6 / 3e-6 leave our small regressor under-adapted, larger probes are unstable.
    inner_lr: float = 1e-3  # lower-level step (BOA's weight probe); BOA: 8e-6
    inner_mode: str = "sgd"  # sgd (BOA) | adam: probe preconditioned like the outer Adam
    outer_lr: float = 1e-4  # Adam on the upper level (and every baseline); BOA: 3e-6; all: 3e-5
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    w_keypoints: float = 10.0  # L_F: confidence-weighted 2D reprojection
    w_pose_prior: float = 1e-4  # L_F: GMM pose prior
    w_shape_prior: float = 2e-6  # L_F: squared betas
    w_replay: float = 0.1  # L_F: labelled source replay (only with replay > 0)
    w_teacher: float = 0.1  # L_T: mean-teacher consistency
    w_motion: float = 0.1  # L_T: 2D motion over tau frames
    tau: int = 5  # frames between the two ends of the motion term
    # Motion cues (issue 15, docs/adaptation_tuning.md "Motion cues"): L_T += w_flow * the
    # image flow between consecutive crops (OpenCV DIS, computed by the worker thread) against
    # the projected mesh's displacement over vertices visible in both frames. 0 = off. The
    # keypoint motion term (w_motion) stays as it is; set it to 0 to replace it by the flow.
    w_flow: float = 0.0
    w_anchor: float = 0.0  # L_T: pose and shape near the frozen source model's estimate
    flow_preset: str = "fast"  # OpenCV DIS preset: ultrafast | fast | medium
    teacher_decay: float = 0.1  # teacher = decay * teacher + (1 - decay) * student
    replay: int = 0  # source crops rendered at start for L_S (0 = no replay)
    keypoint_threshold: float = 0.2  # keypoints below this confidence do not enter the losses
    min_keypoints: int = 6  # people with fewer usable keypoints are not adapted on
    buffer_frames: int = 16  # recent frames kept per person (>= tau + 1)
    guard_loss_factor: float = 20.0  # roll back when a loss exceeds this times the median
    guard_disagreement: float = 0.25  # m, roll back when student and teacher drift apart
    save_path: str = ""  # where `save` writes adapted weights (empty: runs/adapted.pt)
    # Added to the OS niceness of the adaptation thread (Linux; 0-19): higher lets the
    # inference and ROS threads preempt it when the CPUs are busy, so adaptation takes the
    # time they leave.
    thread_nice: int = 10
    # After this many rollbacks in a row the worker resets to the source weights (and says so
    # in its status) instead of rolling back to the same snapshot for ever.
    max_consecutive_rollbacks: int = 10
    # Where the adapter's copies (student, teacher, source) and its steps live: "" = the
    # inference device (inference.device), or cpu | cuda | cuda:N. Published weights are
    # moved to the backend's device by the backend.
    device: str = ""
    # DAPA (adapt/dapa.py, issue 16): labelled synthetic crops in the target's own looks as an
    # extra supervised term L_syn (BOA's L_S, both levels; the baselines' single objective).
    # 0 = off. Rendered on the adaptation thread every dapa_every steps, dapa_batch at a time.
    dapa_weight: float = 0.0
    dapa_noise: float = 0.5  # s in z * (1 + s * eps), eps ~ U[0, 1] (the paper's code: 0.5)
    dapa_batch: int = 2  # synthetic crops per step
    dapa_every: int = 1  # render a new synthetic batch every this many steps (reused between)
    dapa_pose: str = "target"  # target (perturbed estimates) | random (pose VAE prior samples)
    dapa_texture: str = "target"  # target (part colours from the crops) | plain (grey body)
    dapa_history: int = 8  # recent crops per person for colours and the background median
    dapa_vae: str = ""  # pose VAE .npz; empty = the shipped weights/pose_vae.npz
    # DualNet (adapt/dualnet.py, issue 17): L_F += dualnet_weight * the pseudo-SMPL term
    # against an auxiliary regressor's prediction for the same crops (meta-training's test-time
    # loss). 0 = off. Meant with the DualNet start (inference.weights =
    # weights/hmr_small_dualnet.pt), whose auxiliary network is beside it.
    dualnet_weight: float = 0.0
    dualnet_aux: str = ""  # auxiliary checkpoint; empty = weights/hmr_small_dualnet.pt.aux.pt
    # Per-frame test-time optimisation (EFT's and DualNet's protocol, `hmr-ros bench tto`):
    # back to the start weights with a fresh optimiser before each frame's steps_per_frame
    # steps, so no frame's adaptation carries over to the next. For evaluation: in the node
    # it would throw away what adaptation learnt at every frame.
    reset_each_frame: bool = False


DAPA_POSES = ("target", "random")
DAPA_TEXTURES = ("target", "plain")
DETECTORS = ("auto", "none", "mediapipe", "mediapipe_hog")


@dataclass(frozen=True)
class DetectorConfig:
    """2D keypoints and person tracking for inputs that bring no keypoints (video files,
    folders of images, webcams, bags without a keypoint topic); see `hmr_ros/detect/`."""

    # auto: mediapipe_hog where OpenCV has its HOG people detector, else mediapipe, and only
    # for inputs without keypoints; none: no detector; mediapipe: BlazePose on the whole image
    # (one person); mediapipe_hog: HOG person boxes plus the tracks' predicted boxes, BlazePose
    # in each box (several people).
    kind: str = "auto"
    model_complexity: int = 1  # BlazePose landmark model: 0 lite, 1 full, 2 heavy (bundled: 1)
    min_detection_confidence: float = 0.5  # BlazePose's person detector in each image or box
    min_visible: int = 8  # landmarks with visibility > 0.5 needed to keep a detected pose
    crop_size: int = 256  # px, person boxes are resampled to this square before BlazePose
    box_scale: float = 1.25  # enlargement of a person box to the square BlazePose sees
    hog_every: int = 5  # run the HOG people detector on every n-th frame (tracks fill gaps)
    hog_upscale: float = 1.5  # HOG's window is 64x128 px: upscale to find smaller people
    hog_threshold: float = 1.0  # minimum HOG SVM score of a person box
    max_people: int = 8  # detections per image, the largest first
    # Two poses are one person when their keypoint boxes overlap more than this (or their
    # landmarks agree): the duplicate from a second box around the same person is dropped.
    nms_iou: float = 0.5
    # Tracker: greedy matching of detections to tracks by predicted box and keypoints.
    match_threshold: float = 0.2  # lowest match score (IoU / keypoint similarity) accepted
    # Detections a new track needs before it gets an id and is output: one-frame false
    # detections never get an id (a person's first frame is not estimated).
    min_hits: int = 2
    timeout_s: float = 1.0  # a track unseen this long is lost (its id is never reused)
    retrack: bool = False  # replace ids that came with the input (e.g. an upstream topic)
    # Intrinsics of inputs without CameraInfo (video files, folders, webcams): the focal in
    # px, or 0 for that of a camera with default_hfov_deg horizontal field of view.
    focal: float = 0.0
    default_hfov_deg: float = 60.0  # assumed field of view when focal is 0 (a typical webcam)


TEMPORAL_MODES = ("causal", "lookahead")
TEMPORAL_BRANCHES = ("both", "global", "local")


@dataclass(frozen=True)
class TemporalConfig:
    """Temporal-aware refinement of the per-frame bodies (`hmr_ros/temporal/`, issue 18).
    Needs the torch backend (its features); with another backend it is disabled with a
    warning."""

    enabled: bool = False  # refine the bodies with temporal context (TAR; torch backend only)
    mode: str = "causal"  # causal (frames <= t, no added delay) | lookahead (frames <= t + d)
    lookahead: int = 2  # d, frames, in lookahead mode: bodies are published d frames late
    window: int = 9  # frames the global temporal encoder reads (the target and those before)
    local_window: int = 5  # frames the local ConvGRU reads before and at the target
    branches: str = "both"  # both | global | local (the other branch's input zeroed: ablation)
    weights: str = ""  # refiner checkpoint; empty = the bundled weights/tar_small_h36m.pt


@dataclass(frozen=True)
class PipelineConfig:
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)

    def __post_init__(self) -> None:
        for key, value in to_flat_dict(self).items():
            # NaN passes every comparison below and inf makes every step roll back silently.
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value}")
        a = self.adapt
        if not (a.inner_lr > 0 and a.outer_lr > 0):
            raise ConfigError(f"adapt.inner_lr and adapt.outer_lr must be > 0, got "
                              f"{a.inner_lr} and {a.outer_lr}")
        if not (0.0 <= a.adam_beta1 < 1.0 and 0.0 <= a.adam_beta2 < 1.0):
            raise ConfigError("adapt.adam_beta1 and adam_beta2 must be in [0, 1)")
        weights = {k: v for k, v in dataclasses.asdict(a).items() if k.startswith("w_")}
        if any(v < 0 for v in weights.values()):
            raise ConfigError(f"adapt loss weights must be >= 0, got {weights}")
        if a.guard_loss_factor <= 1.0 or a.guard_disagreement <= 0:
            raise ConfigError("adapt.guard_loss_factor must be > 1, guard_disagreement > 0")
        if a.max_consecutive_rollbacks < 1:
            raise ConfigError("adapt.max_consecutive_rollbacks must be >= 1")
        if a.method not in METHODS:
            raise ConfigError(f"adapt.method must be one of {METHODS}, got {a.method!r}")
        if a.flow_preset not in FLOW_PRESETS:
            raise ConfigError(f"adapt.flow_preset must be one of {FLOW_PRESETS}, got "
                              f"{a.flow_preset!r}")
        if a.inner_mode not in ("sgd", "adam"):
            raise ConfigError(f"adapt.inner_mode must be sgd or adam, got {a.inner_mode!r}")
        if a.schedule not in SCHEDULES:
            raise ConfigError(f"adapt.schedule must be one of {SCHEDULES}, got {a.schedule!r}")
        if a.scope not in SCOPES:
            raise ConfigError(f"adapt.scope must be one of {SCOPES}, got {a.scope!r}")
        if not 0 <= a.thread_nice <= 19:
            raise ConfigError(f"adapt.thread_nice must be in 0..19, got {a.thread_nice}")
        if a.tau < 1 or a.buffer_frames < a.tau + 1:
            raise ConfigError("adapt.tau must be >= 1 and adapt.buffer_frames >= tau + 1")
        if min(a.every_n, a.steps_per_frame, a.batch_frames) < 1:
            raise ConfigError("adapt.every_n, steps_per_frame and batch_frames must be >= 1")
        if not 0.0 <= a.teacher_decay < 1.0:
            raise ConfigError("adapt.teacher_decay must be in [0, 1)")
        if not re.fullmatch(r"(cpu|cuda(:\d+)?)?", a.device):
            raise ConfigError(f"adapt.device must be empty (the inference device), cpu, cuda or "
                              f"cuda:N, got {a.device!r}")
        if a.dapa_pose not in DAPA_POSES or a.dapa_texture not in DAPA_TEXTURES:
            raise ConfigError(f"adapt.dapa_pose must be one of {DAPA_POSES} and dapa_texture one "
                              f"of {DAPA_TEXTURES}, got {a.dapa_pose!r}, {a.dapa_texture!r}")
        if a.dapa_weight < 0 or a.dualnet_weight < 0:
            raise ConfigError(f"adapt.dapa_weight and dualnet_weight must be >= 0, got "
                              f"{a.dapa_weight}, {a.dualnet_weight}")
        if min(a.dapa_batch, a.dapa_every, a.dapa_history) < 1 or a.dapa_noise < 0:
            raise ConfigError("adapt.dapa_batch, dapa_every and dapa_history must be >= 1, "
                              "dapa_noise >= 0")
        i = self.inference
        if i.backend not in BACKENDS:
            raise ConfigError(f"inference.backend must be one of {BACKENDS}, got {i.backend!r}")
        if i.fallback_focal <= 0 or i.box_scale <= 0 or i.max_people < 1 or i.threads < 1:
            raise ConfigError("inference: fallback_focal, box_scale, max_people and threads "
                              "must be positive")
        d = self.detector
        if d.kind not in DETECTORS:
            raise ConfigError(f"detector.kind must be one of {DETECTORS}, got {d.kind!r}")
        if d.model_complexity not in (0, 1, 2):
            raise ConfigError("detector.model_complexity must be 0, 1 or 2")
        if not (0.0 <= d.min_detection_confidence <= 1.0 and 0.0 <= d.match_threshold <= 1.0
                and 0.0 < d.nms_iou <= 1.0):
            raise ConfigError("detector: min_detection_confidence and match_threshold must be "
                              "in [0, 1], nms_iou in (0, 1]")
        if min(d.hog_every, d.min_hits, d.max_people, d.crop_size) < 1 or d.min_visible < 0:
            raise ConfigError("detector: hog_every, min_hits, max_people and crop_size must be "
                              ">= 1, min_visible >= 0")
        if d.box_scale <= 0 or d.hog_upscale <= 0 or d.timeout_s <= 0 or d.focal < 0:
            raise ConfigError("detector: box_scale, hog_upscale and timeout_s must be positive, "
                              "focal >= 0 (0 = from default_hfov_deg)")
        if not 1.0 <= d.default_hfov_deg <= 179.0:
            raise ConfigError("detector.default_hfov_deg must be in [1, 179] degrees")
        t = self.temporal
        if t.mode not in TEMPORAL_MODES:
            raise ConfigError(f"temporal.mode must be one of {TEMPORAL_MODES}, got {t.mode!r}")
        if t.branches not in TEMPORAL_BRANCHES:
            raise ConfigError(f"temporal.branches must be one of {TEMPORAL_BRANCHES}, got "
                              f"{t.branches!r}")
        if not (t.lookahead >= 1 and 1 <= t.local_window <= t.window):
            raise ConfigError("temporal: lookahead must be >= 1 and 1 <= local_window <= "
                              "window (the refiner's own limits are checked when it loads: "
                              "the bundled one knows lookahead <= 4, window <= 9)")


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


def replace_path(cfg: Any, path: str, value: Any, prefix: str = "") -> Any:
    """A copy of `cfg` with the leaf at `section.field` replaced, its value passed through
    `coerce_value`. `prefix` is where `cfg` sits in a larger config (`"adapt."` for an
    AdaptConfig), so that errors name the full key."""
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


def coerce_value(name: str, default: Any, value: Any) -> Any:
    """`value` as the type of `default`, or ConfigError naming `name`: THE coercion of every
    configuration value, whether it came from a YAML config file, `--set key=value` (both read
    as YAML by PyYAML, so YAML 1.1 rules apply before this), a ROS params file or a ROS
    parameter (typed by ROS). The type of the field's default decides:

    - bool field: only true/false (`bool`). Refused: 1/0, "true"/"yes" as quoted strings,
      None -> "NAME: expected true/false, got VALUE". (YAML itself reads unquoted yes/no/on/off
      as booleans.)
    - int field: an integer (`int` or any `numbers.Integral`, not bool). Refused: 4.0, "4",
      True, None -> "NAME: expected an integer, got VALUE".
    - float field: an integer or a real number, or a string that Python's `float()` reads
      (YAML 1.1 reads `1e-5`, without a dot, as the string "1e-5"), surrounding blanks
      allowed. Refused: bools, None, "", other strings -> "NAME: expected a number, got
      VALUE"; NaN and +-inf however written (.nan, "nan", float("inf"), "-inf") -> "NAME must
      be a finite number, got VALUE" (NaN passes every range check and inf made every
      adaptation step roll back silently).
    - str field: a string, "" included. Refused: None (an empty YAML value: write "" for an
      empty string) and non-strings -> "NAME: expected a string, got VALUE".
    - tuple field: a list or tuple, kept as a tuple (elements unchecked). Refused:
      anything else -> "NAME: expected a list, got VALUE".
    """
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        return _coerce_float(name, value)
    if isinstance(default, str):
        if not isinstance(value, str):
            hint = ' (write "" for an empty string)' if value is None else ""
            raise ConfigError(f"{name}: expected a string, got {value!r}{hint}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{name}: unsupported type {type(default).__name__}")


def _coerce_float(name: str, value: Any) -> float:
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range: as infinite as "1e400"
            number = math.inf
    if number is None:
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return number


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
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[str(key)] = value
    return from_flat_dict(flat, base)


def parse_value(text: str) -> Any:
    """A `--set key=value` value read as YAML (numbers, booleans, strings, lists); ConfigError
    instead of a parser traceback."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot read value {text!r}: {getattr(err, 'problem', err)}") from None
