"""The weight-name map of an ONNX export: the record (`OnnxExport`, `<model>.names.json`),
the verified map from torch state-dict keys to ONNX initializer names, and the model hash.

Online adaptation pushes new weights into an exported copy by name (ONNX Runtime's
initializers, TensorRT's refitter); `export.py` writes the map, this module reads, checks and
describes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import ModelConfig
from .errors import ExportError

INPUT_NAME = "images"
OUTPUT_NAMES = ("pose6d", "rotmat", "betas", "cam")
DEFAULT_MAX_BATCH = 16
NAMES_SUFFIX = ".names.json"
NAMES_FORMAT = "hmr_ros.onnx_names"
NAMES_FORMAT_VERSION = 1

# State-dict entries that an eval-mode graph never reads (BatchNorm's step counter).
_UNUSED_SUFFIXES = ("num_batches_tracked",)


@dataclass(frozen=True)
class OnnxExport:
    """An ONNX regressor on disk and how to address its weights.

    path: the .onnx file; names_path: its `<path>.names.json`.
    names: torch state-dict key -> ONNX initializer name (every key of the state dict except
        unused counters such as BatchNorm's `num_batches_tracked`).
    Input `input_name`: (B, 3, input_size, input_size) float32 RGB in [0, 1], B dynamic.
    Outputs `output_names`: pose6d (B, 24, 6), rotmat (B, 24, 3, 3), betas (B, 10), cam (B, 3).
    max_batch: the largest batch the export was declared for (TensorRT's profile maximum).
    model_hash: `model_hash(state_dict, config)` of the exported weights.
    """

    path: Path
    names_path: Path
    names: dict[str, str]
    input_size: int
    max_batch: int
    opset: int
    model_hash: str
    config: ModelConfig
    input_name: str = INPUT_NAME
    output_names: tuple[str, ...] = OUTPUT_NAMES
    unused: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": NAMES_FORMAT,
            "format_version": NAMES_FORMAT_VERSION,
            "onnx": self.path.name,
            "input": self.input_name,
            "outputs": list(self.output_names),
            "input_size": self.input_size,
            "max_batch": self.max_batch,
            "opset": self.opset,
            "model_hash": self.model_hash,
            "config": self.config.to_dict(),
            "torch": torch.__version__,
            "names": dict(self.names),
            "unused": list(self.unused),
        }


def names_path_for(onnx_path: str | os.PathLike[str]) -> Path:
    """`model.onnx` -> `model.onnx.names.json`."""
    p = Path(onnx_path)
    return p.with_name(p.name + NAMES_SUFFIX)


def load_onnx_export(onnx_path: str | os.PathLike[str]) -> OnnxExport:
    """The `OnnxExport` record of an ONNX file written by `export_onnx` (from its names file).

    Raises ExportError when the model or its names file is missing or malformed.
    """
    path = Path(onnx_path)
    names_path = names_path_for(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    try:
        data = json.loads(names_path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: missing its weight-name map {names_path.name}") from None
    except json.JSONDecodeError as e:
        raise ExportError(f"{names_path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") != NAMES_FORMAT:
        raise ExportError(f"{names_path}: not an hmr_ros weight-name map")
    if data.get("format_version", 0) > NAMES_FORMAT_VERSION:
        raise ExportError(f"{names_path}: format_version {data.get('format_version')} is newer "
                          "than this hmr_ros reads")
    try:
        return OnnxExport(
            path=path, names_path=names_path, names=dict(data["names"]),
            input_size=int(data["input_size"]), max_batch=int(data["max_batch"]),
            opset=int(data["opset"]), model_hash=str(data["model_hash"]),
            config=ModelConfig.from_dict(data["config"]), input_name=str(data["input"]),
            output_names=tuple(data["outputs"]), unused=tuple(data.get("unused", ())))
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{names_path}: malformed ({type(e).__name__}: {e})") from e


def _tensor_bytes(t: Tensor) -> bytes:
    # A byte view works for every dtype (numpy has no bfloat16) and does not copy twice.
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def model_hash(source: Mapping[str, Tensor] | bytes | bytearray | memoryview,
               config: ModelConfig | None = None) -> str:
    """Hex SHA-256 of a state dict (keys, dtypes, shapes, values) or of ONNX bytes.

    A state dict does not pin the architecture (`n_iter`, `input_size`, `gn_groups` leave the
    tensors unchanged), so pass `config` when the hash names an export of that model.
    """
    h = hashlib.sha256()
    if isinstance(source, (bytes, bytearray, memoryview)):
        h.update(b"bytes\0")
        h.update(source)
    else:
        h.update(b"state_dict\0")
        for key in sorted(source):
            t = source[key]
            h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(_tensor_bytes(t))
    if config is not None:
        h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def _find_initializer(key: str, shape: tuple[int, ...], inits: Mapping[str, Any]) -> str | None:
    # The dynamo exporter uses the qualified name itself; the sanitised spellings are what
    # torch.export calls the same parameters (`p_conv1_weight`), in case a future exporter
    # surfaces those instead.
    flat = key.replace(".", "_")
    for name in (key, flat, f"p_{flat}", f"b_{flat}"):
        init = inits.get(name)
        if init is not None and tuple(init.dims) == shape:
            return name
    return None


def map_initializers(proto: Any, state_dict: Mapping[str, Tensor]) -> tuple[dict[str, str],
                                                                          tuple[str, ...]]:
    """(state-dict key -> initializer name, unused keys) for an exported graph.

    Raises ExportError naming every key that has no initializer of the same shape and values
    (unused counters excepted).
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    names: dict[str, str] = {}
    unused: list[str] = []
    problems: list[str] = []
    for key, t in state_dict.items():
        name = _find_initializer(key, tuple(t.shape), inits)
        if name is None:
            if key.rsplit(".", 1)[-1] in _UNUSED_SUFFIXES:
                unused.append(key)
            else:
                problems.append(f"{key}: no initializer of shape {list(t.shape)}")
            continue
        value = numpy_helper.to_array(inits[name])
        if not np.array_equal(value, t.detach().cpu().numpy()):
            problems.append(f"{key}: initializer {name!r} holds different values")
            continue
        names[key] = name
    taken = list(names.values())
    if len(set(taken)) != len(taken):
        problems.append("several weights share one initializer")
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ExportError(f"the exported graph does not keep every weight addressable:\n  "
                          f"{shown}{more}")
    return names, tuple(unused)
