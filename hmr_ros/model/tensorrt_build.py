"""TensorRT engines from an ONNX export: built refittable, keyed by what they depend on.

TensorRT is imported only here and only when asked for (`import_tensorrt`), so every other
backend and the exporter run where it is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic_file import atomic_write
from .errors import ExportError, TensorRTUnavailable
from .onnx_names import DEFAULT_MAX_BATCH


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def engine_cache_key(gpu_name: str, trt_version: str, model_hash: str, fp16: bool,
                     max_batch: int) -> str:
    """File-name-safe key of a TensorRT engine: engines are specific to the GPU model, the
    TensorRT version, the network and weights they were built from, precision and profile.

    Readable parts first; a digest of the exact values last, because two different GPU names
    can slug to the same text.
    """
    exact = json.dumps([gpu_name, trt_version, model_hash, bool(fp16), int(max_batch)])
    digest = hashlib.sha256(exact.encode()).hexdigest()[:8]
    return (f"{_slug(gpu_name)}-trt{_slug(trt_version)}-{model_hash[:16]}-"
            f"{'fp16' if fp16 else 'fp32'}-b{int(max_batch)}-{digest}")


def import_tensorrt() -> Any:
    """The `tensorrt` module, or TensorRTUnavailable saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            "TensorRT is not installed (no Python module 'tensorrt'); install NVIDIA TensorRT "
            "with its Python bindings on a machine with a CUDA GPU, or use the 'onnxruntime' "
            f"or 'torch' backend ({e})") from e
    return trt


def tensorrt_version() -> str:
    return str(import_tensorrt().__version__)


def _trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:  # pragma: no cover - unknown version string
        return 0


@dataclass(frozen=True)
class TensorRTBuild:
    """A serialised engine on disk. Input `images` (B, 3, R, R) with 1 <= B <= max_batch."""

    engine_path: Path
    trt_version: str
    fp16: bool
    max_batch: int
    refittable: bool
    seconds: float


def build_serialized_engine(onnx_path: str | os.PathLike[str], fp16: bool, max_batch: int,
                            refit: bool = True, opt_batch: int | None = None,
                            logger: Any = None) -> bytes:
    """Parse the ONNX file and build a serialised TensorRT engine for batches 1..max_batch.

    refit: build with BuilderFlag.REFIT so weights can later be replaced by ONNX initializer
    name (`trt.Refitter.set_named_weights`). fp16: let TensorRT pick half-precision kernels
    (BuilderFlag.FP16; TensorRT 11 removed that flag and needs a strongly typed fp16 ONNX
    instead, which this exporter does not produce: asking for fp16 there is an error).
    Raises TensorRTUnavailable or ExportError.
    """
    trt = import_tensorrt()
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    # Explicit batch is the only mode since TensorRT 10 (the flag is deprecated there) but
    # must be requested on 8.x, where the batch dimension of an ONNX model is otherwise lost.
    if _trt_major(trt) < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    if refit:
        config.set_flag(trt.BuilderFlag.REFIT)
    if fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise ExportError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (weak typing "
                              "was removed in 11.x); build an fp32 engine instead")
        config.set_flag(trt.BuilderFlag.FP16)
    inp = network.get_input(0)
    _, c, h, w = tuple(inp.shape)
    opt = opt_batch or min(max_batch, 4)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, c, h, w), (opt, c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    return bytes(serialized)


def export_tensorrt(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str],
                    fp16: bool = False, max_batch: int = DEFAULT_MAX_BATCH,
                    refit: bool = True) -> TensorRTBuild:
    """Build a (refittable) engine from an ONNX export and write it to `engine_path`.

    Raises TensorRTUnavailable when TensorRT is missing, ExportError when the build fails.
    """
    trt = import_tensorrt()
    t0 = time.perf_counter()
    data = build_serialized_engine(onnx_path, fp16, max_batch, refit=refit)
    engine_path = Path(engine_path)
    atomic_write(engine_path, data)
    return TensorRTBuild(engine_path=engine_path, trt_version=str(trt.__version__), fp16=fp16,
                         max_batch=max_batch, refittable=refit,
                         seconds=time.perf_counter() - t0)
