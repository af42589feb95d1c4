"""Export the regressor to ONNX and TensorRT, keeping every weight addressable by name.

Online adaptation changes the regressor's weights while inference runs on an exported copy, so
an export is only useful here if new weights can be pushed into it without exporting again.
That needs a stable map from torch state-dict keys to the names the ONNX graph (and the
TensorRT engine built from it, whose ONNX parser names refittable weights after the ONNX
initializers) uses for them. `export_onnx` returns that map and writes it next to the model as
`<model>.names.json`.

Exporter choice (torch 2.13):

- The TorchScript exporter (`dynamo=False`) still exists but cannot trace the dataclass output
  without a wrapper module (which prefixes every name), and it deduplicates initializers by
  VALUE: a freshly initialised GroupNorm has weight 1 and bias 0 everywhere, so all of them
  collapse into one shared initializer and the mapping would depend on the weights' values.
- The dynamo exporter (`dynamo=True`, onnxscript) names each initializer after the parameter's
  fully qualified name (`layer1.0.bn1.weight`), so the mapping is the identity by construction.
  Its default post-export optimizer, however, also deduplicates equal initializers and folds
  ops on weights (`Unsqueeze(bn1.weight)` at opset 18) into new anonymous constants. So we
  export with `optimize=False` and run only constant folding ourselves, with every initializer
  temporarily declared a graph input: ONNX treats such initializers as overridable, so the
  folder must leave them, and everything computed from them, alone. What it still folds is
  the exporter's shape bookkeeping (the zero Conv biases computed from `Shape(weight)`, etc.).

The map is verified, not assumed: every state-dict entry must reach an initializer of the same
shape and the same values, or the export fails (`ExportError`). BatchNorm's
`num_batches_tracked` counters, which the eval graph never reads, are the only entries allowed
to be absent.

Opset 18 by default: TensorRT 10.0's parser supports opsets up to 20, and on ONNX Runtime's CPU
provider GroupNorm exported at 18 (InstanceNormalization + per-channel affine) runs faster than
the opset-21 GroupNormalization. Both keep the GroupNorm weights as their own initializers.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import ModelConfig
from .errors import ExportError, TensorRTUnavailable
from .hmr import HMR

INPUT_NAME = "images"
OUTPUT_NAMES = ("pose6d", "rotmat", "betas", "cam")
DEFAULT_OPSET = 18
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


# ------------------------------------------------------------------------ hashing and keys


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


# ------------------------------------------------------------------------ ONNX


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter warns about optional torchvision ops and deprecated pytree helpers on every
    # call; none of it concerns this model, and it would bury the CLI's own output.
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _fold_constants_keeping_initializers(ir_model: Any) -> None:
    """Fold shape arithmetic in place without touching any initializer (see module doc)."""
    try:
        import onnx_ir.passes.common as passes
        from onnxscript import optimizer
    except ImportError:  # pragma: no cover - the unfolded graph is valid, just untidy
        return
    passes.AddInitializersToInputsPass()(ir_model)
    optimizer.fold_constants(ir_model)
    # Types of the values computed from weights (needed to see which casts are no-ops). Only
    # a tidying step: if inference fails on some future op, the casts simply stay.
    try:
        passes.ShapeInferencePass()(ir_model)
    except Exception:  # pragma: no cover - depends on onnx's shape inference coverage
        pass
    else:
        _drop_identity_casts(ir_model)
    passes.RemoveUnusedNodesPass()(ir_model)
    passes.RemoveInitializersFromInputsPass()(ir_model)


def _drop_identity_casts(ir_model: Any) -> None:
    """Bypass `CastLike(x, like)` where both are already the same type (the exporter emits one
    per GroupNorm affine and elementwise op); folding cannot remove them when `x` comes from a
    weight, and they are pure noise to TensorRT's parser."""
    graph = ir_model.graph
    for node in list(graph):
        if node.op_type != "CastLike" or node.domain not in ("", "ai.onnx"):
            continue
        src, like = node.inputs[0], node.inputs[1]
        out = node.outputs[0]
        if src is None or like is None or src.dtype is None or src.dtype != like.dtype:
            continue
        if out.is_graph_output():
            continue
        out.replace_all_uses_with(src)
        graph.remove(node, safe=True)


def _drop_zero_conv_bias(proto: Any, keep: set[str]) -> None:
    """Remove the all-zero Conv biases that folding leaves (our convs have no bias): they would
    otherwise show up as anonymous refittable weights in TensorRT."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "Conv" or len(node.input) != 3:
            continue
        bias = node.input[2]
        if bias in inits and bias not in keep and not numpy_helper.to_array(inits[bias]).any():
            del node.input[2]
    used = {name for node in proto.graph.node for name in node.input}
    unused = [i for i in proto.graph.initializer if i.name not in used]
    for init in unused:
        proto.graph.initializer.remove(init)


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


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def export_onnx(model: HMR, path: str | os.PathLike[str], max_batch: int = DEFAULT_MAX_BATCH,
                opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Write `model` as ONNX to `path` (plus `<path>.names.json`) and return the record.

    The graph takes `images` (B, 3, R, R) float32 in [0, 1] with B dynamic and returns
    `pose6d` (B, 24, 6), `rotmat` (B, 24, 3, 3), `betas` (B, 10), `cam` (B, 3). The model is
    copied to CPU float32 in eval mode first; the caller's module is not changed.
    Raises ExportError if the exporter fails or the weight map cannot be verified.
    """
    import onnx

    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    path = Path(path)
    net = copy.deepcopy(model).float().cpu().eval()
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    size = net.config.input_size
    # Batch 2 in the example: torch.export specialises dimensions of size 0 and 1.
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                net, (example,), None, dynamo=True, optimize=False, verbose=False,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: batch},), opset_version=opset)
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    if program is None:  # pragma: no cover - only the TorchScript exporter returns None
        raise ExportError("torch.onnx.export returned no program")
    import onnx_ir as ir

    with _quiet_exporter():
        _fold_constants_keeping_initializers(program.model)
    proto = ir.to_proto(program.model)
    _drop_zero_conv_bias(proto, keep=set(state))
    names, unused = map_initializers(proto, state)
    digest = model_hash(state, net.config)
    meta = {"hmr_ros.model_hash": digest, "hmr_ros.config": json.dumps(net.config.to_dict()),
            "hmr_ros.names": NAMES_FORMAT}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    record = OnnxExport(path=path, names_path=names_path_for(path), names=names,
                        input_size=size, max_batch=int(max_batch), opset=int(opset),
                        model_hash=digest, config=net.config, unused=unused)
    _atomic_write(path, proto.SerializeToString())
    text = json.dumps(record.to_json(), indent=1, allow_nan=False) + "\n"
    _atomic_write(record.names_path, text.encode())
    return record


# ------------------------------------------------------------------------ TensorRT


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
    _atomic_write(engine_path, data)
    return TensorRTBuild(engine_path=engine_path, trt_version=str(trt.__version__), fp16=fp16,
                         max_batch=max_batch, refittable=refit,
                         seconds=time.perf_counter() - t0)
