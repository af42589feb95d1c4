"""What the ONNX Runtime and TensorRT backends share: the cached ONNX export of a model and
the map from a torch state dict to the export's initializers, by name."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import BackendUnavailable, ExportError
from ..export import (
    DEFAULT_MAX_BATCH,
    DEFAULT_OPSET,
    OnnxExport,
    export_onnx,
    load_onnx_export,
    model_hash,
)
from ..hmr import HMR


def import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise BackendUnavailable(
            f"exporting the regressor needs the onnx and onnxscript packages ({e})") from e
    return onnx


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/hmr_ros` (default `~/.cache/hmr_ros`): exported ONNX, TensorRT engines."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hmr_ros"


def cached_onnx_export(model: HMR, directory: str | os.PathLike[str],
                       max_batch: int = DEFAULT_MAX_BATCH,
                       opset: int = DEFAULT_OPSET) -> OnnxExport:
    """The ONNX export of `model` in `directory`, reused when one of the same weights,
    architecture and opset is there (export takes seconds to tens of seconds).

    `max_batch` is not part of the key: the ONNX batch dimension is symbolic, the value is
    only recorded (TensorRT's profile limit comes from its own argument)."""
    digest = model_hash(model.state_dict(), model.config)
    path = Path(directory) / f"{model.config.name}-{digest[:16]}-op{opset}.onnx"
    if path.is_file():
        try:
            record = load_onnx_export(path)
        except ExportError:
            record = None  # unreadable leftovers of an interrupted run: export again
        if record is not None and record.model_hash == digest and record.opset == opset:
            return record
    return export_onnx(model, path, max_batch=max_batch, opset=opset)


@dataclass(frozen=True)
class InitializerSpec:
    dtype: np.dtype
    shape: tuple[int, ...]


def initializer_specs(proto: Any, names: Sequence[str]) -> dict[str, InitializerSpec]:
    from onnx import helper

    wanted = set(names)
    specs = {i.name: InitializerSpec(np.dtype(helper.tensor_dtype_to_np_dtype(i.data_type)),
                                      tuple(int(d) for d in i.dims))
             for i in proto.graph.initializer if i.name in wanted}
    missing = sorted(wanted - specs.keys())
    if missing:
        raise ExportError(f"initializer(s) {missing[:5]} of the weight map are not in the graph")
    return specs


class WeightMap:
    """State dict -> {ONNX initializer name: contiguous array of the initializer's dtype}.

    Strict like `load_state_dict(strict=True)`: a missing, unknown or misshapen key is a
    ValueError, because a weight that silently keeps its old value would make the swapped-in
    model a mixture of two versions. Unused counters (`num_batches_tracked`) are ignored.
    """

    def __init__(self, export: OnnxExport, specs: Mapping[str, InitializerSpec]) -> None:
        self.names = dict(export.names)
        self.unused = frozenset(export.unused)
        self.specs = dict(specs)

    def arrays(self, state_dict: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        missing = [k for k in self.names if k not in state_dict]
        unknown = [k for k in state_dict if k not in self.names and k not in self.unused]
        if missing or unknown:
            raise ValueError(f"state dict does not match the exported model: missing "
                             f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                             f"{unknown[:5]}{'...' if len(unknown) > 5 else ''}")
        out: dict[str, np.ndarray] = {}
        for key, onnx_name in self.names.items():
            spec = self.specs[onnx_name]
            t = state_dict[key]
            if tuple(t.shape) != spec.shape:
                raise ValueError(f"{key}: shape {list(t.shape)} does not match the exported "
                                 f"{list(spec.shape)}")
            # Through torch for the dtype change: numpy cannot read bfloat16 tensors.
            target = torch.from_numpy(np.empty(0, dtype=spec.dtype)).dtype
            out[onnx_name] = np.ascontiguousarray(
                t.detach().to(device="cpu", dtype=target).numpy())
        return out
