"""`TorchBackend`: eager PyTorch on CPU or CUDA, fp16 on CUDA, weights swapped between two
copies of the network.

(This module is `hmr_ros.model.backends.torch`; `import torch` below is the real torch, as
every import here is absolute.)
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..hmr import HMR
from .base import Prediction, crops_to_tensor


@dataclass
class _Slot:
    """One copy of the network, the version of the weights in it, and the lock of whoever is
    using it (a prediction running on it, or a swap writing into it)."""

    model: HMR
    version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class TorchBackend:
    """Eager PyTorch on CPU or CUDA, optionally in half precision on CUDA (`half` is ignored
    on the CPU).

    The caller's model is never modified: the backend works on its own copy, so the same
    module can go on to the adapter (which must see the float32 source weights, not the fp16
    rounding of a CUDA backend). torch's thread pool is the process owner's business
    (`build_pipeline` sizes it once).
    """

    name = "torch"

    def __init__(self, model: HMR, device: str = "cpu", half: bool = False) -> None:
        self.device = torch.device(device)
        self.half = bool(half and self.device.type == "cuda")
        self.input_size = model.config.input_size
        self.config = model.config
        # Two copies of the network: one answers, the other (built on the first swap) takes
        # the next weights in place. A swap then costs a few tensor copies instead of a
        # deepcopy of the module, which holds the GIL for ~17 ms (hmr_small) and stalled
        # inference. A slot's lock is held by a prediction running on it and by a swap
        # writing into it, so a slow prediction still on the spare is never written under,
        # and the version a prediction reports is read under the same lock as its weights.
        self._active = _Slot(self._prepare(model))
        self._spare: _Slot | None = None
        self._swap_lock = threading.Lock()  # serialises writers only

    def _prepare(self, model: HMR) -> HMR:
        # A copy first: .to() on the same device, .half(), .eval() and requires_grad_ all act
        # in place, and the caller (build_pipeline) hands the same module to the adapter.
        model = copy.deepcopy(model).to(self.device).eval()
        if self.half:
            model = model.half()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    @property
    def version(self) -> int:
        return self._active.version

    @property
    def model(self) -> HMR:
        """The network currently answering (do not modify it in place)."""
        return self._active.model

    def predict(self, crops: np.ndarray) -> Prediction:
        """(B, R, R, 3) uint8 crops -> Prediction (float32, CPU) and the version used."""
        x = crops_to_tensor(crops).to(self.device)
        if self.half:
            x = x.half()
        slot = self._active  # one read: a concurrent swap cannot change it mid-call
        with slot.lock, torch.inference_mode():
            out = slot.model(x)
            version = slot.version  # under the lock: a swap cannot write this slot meanwhile
        return Prediction(*(t.float().cpu() for t in (out.pose6d, out.rotmat, out.betas,
                                                      out.cam)), version=version)

    def predict_features(self, crops: np.ndarray, features: Callable[[HMR, Tensor], tuple]
                         ) -> tuple[Prediction, Any]:
        """As `predict`, and what `features(model, images)` returns besides the output (the
        temporal stage's features, `temporal.features.regress_with_features`): one forward
        pass on the active weights, under the same lock, so the features belong to the
        weights of the prediction."""
        x = crops_to_tensor(crops).to(self.device)
        if self.half:
            x = x.half()
        slot = self._active
        with slot.lock, torch.inference_mode():
            out, feats = features(slot.model, x)
            version = slot.version
        pred = Prediction(*(t.float().cpu() for t in (out.pose6d, out.rotmat, out.betas,
                                                      out.cam)), version=version)
        return pred, feats

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None:
        """Swap in new weights: copied into the spare network on the caller's thread (`copy_`
        moves them to this backend's device and dtype, so the adapter may publish from any
        device), then one reference swap. Missing or unexpected names raise (as
        `strict=True`)."""
        with self._swap_lock:
            if self._spare is None:
                self._spare = _Slot(copy.deepcopy(self._active.model))
            spare = self._spare
            with spare.lock, torch.no_grad():
                target = spare.model.state_dict()
                missing = sorted(set(target) - set(state_dict))
                unexpected = sorted(set(state_dict) - set(target))
                if missing or unexpected:
                    raise KeyError(f"weights do not fit the model: missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]}")
                wrong = [n for n, t in target.items() if tuple(state_dict[n].shape) != t.shape]
                if wrong:
                    raise ValueError(f"weights of the wrong shape: {wrong[:5]}")
                for name, dst in target.items():
                    dst.copy_(state_dict[name])
                spare.version = int(version)
            self._spare, self._active = self._active, spare
