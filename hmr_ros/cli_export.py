"""`hmr-ros export`: the regressor to ONNX or to a refittable TensorRT engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _export(args: argparse.Namespace) -> int:
    """`hmr-ros export`: 0 on success, 1 on a failed export, 2 when TensorRT is missing."""
    from .model.errors import ExportError, TensorRTUnavailable
    from .model.export import export_onnx, export_tensorrt, import_tensorrt

    fmt = getattr(args, "format", "onnx")
    max_batch = max(1, int(getattr(args, "batch", 1) or 1))
    if fmt == "tensorrt":
        # Before any slow work: without TensorRT there is nothing this command can do.
        try:
            import_tensorrt()
        except TensorRTUnavailable as e:
            print(f"hmr-ros export: cannot build a TensorRT engine: {e}", file=sys.stderr)
            return 2
    from .model.checkpoint import CheckpointError
    from .model.weights import load_regressor

    try:
        loaded = load_regressor(args.weights or None)
    except (FileNotFoundError, CheckpointError) as e:
        print(f"hmr-ros export: cannot load the regressor weights: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    # The engine's ONNX (and its weight-name map, which refitting by name needs) goes next to
    # the engine: `model.engine` -> `model.onnx`.
    onnx_path = out if fmt == "onnx" else out.with_name(out.stem + ".onnx")
    if fmt == "tensorrt" and onnx_path == out:
        onnx_path = out.with_name(out.name + ".onnx")
    try:
        record = export_onnx(loaded.model, onnx_path, max_batch=max_batch)
    except ExportError as e:
        print(f"hmr-ros export: {e}", file=sys.stderr)
        return 1
    size_mb = record.path.stat().st_size / 1e6
    print(f"wrote {record.path} ({size_mb:.1f} MB, opset {record.opset}, input "
          f"{record.input_name} (B, 3, {record.input_size}, {record.input_size}), "
          f"outputs {', '.join(record.output_names)})")
    print(f"wrote {record.names_path} ({len(record.names)} weights mapped to initializers)")
    if fmt == "onnx":
        return 0
    try:
        build = export_tensorrt(record.path, out, fp16=bool(args.fp16), max_batch=max_batch)
    except TensorRTUnavailable as e:  # pragma: no cover - checked above
        print(f"hmr-ros export: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"hmr-ros export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {build.engine_path} (TensorRT {build.trt_version}, "
          f"{'fp16' if build.fp16 else 'fp32'}, batch 1..{build.max_batch}, refittable, "
          f"{build.seconds:.1f} s)")
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the regressor to ONNX or a TensorRT engine")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("--weights", default="", help="checkpoint (default: bundled regressor)")
    p.add_argument("--out", required=True, help="output .onnx or .engine path")
    p.add_argument("--batch", type=int, default=1, help="maximum batch (people per call)")
    p.add_argument("--fp16", action="store_true", help="TensorRT: build in half precision")
    p.set_defaults(handler=_export)
