"""Inference backends: crops in, SMPL parameters out, with weight swaps that never block.

Every backend answers `predict(crops)` for a batch of uint8 RGB crops and accepts new weights
through `update_weights(state_dict, version)`. The swap builds the new network (or session, or
refits the engine) completely and then replaces one reference, so a `predict` running in
another thread finishes on the weights it started with and the next one sees the new ones.
"""

from __future__ import annotations

import copy
import threading
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from ..config import InferenceConfig
from .hmr import HMR, RegressorOutput


class Backend(Protocol):
    name: str
    input_size: int

    @property
    def version(self) -> int: ...

    def predict(self, crops: np.ndarray) -> RegressorOutput: ...

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None: ...


def crops_to_tensor(crops: np.ndarray) -> Tensor:
    """(B, R, R, 3) uint8 RGB -> (B, 3, R, R) float32 in [0, 1]."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (B, R, R, 3) RGB, got {crops.shape}")
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0


class TorchBackend:
    """Eager PyTorch on CPU or CUDA, optionally in half precision on CUDA."""

    name = "torch"

    def __init__(self, model: HMR, device: str = "cpu", half: bool = False,
                 threads: int | None = None) -> None:
        self.device = torch.device(device)
        self.half = bool(half and self.device.type == "cuda")
        self.input_size = model.config.input_size
        self.config = model.config
        self._threads = threads
        self._model = self._prepare(model)
        self._version = 0
        self._swap_lock = threading.Lock()  # serialises writers only; readers never take it

    def _prepare(self, model: HMR) -> HMR:
        model = model.to(self.device).eval()
        if self.half:
            model = model.half()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    @property
    def version(self) -> int:
        return self._version

    @property
    def model(self) -> HMR:
        """The network currently answering (do not modify it in place)."""
        return self._model

    def predict(self, crops: np.ndarray) -> RegressorOutput:
        model = self._model  # one read: a concurrent swap cannot change it mid-call
        x = crops_to_tensor(crops).to(self.device)
        if self.half:
            x = x.half()
        if self._threads:
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            out = model(x)
        return RegressorOutput(*(t.float().cpu() for t in (out.pose6d, out.rotmat, out.betas,
                                                            out.cam)))

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None:
        """Swap in new weights (built on the caller's thread, then one reference swap)."""
        with self._swap_lock:
            new = copy.deepcopy(self._model).float().cpu()
            new.load_state_dict({k: v.detach().float().cpu() for k, v in state_dict.items()},
                                strict=True)
            new = self._prepare(new)
            self._model = new
            self._version = version


def make_backend(model: HMR, config: InferenceConfig) -> Backend:
    """The backend the config asks for, built from the (torch) regressor `model`."""
    if config.backend == "torch":
        return TorchBackend(model, device=config.device, half=config.half,
                            threads=config.threads)
    raise ValueError(f"backend {config.backend!r} is not available in this build")
