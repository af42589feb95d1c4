"""What every inference backend answers: the `Backend` protocol and its `Prediction` record.

Kept apart from the package's `__init__` so that each backend module can import these without
importing its own half-initialised package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from ..hmr import RegressorOutput


@dataclass(frozen=True)
class Prediction(RegressorOutput):
    """A `RegressorOutput` and `version`, the model version of the weights that produced it.

    Both come from ONE read of the backend's active weights, so a swap that lands while the
    prediction runs can never label v0 outputs as v1 (reading `backend.version` after
    `predict` could). pose6d (B, 24, 6), rotmat (B, 24, 3, 3), betas (B, 10), cam (B, 3), all
    float32 on the CPU.
    """

    version: int


class Backend(Protocol):
    name: str
    input_size: int

    @property
    def version(self) -> int:
        """The version a `predict` starting now would use (for frames with nobody in them)."""
        ...

    def predict(self, crops: np.ndarray) -> Prediction: ...

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None:
        """Swap in `state_dict` (on any device and float dtype: the backend converts it to its
        own) as model version `version`."""
        ...


def crops_to_tensor(crops: np.ndarray) -> Tensor:
    """(B, R, R, 3) uint8 RGB -> (B, 3, R, R) float32 in [0, 1]."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (B, R, R, 3) RGB, got {crops.shape}")
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
