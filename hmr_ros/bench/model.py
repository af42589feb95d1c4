"""`hmr-ros bench model`: parameter counts and CPU forward latency of the regressor presets and
of the body model, batch 1 (the figures the foundation issue asks for)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..body import BodyModel
from ..jsonio import write_json
from ..model import HMR, PRESETS
from ..provenance import provenance
from .timing import time_calls


def run(out: str | Path, presets: list[str] | None = None, repeats: int = 20,
        threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for name in presets or list(PRESETS):
        cfg = PRESETS[name]
        model = HMR(cfg).eval()
        x = torch.rand(1, 3, cfg.input_size, cfg.input_size)
        with torch.inference_mode():
            timing = time_calls(lambda m=model, x=x: m(x), repeats=repeats)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"preset": name, "input_size": cfg.input_size, "params": params,
                     "forward": timing})
        print(f"{name:10s} {params / 1e6:6.2f} M params  input {cfg.input_size:3d}  "
              f"forward p50 {timing.p50_ms:7.1f} ms  p95 {timing.p95_ms:7.1f} ms")
    body = BodyModel()
    rot = torch.eye(3).expand(1, 24, 3, 3)
    betas = torch.zeros(1, 10)
    with torch.inference_mode():
        body_timing = time_calls(lambda: body.forward_rotmat(rot, betas), repeats=repeats)
    print(f"body model ({body.num_vertices} vertices) forward p50 {body_timing.p50_ms:.2f} ms")
    payload = {"benchmark": "model", **provenance(), "presets": rows,
               "body_model": {"path": str(body.path), "vertices": body.num_vertices,
                              "forward": body_timing}}
    path = write_json(out, payload)
    print(f"wrote {path}")
    return payload
