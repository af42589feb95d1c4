"""`hmr-ros bench infer`: latency and throughput of the inference backends.

For every backend available here (torch always; onnxruntime when importable; tensorrt when
importable and CUDA is available), every regressor preset and every batch size (people per
call), two figures:

- regressor: `backend.predict(crops)` alone, uint8 crops (B, R, R, 3) in, SMPL parameters out;
- frame: what `Pipeline.process` does with the crops of one frame: predict, crop camera to a
  camera-frame translation, body model forward (vertices), axis-angle conversion, and packing
  into an `hmr_ros/SMPLBodyArray` message with the rosbags factory. Cropping and detection are
  not included (they do not depend on the backend).

Weights are random (latency does not depend on their values). Throughput is people per
second at the median latency of a call, batch * 1000 / p50_ms: on a shared machine a few
outliers among a short run move the mean a lot (the mean-based figure is in the JSON too).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..body import BodyModel
from ..data.frame import BodyParams, CameraModel, PersonEstimate
from ..geometry import crop_cam_to_translation, matrix_to_axis_angle
from ..jsonio import write_json
from ..messages.bodies import bodies_to_msg
from ..messages.definitions import hmr_typestore
from ..messages.factory import RosbagsFactory
from ..model.backends import (
    Backend,
    BackendUnavailable,
    OnnxRuntimeBackend,
    TensorRTBackend,
    TorchBackend,
)
from ..model.config import PRESETS
from ..model.hmr import HMR
from ..provenance import footnote, provenance
from .timing import Timing, time_calls

DEFAULT_OUT = "bench/results/infer_cpu.json"
DEFAULT_PRESETS = ("hmr_small", "hmr_r50")
ALL_BACKENDS = ("torch", "onnxruntime", "tensorrt")


def available_backends(device: str) -> dict[str, str | None]:
    """{backend: None if it can run here, else the reason it cannot}."""
    out: dict[str, str | None] = {"torch": None}
    if device.startswith("cuda") and not torch.cuda.is_available():
        out["torch"] = "CUDA is not available"
    out["onnxruntime"] = (None if importlib.util.find_spec("onnxruntime") is not None
                          else "onnxruntime is not installed")
    if importlib.util.find_spec("tensorrt") is None:
        out["tensorrt"] = "TensorRT is not installed"
    elif not torch.cuda.is_available():
        out["tensorrt"] = "CUDA is not available"
    else:
        out["tensorrt"] = None
    return out


def make(name: str, model: HMR, device: str, threads: int, max_batch: int) -> Backend:
    if name == "torch":
        return TorchBackend(model, device=device)
    if name == "onnxruntime":
        # A temporary export folder: the benchmark leaves no cache behind.
        return OnnxRuntimeBackend(model, device=device, threads=threads,
                                  max_batch=max(max_batch, 2))
    if name == "tensorrt":
        return TensorRTBackend(model, max_batch=max_batch)
    raise ValueError(f"unknown backend {name!r}")


class FramePath:
    """The per-frame work after cropping, as `Pipeline.process` does it (see module doc).

    boxes: (B, 3) [cx, cy, size] crop boxes in pixels of a 640x480 image.
    """

    def __init__(self, backend: Backend, body: BodyModel, model_name: str, batch: int) -> None:
        self.backend = backend
        self.body = body
        self.model_name = model_name
        self.factory = RosbagsFactory(hmr_typestore())
        self.camera = CameraModel.from_focal(525.0, 640, 480)
        rng = np.random.default_rng(batch)
        self.boxes = np.stack([np.array([rng.uniform(150, 490), rng.uniform(150, 330),
                                         rng.uniform(120, 300)]) for _ in range(batch)])
        self.K = torch.as_tensor(self.camera.K, dtype=torch.float32)
        self.box_t = torch.as_tensor(self.boxes, dtype=torch.float32)
        self.stamp_ns = 0

    def __call__(self, crops: np.ndarray) -> Any:
        out = self.backend.predict(crops)
        version = self.backend.version
        transl = crop_cam_to_translation(out.cam, self.box_t, self.K)
        with torch.inference_mode():
            body = self.body.forward_rotmat(out.rotmat, out.betas, transl)
        aa = matrix_to_axis_angle(out.rotmat).numpy()
        people = []
        for i in range(crops.shape[0]):
            params = BodyParams(betas=out.betas[i].numpy().copy(), global_orient=aa[i, 0].copy(),
                                body_pose=aa[i, 1:].copy(), transl=transl[i].numpy().copy())
            people.append(PersonEstimate(
                id=i, box=self.boxes[i], cam=out.cam[i].numpy().copy(), params=params,
                joints=body.joints[i].numpy(), points=body.points[i].numpy(),
                vertices=body.vertices[i].numpy(), keypoints=None, confidence=1.0))
        self.stamp_ns += 33_000_000
        return bodies_to_msg(self.factory, people, self.stamp_ns, self.camera.frame_id,
                             version, self.model_name, with_vertices=True)


def _row(backend: str, preset: str, batch: int, setup_s: float, regressor: Timing,
         frame: Timing) -> dict[str, Any]:
    return {
        "backend": backend, "preset": preset, "batch": batch, "setup_s": round(setup_s, 2),
        "regressor": regressor,
        "regressor_people_per_s": batch * 1000.0 / regressor.p50_ms,
        "regressor_people_per_s_mean": batch * 1000.0 / regressor.mean_ms,
        "frame": frame,
        "frame_people_per_s": batch * 1000.0 / frame.p50_ms,
        "frame_people_per_s_mean": batch * 1000.0 / frame.mean_ms,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | preset | batch | regressor p50 ms | p95 ms | people/s "
        "| frame p50 ms | p95 ms | people/s |",  # people/s at the p50 latency
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        reg, fr = r["regressor"], r["frame"]
        lines.append(
            f"| {r['backend']} | {r['preset']} | {r['batch']} | {reg.p50_ms:.1f} | "
            f"{reg.p95_ms:.1f} | {r['regressor_people_per_s']:.1f} | {fr.p50_ms:.1f} | "
            f"{fr.p95_ms:.1f} | {r['frame_people_per_s']:.1f} |")
    return "\n".join(lines)


def run(out: str | Path = DEFAULT_OUT, backends: list[str] | None = None,
        presets: list[str] | None = None, batches: list[int] | None = None,
        repeats: int = 30, threads: int = 1, device: str = "cpu",
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure, print a markdown table, write JSON to `out`; returns the JSON payload."""
    torch.set_num_threads(threads)
    batches = sorted(set(batches or [1, 4]))
    presets = list(presets or DEFAULT_PRESETS)
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"unknown preset(s) {unknown}; known: {sorted(PRESETS)}")
    status = available_backends(device)
    wanted = list(backends or ALL_BACKENDS)
    bad = [b for b in wanted if b not in ALL_BACKENDS]
    if bad:
        raise ValueError(f"unknown backend(s) {bad}; known: {', '.join(ALL_BACKENDS)}")
    skipped = {b: status[b] for b in wanted if status[b] is not None}
    for name, reason in skipped.items():
        log(f"skipping {name}: {reason}")
    body = BodyModel()
    rows: list[dict[str, Any]] = []
    for preset in presets:
        torch.manual_seed(0)
        model = HMR(PRESETS[preset]).eval()
        size = model.config.input_size
        for name in (b for b in wanted if b not in skipped):
            t0 = time.perf_counter()
            try:
                backend = make(name, model, device, threads, max(batches))
            except BackendUnavailable as e:
                skipped[name] = str(e)
                log(f"skipping {name}: {e}")
                continue
            setup_s = time.perf_counter() - t0
            for batch in batches:
                crops = np.random.default_rng(batch).integers(
                    0, 256, (batch, size, size, 3), dtype=np.uint8)
                reg = time_calls(lambda b=backend, c=crops: b.predict(c), repeats=repeats)
                path = FramePath(backend, body, preset, batch)
                frame = time_calls(lambda p=path, c=crops: p(c), repeats=repeats)
                row = _row(name, preset, batch, setup_s, reg, frame)
                rows.append(row)
                log(f"{name:12s} {preset:10s} batch {batch}: regressor p50 {reg.p50_ms:8.1f} ms, "
                    f"frame p50 {frame.p50_ms:8.1f} ms, "
                    f"{row['frame_people_per_s']:7.1f} people/s")
            del backend
    prov = provenance()
    table = markdown_table(rows) + "\n\n" + footnote(prov["environment"])
    log("")
    log(table)
    payload = {
        "benchmark": "infer",
        **prov,
        "settings": {"repeats": repeats, "warmup": 3, "threads": threads, "device": device,
                     "presets": presets, "batches": batches, "body_vertices": body.num_vertices},
        "skipped": skipped,
        "rows": rows,
        "table_markdown": table,
    }
    path = write_json(out, payload)
    log(f"wrote {path}")
    return payload


def main(args: argparse.Namespace) -> int:
    """`hmr-ros bench infer` (arguments parsed in `hmr_ros/cli.py`)."""
    run(out=args.out or DEFAULT_OUT, backends=args.backends or None,
        presets=args.presets or None, batches=list(args.batch) if args.batch else None,
        repeats=args.repeats, threads=args.threads, device=args.device)
    return 0
