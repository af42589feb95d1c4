"""Where adaptation runs: the adaptation device, checked, modules moved there without
touching the caller's copy, and the adaptation thread's OS priority."""

from __future__ import annotations

import copy
import logging
from typing import TypeVar

import torch

from ..threads import lower_thread_priority  # noqa: F401  (re-exported)

log = logging.getLogger("hmr_ros")


def adapt_device(spec: str) -> torch.device:
    """`spec` ('cpu', 'cuda', 'cuda:1') as a torch.device that exists here; RuntimeError
    naming adapt.worker.device when it does not (no CUDA, or no such GPU)."""
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"adaptation device {spec!r} (adapt.worker.device, or "
                               "inference.device when that is empty): torch sees no CUDA "
                               "device here (torch.cuda.is_available() is False); set "
                               "adapt.worker.device to cpu")
        if device.index is None:  # tensors report cuda:N: compare like with like
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise RuntimeError(f"adaptation device {spec!r}: torch sees only "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    return device


_M = TypeVar("_M", bound=torch.nn.Module)


def on_device(module: _M, device: torch.device) -> _M:
    """`module` itself when its tensors are on `device` already, else a copy moved there
    (nn.Module.to moves in place, and the caller's module serves inference)."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device == device for t in tensors):
        return module
    return copy.deepcopy(module).to(device)
