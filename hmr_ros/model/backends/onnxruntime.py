"""`OnnxRuntimeBackend`: the regressor exported to ONNX, run by ONNX Runtime (CPU, or CUDA
with onnxruntime-gpu); a swap builds a new InferenceSession with the adapted weights injected
by initializer name.

(This module is `hmr_ros.model.backends.onnxruntime`; `import onnxruntime` below is the real
package, as every import here is absolute.)
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import BackendUnavailable
from ..export import (
    DEFAULT_MAX_BATCH,
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAMES,
)
from ..hmr import HMR
from .base import Prediction, crops_to_tensor
from .onnx_weights import (
    InitializerSpec,
    WeightMap,
    cached_onnx_export,
    import_onnx,
    initializer_specs,
)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(
            "the 'onnxruntime' backend needs the onnxruntime package (pip install onnxruntime, "
            f"or onnxruntime-gpu for CUDA) ({e})") from e
    return onnxruntime


# Name of the external-data "file" of the weightless session template. ORT replaces every such
# initializer with the arrays given to add_external_initializers before reading anything, so
# the file never exists; a distinctive name keeps a stray file from ever being picked up.
_PUSHED_WEIGHTS = "hmr_ros-weights-pushed-at-session-creation.bin"


def _ort_providers(ort: Any, providers: Sequence[str] | None, device: str) -> list[str]:
    available = list(ort.get_available_providers())
    if providers:
        wanted = list(providers)
    elif str(device).startswith("cuda"):
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        wanted = ["CPUExecutionProvider"]
    absent = [p for p in wanted if p not in available]
    if absent:
        hint = (" (the CUDA provider comes with the onnxruntime-gpu package)"
                if "CUDAExecutionProvider" in absent else "")
        raise BackendUnavailable(f"onnxruntime here has no {', '.join(absent)}; available: "
                                 f"{', '.join(available)}{hint}")
    return wanted


def _weightless_template(proto: Any, specs: Mapping[str, InitializerSpec]) -> bytes:
    """The model with every mapped initializer turned into an external-data reference.

    Why not SessionOptions.add_initializer on the full model: ORT's graph optimisations
    (constant folding, Conv/GroupNorm fusions) run on the model's own initializer values before
    the user-added ones replace them, so part of the network silently keeps the exported
    weights (measured: max error 0.2 on hmr_small with optimisations on; exact with them off,
    which costs the fusions). add_external_initializers substitutes values BEFORE optimisation,
    but only for initializers stored as external data, hence this template. It is also smaller
    to parse than a patched full model (hmr_r50: 1 MB instead of 100 MB per swap, and no
    protobuf re-serialisation of the weights, which took ~2 s there).
    """
    from onnx import TensorProto

    template = copy.deepcopy(proto)
    offset = 0
    for init in template.graph.initializer:
        spec = specs.get(init.name)
        if spec is None:
            continue
        nbytes = int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
        for f in ("raw_data", "float_data", "double_data", "int32_data", "int64_data",
                  "uint64_data"):
            init.ClearField(f)
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", _PUSHED_WEIGHTS), ("offset", str(offset)),
                           ("length", str(nbytes))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
        offset += nbytes
    return template.SerializeToString()


@dataclass(frozen=True)
class _OrtState:
    """What one `predict` reads, replaced as a whole by a swap."""

    session: Any
    version: int


class OnnxRuntimeBackend:
    """ONNX Runtime on CPU (or CUDA with onnxruntime-gpu), weights swappable by name.

    The model is exported once (`export_onnx`), cached by model hash in `export_dir` (a
    temporary folder when None). Every session, the first included, is created from a
    weightless copy of the graph with the weights supplied by initializer name (see
    `_weightless_template`), so the first session and every swapped-in one go through the same
    path. `update_weights` creates the new session on the caller's thread (the adaptation
    worker) and then replaces one reference: a `predict` that already read the old state
    finishes on the old session, which is freed when the last such call returns.
    """

    name = "onnxruntime"

    def __init__(self, model: HMR, providers: Sequence[str] | None = None, threads: int = 1,
                 export_dir: str | os.PathLike[str] | None = None, device: str = "cpu",
                 max_batch: int = DEFAULT_MAX_BATCH, opset: int = DEFAULT_OPSET) -> None:
        self._ort = _import_onnxruntime()
        onnx = import_onnx()
        self.providers = _ort_providers(self._ort, providers, device)
        self.device = str(device)
        self.input_size = model.config.input_size
        self.config = model.config
        self.threads = max(1, int(threads))
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if export_dir is None:
            # Lives as long as the backend (removed by the object's finaliser).
            self._tmp = tempfile.TemporaryDirectory(prefix="hmr_ros_onnx_")
            export_dir = self._tmp.name
        self.export = cached_onnx_export(model, export_dir,
                                         max_batch=max_batch, opset=opset)
        proto = onnx.load(str(self.export.path))
        specs = initializer_specs(proto, list(self.export.names.values()))
        self._weights = WeightMap(self.export, specs)
        self._template = _weightless_template(proto, specs)
        del proto
        self._swap_lock = threading.Lock()  # serialises writers only; readers never take it
        self._state = _OrtState(self._session(model.state_dict()), 0)

    def _session(self, state_dict: Mapping[str, Tensor]) -> Any:
        ort = self._ort
        arrays = self._weights.arrays(state_dict)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT warns about every unused constant
        names = list(arrays)
        # ORT copies the values into the graph while loading, so the arrays (and the OrtValues
        # viewing them) only have to outlive the InferenceSession constructor.
        values = [ort.OrtValue.ortvalue_from_numpy(arrays[n]) for n in names]
        options.add_external_initializers(names, values)
        return ort.InferenceSession(self._template, options, providers=self.providers)

    @property
    def version(self) -> int:
        return self._state.version

    def predict(self, crops: np.ndarray) -> Prediction:
        """(B, R, R, 3) uint8 crops -> Prediction (float32, CPU) and the version used."""
        state = self._state  # one read: session and version come from the same swap
        x = np.ascontiguousarray(crops_to_tensor(crops).numpy())
        # InferenceSession.run may be called from several threads at once.
        outs = state.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        return Prediction(*(torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in outs),
                          version=state.version)

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None:
        """Build a session with `state_dict` (all keys of the model's state dict, on any
        device: the weight map copies them to host arrays of the graph's dtypes), then swap."""
        with self._swap_lock:
            session = self._session(state_dict)
            self._state = _OrtState(session, int(version))
