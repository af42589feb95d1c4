"""Camera domains of the synthetic world, read from `config/domains/*.yaml`.

A domain fixes what differs between datasets in BOA's Table 1 (focal length, camera distance
and height, body shapes) plus what differs in appearance (backgrounds, occluders, lighting,
sensor noise) and the 2D detector's noise. Ranges `[lo, hi]` are sampled uniformly, once per
sequence unless a field says otherwise. Every field is documented in the YAML files too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import HmrRosError
from ..resources import resource_dir

Range = tuple[float, float]


class DomainError(HmrRosError, ValueError):
    """A domain file with an unknown key or a bad value."""


@dataclass(frozen=True)
class ImageSpec:
    width: int = 640  # native image size of the domain's camera, pixels
    height: int = 480
    render_scale: float = 1.0  # streams are rendered at this fraction of the native size


@dataclass(frozen=True)
class CameraSpec:
    focal: float = 525.0  # px at the native size (fx = fy)
    focal_jitter: float = 0.0  # relative std of the focal between sequences
    principal_jitter: float = 0.0  # std of the principal point, fraction of the image size
    distance: Range = (3.0, 3.0)  # m, camera to the person's start position (horizontal)
    height: Range = (1.5, 1.5)  # m, camera above the floor
    look_at_height: Range = (1.0, 1.0)  # m, height of the point the camera aims at
    azimuth: Range = (-180.0, 180.0)  # deg, camera position around the person
    follow: float = 1.0  # 0..1 how much the camera keeps the person centred (pan/tilt)
    shake_deg: float = 0.0  # std of handheld rotation jitter, degrees
    shake_hz: float = 0.0  # typical frequency of that jitter
    roll_deg: float = 0.0  # std of a constant per-sequence roll


@dataclass(frozen=True)
class SceneSpec:
    background: str = "plain_indoor"  # plain_indoor | cluttered_indoor | outdoor | mixed
    occluders_per_10s: float = 0.0  # expected number of occluders crossing per 10 s
    occluder_width: Range = (0.3, 0.6)  # m
    occluder_height: Range = (0.8, 2.0)  # m
    occluder_speed: Range = (0.5, 1.2)  # m/s across the view
    ambient: Range = (0.35, 0.45)  # light levels (linear, albedo multipliers)
    intensity: Range = (0.6, 0.75)
    light_jitter_deg: float = 20.0  # random change of the key light direction


@dataclass(frozen=True)
class PeopleSpec:
    betas_std: float = 0.5  # std of every SMPL shape coefficient
    betas_mean: tuple[float, ...] = ()  # optional mean (10 values); empty = zeros
    clothing: str = "plain"  # plain | varied (patterns, colours, sleeve/leg lengths)
    actions: tuple[str, ...] = ("walk", "turn", "reach", "wave", "squat", "sit", "idle")


@dataclass(frozen=True)
class SensorSpec:
    noise_std: float = 1.0  # Gaussian pixel noise, in 0..255 units
    blur_sigma: Range = (0.0, 0.0)  # Gaussian blur sigma, pixels at the rendered size
    gain_std: float = 0.0  # per-channel colour gain std (white balance)
    gamma: Range = (1.0, 1.0)


@dataclass(frozen=True)
class DetectorSpec:
    format: str = "body25"  # joint layout of the simulated 2D detector (hmr_ros.body.joints)
    jitter: float = 0.01  # pixel noise std as a fraction of the person's box height
    drop_prob: float = 0.02  # chance a visible joint is missing (confidence 0)
    low_conf_prob: float = 0.05  # chance a visible joint is reported with low confidence
    occluded: str = "low_conf"  # what happens to hidden joints: low_conf | drop
    occluded_jitter: float = 0.05  # extra noise on hidden joints, fraction of box height


@dataclass(frozen=True)
class DomainConfig:
    name: str
    description: str = ""
    fps: float = 25.0
    image: ImageSpec = field(default_factory=ImageSpec)
    camera: CameraSpec = field(default_factory=CameraSpec)
    scene: SceneSpec = field(default_factory=SceneSpec)
    people: PeopleSpec = field(default_factory=PeopleSpec)
    sensor: SensorSpec = field(default_factory=SensorSpec)
    detector: DetectorSpec = field(default_factory=DetectorSpec)

    @property
    def render_size(self) -> tuple[int, int]:
        """(width, height) of rendered stream frames."""
        s = self.image.render_scale
        return max(16, round(self.image.width * s)), max(16, round(self.image.height * s))


BACKGROUNDS = ("plain_indoor", "cluttered_indoor", "outdoor", "mixed")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise DomainError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise DomainError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        sub = f"{where}.{name}"
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ""  # required fields are strings (the name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, sub)
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise DomainError(f"{sub}: expected a list, got {value!r}")
            kwargs[name] = tuple(value)
            if default and isinstance(default[0], float) and len(default) == 2:
                if len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
                    raise DomainError(f"{sub}: expected [lo, hi] numbers, got {value!r}")
                if value[0] > value[1]:
                    raise DomainError(f"{sub}: lo > hi in {value!r}")
                kwargs[name] = (float(value[0]), float(value[1]))
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DomainError(f"{sub}: expected a number, got {value!r}")
            kwargs[name] = float(value)
        elif isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int) or isinstance(value, bool):
                raise DomainError(f"{sub}: expected an integer, got {value!r}")
            kwargs[name] = value
        else:
            if not isinstance(value, str):
                raise DomainError(f"{sub}: expected a string, got {value!r}")
            kwargs[name] = value
    return cls(**kwargs)


def parse_domain(data: dict[str, Any], where: str = "domain") -> DomainConfig:
    """Validate a parsed YAML mapping and build the config."""
    if "name" not in data:
        raise DomainError(f"{where}: missing 'name'")
    cfg = _build(DomainConfig, data, where)
    if cfg.scene.background not in BACKGROUNDS:
        raise DomainError(f"{where}.scene.background: {cfg.scene.background!r} not in "
                          f"{BACKGROUNDS}")
    if cfg.detector.occluded not in ("low_conf", "drop"):
        raise DomainError(f"{where}.detector.occluded must be low_conf or drop")
    if cfg.people.betas_mean and len(cfg.people.betas_mean) != 10:
        raise DomainError(f"{where}.people.betas_mean must have 10 values")
    from ..body.joints import JOINT_SETS

    if cfg.detector.format not in JOINT_SETS:
        raise DomainError(f"{where}.detector.format: unknown joint set {cfg.detector.format!r}")
    if cfg.camera.focal <= 0 or cfg.image.render_scale <= 0 or cfg.fps <= 0:
        raise DomainError(f"{where}: focal, render_scale and fps must be positive")
    return cfg


def domain_dir() -> Path:
    return resource_dir("config") / "domains"


def available_domains() -> list[str]:
    return sorted(p.stem for p in domain_dir().glob("*.yaml"))


def load_domain(name_or_path: str | Path) -> DomainConfig:
    """A domain by name (`pw3d_like`) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = domain_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise DomainError(f"unknown domain {name_or_path!r}; available: "
                              f"{', '.join(available_domains())}")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as err:  # one line, not the parser's traceback
        raise DomainError(f"{path}: not valid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise DomainError(f"{path}: expected a mapping at the top level, found a "
                          f"{type(data).__name__}")
    return parse_domain(data, str(path))
