"""`hmr-ros train-meta`'s settings: `MetaTrainConfig` and its overrides (keyword arguments,
`--set KEY=VALUE`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .adapt.dualnet import PseudoWeights
from .train import TrainConfig


@dataclass(frozen=True)
class MetaTrainConfig:
    """Meta-training settings. Inner weights start from the authors' public code (0.5
    vertices + 5 2D + 5 3D + 1 rotation + 0.001 shape against f_u, one first-order SGD step
    of 1e-5); the outer weights are `TrainConfig`'s. Starting points, to tune on tuning
    seeds."""

    preset: str = "hmr_small"
    init: str | None = None  # checkpoint both networks start from (None: from scratch)
    aux_init: str | None = None  # the auxiliary network's own start (None: as `init`)
    steps: int = 2000
    batch_size: int = 16
    seed: int = 0
    threads: int = 2
    # inner step (test time)
    inner_lr: float = 1e-5
    order: int = 1  # 1: first-order approximation; 2: through the inner step
    w_keypoints: float = 5.0  # 2D reprojection of the 46 points, normalised crop coords
    w_pose_prior: float = 1e-4
    w_shape_prior: float = 2e-6
    # The pseudo-SMPL terms against f_u (`adapt.dualnet.PseudoWeights`, one source).
    w_aux_vertices: float = PseudoWeights.vertices  # root-centred mesh vertices (m, squared)
    w_aux_joints: float = PseudoWeights.joints  # root-centred 46 points
    w_aux_rot: float = PseudoWeights.rot  # rotation matrices
    w_aux_betas: float = PseudoWeights.betas
    aux_detach: bool = True  # f_u's targets are constants of the inner loss
    keypoint_noise: float = 0.0  # std of noise on the 2D targets (crop units): detector-like
    # outer step
    lr: float = 1e-4  # Adam on w
    aux_lr: float = 1e-4  # Adam on u (the authors: 1e-6 from a pretrained start)
    warmup: int = 100
    clip: float = 5.0
    # The supervised loss's weights: pretraining's own (one source, `TrainConfig`).
    w_pose: float = TrainConfig.w_pose
    w_betas: float = TrainConfig.w_betas
    w_3d: float = TrainConfig.w_3d
    w_2d: float = TrainConfig.w_2d
    w_cam: float = TrainConfig.w_cam
    augment: bool = TrainConfig.augment
    eval_every: int = 250
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {self.order}")
        if not (self.inner_lr >= 0 and self.lr > 0 and self.aux_lr >= 0):
            raise ValueError("inner_lr and aux_lr must be >= 0 and lr > 0")

    def pseudo_weights(self) -> PseudoWeights:
        return PseudoWeights(self.w_aux_vertices, self.w_aux_joints, self.w_aux_rot,
                             self.w_aux_betas)

    def outer(self) -> TrainConfig:
        """The supervised loss's weights and schedule as `train.TrainConfig`."""
        return TrainConfig(preset=self.preset, steps=self.steps, batch_size=self.batch_size,
                           lr=self.lr, warmup=self.warmup, seed=self.seed, threads=self.threads,
                           w_pose=self.w_pose, w_betas=self.w_betas, w_3d=self.w_3d,
                           w_2d=self.w_2d, w_cam=self.w_cam, augment=self.augment,
                           eval_every=self.eval_every, log_every=self.log_every)


def config_with(cfg: MetaTrainConfig, **overrides: object) -> MetaTrainConfig:
    """cfg with the overrides that are not None; an unknown field name is an error."""
    known = {f.name for f in fields(cfg)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown MetaTrainConfig fields {unknown}; known: {sorted(known)}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def parse_overrides(items: list[str]) -> dict[str, object]:
    """["KEY=VALUE", ...] -> typed values by MetaTrainConfig's field types (`--set`)."""
    types = {f.name: f.type for f in fields(MetaTrainConfig)}
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set wants KEY=VALUE with KEY a MetaTrainConfig field, got "
                             f"{item!r}; known: {sorted(types)}")
        kind = str(types[key])
        if text.lower() in ("none", "null") and "None" in kind:
            out[key] = None
        elif kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{key} wants true or false, got {text!r}")
            out[key] = text.lower() in ("true", "1", "yes")
        elif kind.startswith("int"):
            out[key] = int(text)
        elif kind.startswith("float"):
            out[key] = float(text)
        else:
            out[key] = text
    return out
