"""`hmr-ros bench gpu`: one unattended run that says what this package does on an NVIDIA GPU.

Parts, each on its own (a part that fails or cannot run is recorded with the reason, and the
run goes on):

1. `environment`: torch's CUDA device, ONNX Runtime's providers, TensorRT's version.
2. `inference`: regressor and frame latency of torch CUDA, ONNX Runtime CUDA and TensorRT for
   `hmr_small` and `hmr_r50` (`bench infer` on `cuda`).
3. `refit`: a TensorRT engine refitted with adapted weights (a few real BOA steps), its
   outputs checked against torch with the same weights, and the refit's time.
4. `adapt`: BOA 2nd-order steps per second on the GPU for `hmr_small` and `hmr_r50`, lock-step
   on a short synthetic stream (scope `all` and the default scope).

Sized for a few minutes on one GPU (a budget per part; the TensorRT engine builds dominate).
It writes `bench/results/gpu.json` and `.md`, and prints a "could not" list at the end. On a
machine without CUDA every part says so and the run still succeeds: nothing in the test suite
needs a GPU.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PipelineConfig
from ..jsonio import write_json
from ..provenance import footnote, provenance
from .table import markdown_table

DEFAULT_OUT = Path("bench/results/gpu.json")
PRESETS = ("hmr_small", "hmr_r50")


class Skip(Exception):
    """A part that cannot run here (no CUDA, no TensorRT): recorded, not an error."""


def _environment() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        out["torch_cuda"] = torch.version.cuda
    try:
        import onnxruntime as ort
        out["onnxruntime"] = ort.__version__
        out["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError as err:
        out["onnxruntime"] = f"missing: {err}"
    try:
        import tensorrt
        out["tensorrt"] = tensorrt.__version__
    except ImportError as err:
        out["tensorrt"] = f"missing: {err}"
    return out


def _need_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise Skip("no CUDA device (torch.cuda.is_available() is False)")


def _inference(out: Path, repeats: int) -> dict[str, Any]:
    _need_cuda()
    from . import infer

    payload = infer.run(out=out.with_name(out.stem + "_infer.json"), presets=list(PRESETS),
                        batches=[1, 4], repeats=repeats, device="cuda")
    return {"rows": payload["rows"], "skipped": payload["skipped"]}


def _adapted_state(model, steps: int = 3, device: str = "cuda") -> dict:
    """The student's weights after `steps` real BOA steps on a short synthetic stream."""
    from ..pipeline import build_pipeline
    from ..stream.runner import run_online
    from .adapt import stream_frames

    with tempfile.TemporaryDirectory() as tmp:
        from ..model.checkpoint import save_checkpoint

        path = save_checkpoint(Path(tmp) / "model.pt", model)
        cfg = PipelineConfig()
        cfg = dataclasses.replace(
            cfg, inference=dataclasses.replace(cfg.inference, weights=str(path), device=device),
            adapt=dataclasses.replace(cfg.adapt, method="boa_2nd", schedule="every_frame"))
        pipeline = build_pipeline(cfg, adapt=True, start=False)
        frames = stream_frames("pw3d_like", 100, 1.0)
        for _ in run_online(pipeline, frames, "before"):
            if pipeline.adaptation.steps >= steps:
                break
        state = pipeline.adaptation.adapter.state_dict()
        done = pipeline.adaptation.steps
        pipeline.close()
    return {"state": state, "steps": done}


def _refit() -> dict[str, Any]:
    _need_cuda()
    import torch

    from ..model import HMR
    from ..model.backends import TorchBackend
    from ..model.errors import BackendUnavailable
    from ..model.weights import load_regressor

    try:
        from ..model.backends.tensorrt import TensorRTBackend
    except ImportError as err:
        raise Skip(f"TensorRT backend not importable: {err}") from err
    model = load_regressor(None).model.eval()
    try:
        t0 = time.perf_counter()
        trt_backend = TensorRTBackend(model, device="cuda")
        build_s = time.perf_counter() - t0
    except BackendUnavailable as err:
        raise Skip(str(err)) from err
    adapted = _adapted_state(model)
    state = {k: v.detach().cpu() for k, v in adapted["state"].items()}
    t0 = time.perf_counter()
    trt_backend.update_weights(state, 1)
    torch.cuda.synchronize()
    refit_s = time.perf_counter() - t0
    reference = HMR(model.config)
    reference.load_state_dict(state)
    torch_backend = TorchBackend(reference.eval(), device="cuda")
    crops = np.random.default_rng(0).integers(
        0, 256, (4, model.config.input_size, model.config.input_size, 3), dtype=np.uint8)
    a, b = trt_backend.predict(crops), torch_backend.predict(crops)
    source = TorchBackend(model, device="cuda").predict(crops)
    diff = {k: float((getattr(a, k) - getattr(b, k)).abs().max()) for k in ("rotmat", "betas",
                                                                           "cam")}
    moved = {k: float((getattr(b, k) - getattr(source, k)).abs().max()) for k in ("rotmat",
                                                                                 "cam")}
    return {"engine_build_s": build_s, "refit_s": refit_s, "adaptation_steps": adapted["steps"],
            "max_abs_diff_vs_torch": diff, "adapted_vs_source_max_abs": moved,
            "version": a.version, "ok": a.version == 1 and max(diff.values()) < 1e-2
            and max(moved.values()) > max(diff.values())}


def _adapt(duration: float, device: str = "cuda",
           presets: tuple[str, ...] = PRESETS) -> dict[str, Any]:
    if device.startswith("cuda"):
        _need_cuda()
    from ..model import HMR
    from ..model.checkpoint import save_checkpoint
    from ..model.config import PRESETS as MODEL_PRESETS
    from .adapt import _job

    rows = []
    default_scope = PipelineConfig().adapt.scope
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            weights = ""
            if preset != "hmr_small":  # no trained r50 ships; speed does not need training
                weights = str(save_checkpoint(Path(tmp) / f"{preset}.pt",
                                              HMR(MODEL_PRESETS[preset])))
            for scope in sorted({"all", default_scope}):
                cfg = PipelineConfig()
                cfg = dataclasses.replace(
                    cfg, inference=dataclasses.replace(cfg.inference, weights=weights,
                                                       device=device),
                    adapt=dataclasses.replace(cfg.adapt, scope=scope, worker=dataclasses.replace(
                        cfg.adapt.worker, device=device)))
                row = _job(("pw3d_like", 100, duration, "boa_2nd", cfg, "before", None))
                rows.append({"preset": preset, "scope": scope, "steps": row["steps"],
                             "steps_per_second": row["steps_per_second"],
                             "pa_mpjpe": row["pa_mpjpe"] if preset == "hmr_small" else None})
    return {"rows": rows, "duration_s": duration, "device": device}


def run(out: Path = DEFAULT_OUT, repeats: int = 30, duration: float = 3.0,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "environment": _environment,
        "inference": lambda: _inference(out, repeats),
        "refit": _refit,
        "adapt": lambda: _adapt(duration),
    }
    results: dict[str, Any] = {}
    could_not: dict[str, str] = {}
    for name, part in parts.items():
        t0 = time.perf_counter()
        log(f"bench gpu: {name} ...")
        try:
            results[name] = part()
        except Skip as why:
            could_not[name] = str(why)
        except Exception as err:  # unattended: say what failed, keep going
            could_not[name] = f"{type(err).__name__}: {err}"
            results[name] = {"traceback": traceback.format_exc()}
        results.setdefault(name, {})["seconds"] = time.perf_counter() - t0
        if name in could_not:
            log(f"bench gpu: {name}: could not: {could_not[name]}")
    payload = {"benchmark": "gpu", **provenance(), "results": results, "could_not": could_not}
    write_json(out, payload)
    table = format_table(payload)
    out.with_suffix(".md").write_text(table + "\n")
    log(table)
    log(f"wrote {out}")
    return payload


def format_table(payload: dict[str, Any]) -> str:
    r = payload["results"]
    env = r.get("environment", {})
    lines = ["# GPU readiness (`hmr-ros bench gpu`)", "",
             f"Device: {env.get('device', 'none')}; torch {env.get('torch')}, CUDA "
             f"{env.get('torch_cuda', '-')}, ONNX Runtime {env.get('onnxruntime')}, TensorRT "
             f"{env.get('tensorrt')}.", ""]
    rows = r.get("inference", {}).get("rows", [])
    if rows:
        lines += markdown_table(
            ["backend", "model", "batch", "regressor p50 (ms)", "frame p50 (ms)"],
            [[x["backend"], x["preset"], x["batch"], f"{x['regressor']['p50_ms']:.2f}",
              f"{x['frame']['p50_ms']:.2f}"] for x in rows])
        lines.append("")
    refit = r.get("refit", {})
    if "refit_s" in refit:
        lines += [f"TensorRT refit with adapted weights: {refit['refit_s'] * 1e3:.0f} ms "
                  f"(engine build {refit['engine_build_s']:.0f} s); max |TensorRT - torch| "
                  f"{max(refit['max_abs_diff_vs_torch'].values()):.2e}; ok: {refit['ok']}.", ""]
    rows = r.get("adapt", {}).get("rows", [])
    if rows:
        lines += markdown_table(["model", "scope", "BOA 2nd steps/s (lock-step)"],
                                [[x["preset"], x["scope"], f"{x['steps_per_second']:.1f}"]
                                 for x in rows])
        lines.append("")
    for name, why in payload["could_not"].items():
        lines.append(f"- could not run `{name}`: {why}")
    note = footnote(payload.get("environment"))
    if note:
        lines += ["", note]
    return "\n".join(lines)


def main(args) -> int:
    """`hmr-ros bench gpu` (arguments parsed in `hmr_ros/cli.py`)."""
    run(out=Path(args.out) if args.out else DEFAULT_OUT, repeats=args.repeats,
        duration=args.duration)
    return 0
