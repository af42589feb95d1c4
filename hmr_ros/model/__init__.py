"""HMR regressor (ResNet + iterative SMPL head), its configuration, checkpoints and importers."""

from __future__ import annotations

from .checkpoint import (
    CheckpointError,
    CheckpointKeyError,
    LoadedCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from .config import PRESETS, ModelConfig, ModelConfigError, get_preset
from .hmr import (
    HMR,
    MeanParams,
    RegressorOutput,
    default_mean_params,
    load_mean_params,
)
from .importers import import_boa, import_spin
from .resnet import ResNet

__all__ = [
    "HMR",
    "PRESETS",
    "CheckpointError",
    "CheckpointKeyError",
    "ModelConfigError",
    "LoadedCheckpoint",
    "MeanParams",
    "ModelConfig",
    "RegressorOutput",
    "ResNet",
    "default_mean_params",
    "get_preset",
    "import_boa",
    "import_spin",
    "load_checkpoint",
    "load_mean_params",
    "save_checkpoint",
]
