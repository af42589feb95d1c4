"""HMR regressor: ResNet features + SPIN's iterative error feedback head -> SMPL parameters.

Layer names, shapes and the mean-parameter buffers follow SPIN (`models/hmr.py`), so SPIN's and
BOA's checkpoints load without renaming beyond a `module.` prefix (see `importers.py`).

The forward pass is written for `torch.func.functional_call` with substituted parameters and
second-order gradients (BOA's meta-learning style adaptation): no in-place ops, no state kept
on the Python side between calls.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..geometry import matrix_to_rot6d, rot6d_to_matrix
from .config import ModelConfig
from .resnet import ResNet

N_JOINTS = 24
POSE_DIM = N_JOINTS * 6  # 144: SMPL's 24 joint rotations in SPIN's 6D layout
SHAPE_DIM = 10  # SMPL betas
CAM_DIM = 3  # weak-perspective camera [s, tx, ty]

# ImageNet statistics the torchvision/SPIN backbone was trained with (RGB order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MeanParams:
    """Starting point of the iterative regression (SPIN's `smpl_mean_params.npz`).

    pose: (144,) 24 rotations in 6D (SPIN layout); shape: (10,) betas; cam: (3,) [s, tx, ty].
    """

    pose: Tensor
    shape: Tensor
    cam: Tensor


def default_mean_params() -> MeanParams:
    """SPIN-like means for when no `smpl_mean_params.npz` is available.

    Body joints: identity rotations. Global orientation: a rotation of pi about x, which turns
    SMPL's y-up body upright for a camera whose y axis points down. Betas 0, cam [0.9, 0, 0]
    (scale 0.9: the person roughly fills the crop, as SPIN's mean camera).
    """
    rots = torch.eye(3).repeat(N_JOINTS, 1, 1)
    rots[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # R_x(pi)
    return MeanParams(
        pose=matrix_to_rot6d(rots).reshape(POSE_DIM),
        shape=torch.zeros(SHAPE_DIM),
        cam=torch.tensor([0.9, 0.0, 0.0]),
    )


def load_mean_params(npz_path: str | os.PathLike[str]) -> MeanParams:
    """Read SPIN's `smpl_mean_params.npz` (keys `pose` (144,), `shape` (10,), `cam` (3,)).

    Raises ValueError naming a missing key or a wrong size.
    """
    with np.load(npz_path) as data:
        out = {}
        for key, size in (("pose", POSE_DIM), ("shape", SHAPE_DIM), ("cam", CAM_DIM)):
            if key not in data:
                raise ValueError(f"{npz_path}: missing key {key!r} (found {sorted(data.files)})")
            arr = np.asarray(data[key], dtype=np.float32)
            if arr.size != size:
                raise ValueError(
                    f"{npz_path}: {key!r} has shape {arr.shape}, expected {size} values"
                )
            # SPIN stores float64; the model runs in float32.
            out[key] = torch.from_numpy(arr.reshape(size).copy())
    return MeanParams(**out)


@dataclass(frozen=True)
class RegressorOutput:
    """SMPL parameters and camera regressed from a batch of crops.

    pose6d: (B, 24, 6) rotations in SPIN's 6D layout (root first, SMPL joint order).
    rotmat: (B, 24, 3, 3) the same rotations as orthonormal matrices.
    betas: (B, 10) SMPL shape coefficients.
    cam: (B, 3) weak-perspective camera [s, tx, ty] in normalised crop coordinates.
    """

    pose6d: Tensor
    rotmat: Tensor
    betas: Tensor
    cam: Tensor


def _register_output_pytree() -> None:
    # Lets torch.export and pytree utilities flatten the forward's dataclass output. Optional:
    # older torch lacks the function, and a module reload must not fail on re-registration.
    register = getattr(torch.export, "register_dataclass", None)
    if register is None:
        return
    try:
        register(RegressorOutput, serialized_type_name="hmr_ros.model.hmr.RegressorOutput")
    except ValueError:
        pass


_register_output_pytree()


class HMR(ResNet):
    """Human mesh regressor: (B, 3, H, W) RGB in [0, 1] -> RegressorOutput.

    Subclasses ResNet (rather than holding it as `self.backbone`) so that the backbone's keys sit
    at the top level of the state dict (`conv1.weight`, `layer4.2.bn3.weight`), as in SPIN.

    Persistent buffers `init_pose` (1, 144), `init_shape` (1, 10), `init_cam` (1, 3) hold the
    starting estimate (SPIN keeps them in its checkpoints). `pixel_mean`/`pixel_std` (1, 3, 1, 1)
    are non-persistent: they are not in the state dict (keeps it SPIN-compatible) but are part of
    the module, so exported graphs include the normalisation.
    """

    def __init__(self, config: ModelConfig, mean_params: MeanParams | None = None) -> None:
        super().__init__(config.block, config.layers, config.width, config.norm, config.gn_groups)
        self.config = config
        mean = default_mean_params() if mean_params is None else mean_params
        feat = self.feature_dim
        hidden = config.head_hidden
        # SPIN's head: the estimate is concatenated with the features at every iteration.
        self.fc1 = nn.Linear(feat + POSE_DIM + SHAPE_DIM + CAM_DIM, hidden)
        self.drop1 = nn.Dropout(config.dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout(config.dropout)
        self.decpose = nn.Linear(hidden, POSE_DIM)
        self.decshape = nn.Linear(hidden, SHAPE_DIM)
        self.deccam = nn.Linear(hidden, CAM_DIM)
        # Tiny decoder weights (SPIN's init) so that an untrained model starts at the mean.
        # SPIN leaves PyTorch's default bias, which moves that start by up to
        # n_iter / sqrt(head_hidden) per output; zero biases start exactly at the mean instead.
        # Pretrained weights overwrite both, so this matters only when training from scratch.
        for dec in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(dec.weight, gain=0.01)
            nn.init.zeros_(dec.bias)
        self._init_linear(self.fc1)
        self._init_linear(self.fc2)

        self.register_buffer("init_pose", self._as_row(mean.pose, POSE_DIM, "pose"))
        self.register_buffer("init_shape", self._as_row(mean.shape, SHAPE_DIM, "shape"))
        self.register_buffer("init_cam", self._as_row(mean.cam, CAM_DIM, "cam"))
        self.register_buffer(
            "pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False
        )

    @staticmethod
    def _init_linear(layer: nn.Linear) -> None:
        # PyTorch's default Linear init, spelled out so the head does not depend on its changes.
        bound = 1.0 / math.sqrt(layer.in_features)
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.uniform_(layer.bias, -bound, bound)

    @staticmethod
    def _as_row(t: Tensor, size: int, name: str) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float32)
        if t.numel() != size:
            raise ValueError(f"mean {name} must have {size} values, got shape {tuple(t.shape)}")
        return t.reshape(1, size).clone()

    @property
    def mean_params(self) -> MeanParams:
        """The current starting estimate (copies of the init_* buffers)."""
        return MeanParams(
            pose=self.init_pose[0].detach().clone(),
            shape=self.init_shape[0].detach().clone(),
            cam=self.init_cam[0].detach().clone(),
        )

    def extract_features(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, F) backbone features (normalisation included)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = (images - self.pixel_mean) / self.pixel_std
        return self.forward_features(x)

    def regress(self, features: Tensor) -> RegressorOutput:
        """(B, F) features -> RegressorOutput, refining the mean estimate `config.n_iter` times."""
        b = features.shape[0]
        pose = self.init_pose.expand(b, -1)
        shape = self.init_shape.expand(b, -1)
        cam = self.init_cam.expand(b, -1)
        for _ in range(self.config.n_iter):
            xc = torch.cat([features, pose, shape, cam], dim=1)
            # Linear head without activations: exactly SPIN's, so its weights mean the same.
            xc = self.drop2(self.fc2(self.drop1(self.fc1(xc))))
            pose = self.decpose(xc) + pose
            shape = self.decshape(xc) + shape
            cam = self.deccam(xc) + cam
        pose6d = pose.reshape(b, N_JOINTS, 6)
        return RegressorOutput(pose6d=pose6d, rotmat=rot6d_to_matrix(pose6d), betas=shape, cam=cam)

    def prefix(self, images: Tensor, stage: int) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the backbone's output after `stage`
        (`ResNet.features_until`): what a scope that freezes those layers computes once."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        return self.features_until((images - self.pixel_mean) / self.pixel_std, stage)

    def forward(self, images: Tensor, from_stage: int | None = None
                ) -> RegressorOutput:  # type: ignore[override]
        """(B, 3, H, W) RGB in [0, 1] -> RegressorOutput with (B, 24, ...) tensors. With
        `from_stage`, `images` is `prefix(images, from_stage)` and only the rest runs."""
        if from_stage is not None:
            return self.regress(self.features_after(images, from_stage))
        return self.regress(self.extract_features(images))
