"""Inference backends: crops in, SMPL parameters out, with weight swaps that never block.

Every backend answers `predict(crops)` for a batch of uint8 RGB crops with a `Prediction`: the
regressor's output together with the version of the weights that produced it, both from one
read of the backend's active weights. New weights arrive through
`update_weights(state_dict, version)`; the swap builds the new network (or session, or refits
the engine) completely and then replaces one reference, so a `predict` running in another
thread finishes on the weights it started with and the next one sees the new ones. Backends
never modify the model they are built from.

- `TorchBackend` (`torch.py`): eager PyTorch (CPU or CUDA, fp16 on CUDA); a swap copies the
  tensors into a second copy of the network.
- `OnnxRuntimeBackend` (`onnxruntime.py`): the regressor exported to ONNX (`export.py`); a
  swap builds a new InferenceSession with the adapted weights injected by initializer name.
- `TensorRTBackend` (`tensorrt.py`): a refittable engine built from that ONNX; a swap refits
  a second copy of the engine by initializer name and swaps the two.
- `onnx_weights.py`: the export cache and the state-dict -> initializer map of the last two.

`make_backend` picks one from an `InferenceConfig`.
"""

from __future__ import annotations

from pathlib import Path

from ...config import BACKENDS, InferenceConfig
from ..errors import BackendUnavailable, TensorRTUnavailable
from ..hmr import HMR
from .base import Backend, Prediction, crops_to_tensor
from .onnx_weights import cached_onnx_export, default_cache_dir
from .onnxruntime import OnnxRuntimeBackend
from .tensorrt import TensorRTBackend
from .torch import TorchBackend

__all__ = [
    "Backend",
    "BackendUnavailable",
    "OnnxRuntimeBackend",
    "Prediction",
    "TensorRTBackend",
    "TensorRTUnavailable",
    "TorchBackend",
    "cached_onnx_export",
    "crops_to_tensor",
    "default_cache_dir",
    "make_backend",
]


def make_backend(model: HMR, config: InferenceConfig) -> Backend:
    """The backend the config asks for, built from the (torch) regressor `model`, which is
    left unchanged.

    torch: `device`, `half`. onnxruntime: CPU provider, or CUDA for device 'cuda'; `threads`
    (its own session pools); exports cached in `engine_cache`. tensorrt: always CUDA (a 'cpu'
    device means the default GPU); `half` builds fp16; batches up to `max_people`; engines
    cached in `engine_cache`. torch's process-wide pool (`threads`) is sized by the process
    owner (`build_pipeline`), not here. Raises ValueError for an unknown backend name and
    BackendUnavailable (a RuntimeError) when the backend's package or device is missing here.
    """
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {config.backend!r}; known: "
                         f"{', '.join(BACKENDS)}")
    if config.backend == "torch":
        return TorchBackend(model, device=config.device, half=config.half)
    cache = Path(config.engine_cache) if config.engine_cache else default_cache_dir()
    if config.backend == "onnxruntime":
        return OnnxRuntimeBackend(model, device=config.device, threads=config.threads,
                                  export_dir=cache / "onnx")
    device = config.device if str(config.device).startswith("cuda") else "cuda"
    return TensorRTBackend(model, fp16=config.half, max_batch=max(1, config.max_people),
                           cache_dir=cache, device=device)
