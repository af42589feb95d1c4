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

The record and the verified name map: `onnx_names.py`; TensorRT engines: `tensorrt_build.py`
(both importable from here).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .atomic_file import atomic_write
from .errors import ExportError
from .hmr import HMR
from .onnx_names import (
    DEFAULT_MAX_BATCH,
    INPUT_NAME,
    NAMES_FORMAT,
    OUTPUT_NAMES,
    OnnxExport,
    load_onnx_export,
    map_initializers,
    model_hash,
    names_path_for,
)
from .tensorrt_build import (
    TensorRTBuild,
    build_serialized_engine,
    engine_cache_key,
    export_tensorrt,
    import_tensorrt,
    tensorrt_version,
)

DEFAULT_OPSET = 18

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "OnnxExport",
    "TensorRTBuild",
    "build_serialized_engine",
    "engine_cache_key",
    "export_onnx",
    "export_tensorrt",
    "import_tensorrt",
    "load_onnx_export",
    "map_initializers",
    "model_hash",
    "names_path_for",
    "tensorrt_version",
]


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
    atomic_write(path, proto.SerializeToString())
    text = json.dumps(record.to_json(), indent=1, allow_nan=False) + "\n"
    atomic_write(record.names_path, text.encode())
    return record
