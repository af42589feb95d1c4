"""`hmr-ros bench temporal`: the temporal refinement stage on the synthetic target domains.

One lock-step pass per (domain, seed, method) (protocol `before`, as `bench adapt`): the
pipeline's per-frame results go to a fan-out of temporal stages, one per mode (causal,
lookahead 2, lookahead 4, and the causal global-only / local-only ablation), all fed the
same features, so every row of one method sees the same regressor outputs and, for BOA, the
same adaptation steps. Each mode's results are scored by its own `StreamEvaluator` (MPJPE,
PA-MPJPE, PVE, ACCEL); the time each stage takes per frame is recorded (the ms it adds to
the inference thread). Means over seeds; JSON and a markdown table in bench/results/.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..jsonio import write_json
from ..provenance import footnote, provenance

METRICS = ("mpjpe", "pa_mpjpe", "pve", "accel")
# mode name -> (lookahead d, use_global, use_local, history restarts at new weights)
MODES = {"causal": (0, True, True, False), "lookahead2": (2, True, True, False),
         "lookahead4": (4, True, True, False), "causal_global_only": (0, True, False, False),
         "causal_local_only": (0, False, True, False), "causal_reset": (0, True, True, True)}
LABELS = {"none": "frozen", "boa_2nd": "BOA 2nd order"}


class FanOut:
    """Looks like a causal `TemporalStage` to the pipeline (it returns the per-frame result
    unchanged) and feeds every mode's stage the same frames and features."""

    delay = 0

    def __init__(self, stages: dict) -> None:
        self.stages = stages
        self.outputs: dict[str, list] = {name: [] for name in stages}
        self.ms: dict[str, list[float]] = {name: [] for name in stages}

    def push(self, frame, result, feats):
        for name, stage in self.stages.items():
            t = time.perf_counter()
            self.outputs[name].extend(stage.push(frame, result, feats))
            self.ms[name].append((time.perf_counter() - t) * 1e3)
        return [(frame, result)]

    def flush(self):
        for name, stage in self.stages.items():
            self.outputs[name].extend(stage.flush())
        return []


def _job(args: tuple) -> dict:
    domain, seed, duration, method, cfg, cache, weights, modes, max_frames = args
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from ..eval.evaluate import StreamEvaluator
    from ..pipeline import build_pipeline
    from ..source_replay import replay_for
    from ..stream.runner import run_online
    from ..temporal.checkpoint import load_refiner
    from ..temporal.refine import WindowSpec
    from ..temporal.stage import TemporalStage
    from .adapt import stream_frames

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    frames = stream_frames(domain, seed, duration, Path(cache) if cache else None)
    if max_frames:
        frames = frames[:max_frames]  # the first frames of the cached stream
    cfg = dataclasses.replace(cfg, adapt=dataclasses.replace(cfg.adapt, method=method))
    pipeline = build_pipeline(cfg, adapt=method != "none", start=False,
                              replay=replay_for(cfg, method != "none"))
    refiner, _ = load_refiner(weights or None, pipeline.body)
    t = cfg.temporal
    stages = {}
    for name in modes:
        d, g, loc, reset = MODES[name]
        spec = WindowSpec(past=t.window - 1, local_past=t.local_window - 1, future=d)
        stages[name] = TemporalStage(refiner, pipeline.body, spec, vertices=True,
                                     use_global=g, use_local=loc, reset_on_new_weights=reset)
    fan = FanOut(stages)
    pipeline.temporal = fan  # the torch backend gives the features (checked in Pipeline)
    evs = {"per_frame": StreamEvaluator(pipeline.body),
           **{n: StreamEvaluator(pipeline.body) for n in modes}}
    regress_ms = []
    for frame, result in run_online(pipeline, frames, "before"):
        evs["per_frame"].add(frame, result)
        regress_ms.append(result.latency_ms)
    for name in modes:
        for frame, result in fan.outputs[name]:
            evs[name].add(frame, result)
    worker = pipeline.adaptation
    rows = {}
    for name, ev in evs.items():
        s = ev.summary()
        rows[name] = {k: s.get(k, float("nan")) for k in METRICS + ("detected",)}
        rows[name]["frames"] = len(fan.outputs[name]) if name in fan.outputs else len(frames)
        ms = fan.ms.get(name)
        if ms:
            rows[name]["ms_p50"] = float(np.percentile(ms, 50))
            rows[name]["ms_mean"] = float(np.mean(ms))
    out = {"domain": domain, "seed": seed, "method": method, "modes": rows,
           "regress_ms_p50": float(np.percentile(regress_ms, 50)),
           "steps": worker.steps if worker else 0,
           "rollbacks": worker.rollbacks if worker else 0}
    pipeline.close()
    return out


def aggregate(jobs: list[dict]) -> dict:
    """{domain: {method: {mode: means over seeds}}}."""
    out: dict = {}
    for job in jobs:
        dom = out.setdefault(job["domain"], {}).setdefault(job["method"], {})
        for mode, vals in job["modes"].items():
            dom.setdefault(mode, []).append(vals)
    for dom in out.values():
        for modes in dom.values():
            for mode, rows in list(modes.items()):
                keys = sorted({k for r in rows for k in r})
                modes[mode] = {k: float(np.nanmean([r.get(k, np.nan) for r in rows]))
                               for k in keys}
                modes[mode]["per_seed_accel"] = [r.get("accel") for r in rows]
                modes[mode]["per_seed_pa_mpjpe"] = [r.get("pa_mpjpe") for r in rows]
    return out


def table(results: dict, env: dict | None = None) -> str:
    lines = []
    for domain, methods in results.items():
        lines += [f"`{domain}`:", "",
                  "| method | temporal | MPJPE | PA-MPJPE | PVE | ACCEL | ms/frame (stage) |",
                  "|---|---|---|---|---|---|---|"]
        for method, modes in methods.items():
            for mode, r in modes.items():
                ms = f"{r['ms_p50']:.1f}" if "ms_p50" in r else ""
                label = "per-frame (off)" if mode == "per_frame" else mode.replace("_", " ")
                lines.append(f"| {LABELS.get(method, method)} | {label} | {r['mpjpe']:.1f} | "
                             f"{r['pa_mpjpe']:.1f} | {r['pve']:.1f} | {r['accel']:.1f} | {ms} |")
        lines.append("")
    lines.append("(mm; ACCEL mm/frame^2; means over seeds; ms: median time of the stage per "
                 "frame on the inference thread, one torch thread, on a shared 2-core CPU)")
    if env:
        lines.append(footnote(env))
    return "\n".join(lines)


def main(args, cfg: PipelineConfig) -> dict:
    # causal_reset equals causal without adaptation (one model version): BOA rows only.
    modes = tuple(args.modes or MODES)
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r}; known: {sorted(MODES)}")
    jobs = [(d, s, args.duration, m, cfg, args.cache, args.refiner, modes, args.max_frames)
            for m in args.methods for d in args.domains for s in args.seeds]
    t0 = time.time()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            done = pool.map(_job, jobs, chunksize=1)
    else:
        done = [_job(j) for j in jobs]
    results = aggregate(done)
    env = provenance()
    tag = f"_{args.tag}" if args.tag else ""
    out = Path(args.out_dir) / f"temporal{tag}.json"
    write_json(out, {"benchmark": "temporal", "domains": args.domains, "seeds": args.seeds,
                     "duration_s": args.duration, "max_frames": args.max_frames,
                     "methods": args.methods, "modes": modes,
                     "refiner": args.refiner or "weights/tar_small_h36m.pt",
                     "protocol": "before", "wall_s": round(time.time() - t0, 1),
                     "results": results, "jobs": done, **env})
    md = table(results, env.get("environment"))
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return results
