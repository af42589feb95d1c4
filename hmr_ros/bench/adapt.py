"""`hmr-ros bench adapt`: BOA's ablation on the synthetic target domains.

Methods: frozen (none), B1 frame-wise L_F, B3 joint L_F + L_T, two-stage, BOA first order and
BOA second order; MPJPE, PA-MPJPE, PVE (mm), ACCEL (mm/frame^2), adaptation steps per second;
and the inference latency p50/p95 on a stream paced at camera rate, with and without the
adaptation worker running in the background. Writes JSON, a markdown table and a plot.

Streams are rendered once per (domain, seed) and cached under `runs/cache/` (npz); every method
then runs in lock-step (`hmr_ros.stream.runner.run_online`, protocol `before` by default:
each frame is predicted before the model adapts on it), so results are reproducible. Tune with
one set of seeds, report with another. The table and the plot: `adapt_report.py`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..jsonio import write_json
from ..provenance import provenance
from .adapt_report import LABELS, format_table, plot_ablation
from .spread import bootstrap_mean

log = logging.getLogger("hmr_ros")

ABLATION = ("none", "framewise", "joint", "two_stage", "boa_1st", "boa_2nd")
METRICS = ("mpjpe", "pa_mpjpe", "pve", "accel")


def cache_name(domain: str, seed: int, duration: float) -> str:
    """File name of a stream's cache. A domain given as a YAML path is named by its stem and a
    hash of its content, so that the cache stays inside the cache folder for any path and an
    edited YAML does not reuse the old frames."""
    path = Path(domain)
    if path.suffix in (".yaml", ".yml"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        domain = f"{path.stem}-{digest}"
    return f"{domain}_s{seed}_{duration:g}s.npz"


def stream_frames(domain: str, seed: int, duration: float, cache: Path | None = None):
    """The frames of one synthetic stream, rendered once and cached under `cache` as npz
    (`data.frame_cache`: arrays and JSON, nothing unpickled)."""
    from ..data.frame_cache import FrameCacheError, load_frames, save_frames
    from ..world.domain import load_domain
    from ..world.scene import SyntheticSequence

    path = cache / cache_name(domain, seed, duration) if cache else None
    if path is not None and path.exists():
        try:
            return load_frames(path)
        except FrameCacheError as err:  # foreign, truncated or older: render it again
            log.warning("%s; rendering the stream again", err)
    seq = SyntheticSequence(load_domain(domain), seed=seed, duration_s=duration)
    frames = [seq.frame(i).frame for i in range(len(seq))]
    if path is not None:
        save_frames(path, frames)
    return frames


def _job(args: tuple) -> dict:
    """One stream through the pipeline: (domain, seed, duration, method, cfg, protocol, cache
    [, limit]) -> its summary, per-frame errors and the worker's counts. `limit` keeps only
    the stream's first frames (`bench tto` scores the first seconds of the cached streams)."""
    domain, seed, duration, method, cfg, protocol, cache = args[:7]
    limit = args[7] if len(args) > 7 else None
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from ..adapt.augment import DapaSupervision
    from ..eval.evaluate import StreamEvaluator
    from ..pipeline import build_pipeline
    from ..source_replay import replay_for
    from ..stream.runner import run_online

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    frames = stream_frames(domain, seed, duration, Path(cache) if cache else None)[:limit]
    cfg = dataclasses.replace(cfg, adapt=dataclasses.replace(cfg.adapt, method=method))
    pipeline = build_pipeline(cfg, adapt=method != "none", start=False,
                              replay=replay_for(cfg, method != "none"))
    ev = StreamEvaluator(pipeline.body)
    step_time = 0.0
    worker = pipeline.adaptation
    if worker is not None:
        real = worker.run_pending

        def timed() -> int:
            nonlocal step_time
            t = time.perf_counter()
            n = real()
            step_time += time.perf_counter() - t
            return n

        worker.run_pending = timed
    index, mpj, pa = [], [], []  # per scored frame (the frame's mean over its people)
    for frame, result in run_online(pipeline, frames, protocol):
        vals = ev.add(frame, result)
        if "pa_mpjpe" in vals:
            index.append(frame.index)
            mpj.append(vals["mpjpe"])
            pa.append(vals["pa_mpjpe"])
    out = ev.summary()
    out["steps"] = worker.steps if worker else 0
    out["rollbacks"] = worker.rollbacks if worker else 0
    out["steps_per_second"] = (worker.steps / step_time) if worker and step_time > 0 else 0.0
    out["per_frame_pa_mpjpe"] = ev.report.values("pa_mpjpe").tolist()
    out["per_frame"] = {"index": index, "mpjpe": mpj, "pa_mpjpe": pa}
    # DAPA's cost on the adaptation thread (observe + render one synthetic batch), per batch.
    dapa = worker.augmenter(DapaSupervision) if worker is not None else None
    dapa_ms = list(dapa.ms) if dapa is not None else []
    out["dapa_ms_per_batch"] = float(np.median(dapa_ms)) if dapa_ms else 0.0
    pipeline.close()
    return {"domain": domain, "seed": seed, "method": method, **out}


def _aggregate(rows: list[dict]) -> dict:
    """Means over seeds, the per-seed values (in seed order) and, for the errors, the 95%
    bootstrap interval of the mean over seeds (`spread.bootstrap_mean`)."""
    rows = sorted(rows, key=lambda r: r["seed"])  # a pool returns them in any order
    agg: dict = {}
    for key in METRICS + ("detected", "steps_per_second"):
        vals = [r[key] for r in rows if np.isfinite(r.get(key, np.nan))]
        agg[key] = float(np.mean(vals)) if vals else float("nan")
    agg["rollbacks"] = int(sum(r["rollbacks"] for r in rows))
    agg["steps"] = int(sum(r["steps"] for r in rows))
    agg["seeds"] = [r["seed"] for r in rows]
    agg["per_seed"] = {key: [float(r.get(key, np.nan)) for r in rows]
                       for key in METRICS + ("rollbacks",)}
    agg["interval"] = {key: bootstrap_mean(agg["per_seed"][key]).as_dict() for key in METRICS}
    return agg


def latency_with_and_without_worker(domain: str, seed: int, duration: float,
                                    cfg: PipelineConfig, method: str, cache: Path | None
                                    ) -> dict:
    """Inference latency on a stream paced at the domain's frame rate: frozen, then with the
    adaptation worker adapting in the background (schedule 'latest')."""
    import torch

    from ..eval.evaluate import StreamEvaluator
    from ..pipeline import build_pipeline
    from ..source_replay import replay_for
    from ..world.domain import load_domain

    torch.set_num_threads(1)
    frames = stream_frames(domain, seed, duration, cache)
    period = 1.0 / load_domain(domain).fps
    out = {}
    for label, adapt in (("without_worker", False), ("with_worker", True)):
        c = dataclasses.replace(cfg, adapt=dataclasses.replace(cfg.adapt, method=method,
                                                               schedule="latest"))
        pipeline = build_pipeline(c, adapt=adapt, start=adapt, replay=replay_for(c, adapt))
        ev = StreamEvaluator(pipeline.body)
        lat, results = [], []
        start = time.perf_counter()
        for k, frame in enumerate(frames):
            # Pace like a camera: never ahead of the stream's clock.
            wait = start + k * period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            results.append(pipeline.process(frame))
            lat.append(results[-1].latency_ms)
        wall = time.perf_counter() - start
        for frame, result in zip(frames, results):  # scored after the paced loop
            ev.add(frame, result)
        errors = ev.summary()
        steps = pipeline.adaptation.steps if pipeline.adaptation else 0
        used = pipeline.adaptation.samples_used if pipeline.adaptation else 0
        pipeline.close()
        lat = np.asarray(lat[5:])  # skip warm-up
        out[label] = {"p50_ms": float(np.percentile(lat, 50)),
                      "p95_ms": float(np.percentile(lat, 95)),
                      "mean_ms": float(lat.mean()), "adaptation_steps": steps,
                      "frames": len(frames), "wall_s": wall,
                      # what a robot gets: accepted steps per second of stream time,
                      # beside inference at camera rate
                      "background_steps_per_second": steps / wall,
                      # samples that entered a step per second of stream: how much of what
                      # the camera delivered adaptation used
                      "samples_used": used,
                      "frames_used_per_second": used / (len(frames) * period),
                      "input_fps": 1.0 / period,
                      "achieved_fps": len(frames) / wall,
                      # the errors a robot gets: each frame predicted with the weights the
                      # worker had published by then (timing-dependent, unlike lock-step)
                      **{k: float(errors[k]) for k in METRICS if k in errors}}
    out["p95_ratio"] = out["with_worker"]["p95_ms"] / out["without_worker"]["p95_ms"]
    out["p50_ratio"] = out["with_worker"]["p50_ms"] / out["without_worker"]["p50_ms"]
    out["background_steps_per_second"] = out["with_worker"]["background_steps_per_second"]
    out["frames_used_per_second"] = out["with_worker"]["frames_used_per_second"]
    out["domain"], out["seed"], out["method"] = domain, seed, method
    out["scope"] = cfg.adapt.scope
    return out


def background(domains: list[str], seeds: list[int], duration: float, method: str,
               cfg: PipelineConfig, out_dir: Path, cache: Path | None, tag: str = "",
               repeats: int = 1) -> dict:
    """`bench adapt --background-only`: for every stream (and `repeats` times each), the
    inference latency with and without the worker and the worker's steps per second beside
    camera-rate inference. Timing depends on the machine's load, the errors do not: these are
    kept apart from the (deterministic) lock-step ablation."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for d in domains:
        for s in seeds:
            # The same stream and config in lock-step (each frame predicted, then adapted on):
            # what real time is measured against. Deterministic, so once per stream.
            lock = _job((d, s, duration, method, cfg, "before", str(cache) if cache else None))
            for r in range(repeats):
                row = latency_with_and_without_worker(d, s, duration, cfg, method, cache)
                row["repeat"] = r
                row["lockstep"] = {m: float(lock[m]) for m in METRICS}
                row["realtime_lockstep_ratio"] = (row["with_worker"]["pa_mpjpe"]
                                                  / lock["pa_mpjpe"])
                runs.append(row)
                print(f"  {d:10s} seed {s:5d} {cfg.adapt.scope:12s} real-time PA-MPJPE "
                      f"{row['with_worker']['pa_mpjpe']:6.1f} (frozen "
                      f"{row['without_worker']['pa_mpjpe']:6.1f})  background steps/s "
                      f"{row['background_steps_per_second']:5.2f}  inference p95 "
                      f"{row['with_worker']['p95_ms']:6.1f} / "
                      f"{row['without_worker']['p95_ms']:6.1f} ms (x{row['p95_ratio']:.2f})  "
                      f"lock-step {row['lockstep']['pa_mpjpe']:6.1f} "
                      f"(x{row['realtime_lockstep_ratio']:.3f})  frames used/s "
                      f"{row['frames_used_per_second']:5.1f}", flush=True)
    keys = ("background_steps_per_second", "frames_used_per_second", "p95_ratio",
            "p50_ratio")
    summary = {k: float(np.median([r[k] for r in runs])) for k in keys}
    # Real-time errors per domain: the mean over its streams (and repeats).
    summary["realtime"] = {d: {m: float(np.mean([r["with_worker"][m] for r in runs
                                                 if r["domain"] == d]))
                               for m in METRICS} for d in domains}
    summary["lockstep"] = {d: {m: float(np.mean([r["lockstep"][m] for r in runs
                                                 if r["domain"] == d]))
                               for m in METRICS} for d in domains}
    summary["realtime_lockstep_ratio"] = {
        d: summary["realtime"][d]["pa_mpjpe"] / summary["lockstep"][d]["pa_mpjpe"]
        for d in domains}
    payload = {"benchmark": "adapt_background", "method": method, "scope": cfg.adapt.scope,
               "duration_s": duration, "domains": domains, "seeds": seeds,
               "repeats": repeats, "config": dataclasses.asdict(cfg.adapt),
               "median": summary, "runs": runs, **provenance()}
    suffix = f"_{tag}" if tag else ""
    write_json(out_dir / f"adapt_background{suffix}.json", payload)
    print(f"bench adapt background ({method}, scope {cfg.adapt.scope}): median "
          f"{summary['background_steps_per_second']:.2f} steps/s, "
          f"{summary['frames_used_per_second']:.1f} frames used/s, inference p95 ratio "
          f"{summary['p95_ratio']:.2f} over {len(runs)} runs; real time / lock-step "
          f"PA-MPJPE " + ", ".join(f"{d} {v:.3f}"
                                   for d, v in summary["realtime_lockstep_ratio"].items()))
    return payload


def run(domains: list[str], seeds: list[int], duration: float, methods: list[str],
        cfg: PipelineConfig, protocol: str, out_dir: Path, workers: int = 2,
        latency: bool = True, cache: Path | None = Path("runs/cache"),
        tag: str = "") -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for d in domains:  # render (and cache) every stream once, up front
        for s in seeds:
            stream_frames(d, s, duration, cache)
    jobs = [(d, s, duration, m, cfg, protocol, str(cache) if cache else None)
            for d in domains for m in methods for s in seeds]
    rows: list[dict] = []
    print(f"bench adapt: {len(jobs)} runs ({len(domains)} domains x {len(methods)} methods x "
          f"{len(seeds)} seeds, {duration:g} s each, protocol {protocol})", flush=True)
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for row in pool.imap_unordered(_job, jobs):
                rows.append(row)
                _say(row)
    else:
        for job in jobs:
            rows.append(_job(job))
            _say(rows[-1])
    results: dict = {}
    for d in domains:
        results[d] = {m: _aggregate([r for r in rows if r["domain"] == d and r["method"] == m])
                      for m in methods}
    payload = {"benchmark": "adapt", "protocol": protocol, "seeds": seeds,
               "duration_s": duration, "config": dataclasses.asdict(cfg.adapt),
               "results": results, "runs": rows, **provenance()}
    if latency:
        method = "boa_2nd" if "boa_2nd" in methods else methods[-1]
        payload["latency"] = latency_with_and_without_worker(domains[0], seeds[0], duration,
                                                             cfg, method, cache)
    payload["elapsed_s"] = time.perf_counter() - t0
    suffix = f"_{tag}" if tag else ""
    write_json(out_dir / f"adapt{suffix}.json", payload)
    table = format_table(payload)
    (out_dir / f"adapt{suffix}.md").write_text(table + "\n")
    print(table)
    plot_ablation(payload, out_dir / f"adapt{suffix}.png")
    return payload


def _say(row: dict) -> None:
    print(f"  {row['domain']:10s} seed {row['seed']:5d} {LABELS[row['method']]:16s} "
          f"PA-MPJPE {row['pa_mpjpe']:6.1f}  MPJPE {row['mpjpe']:6.1f}  "
          f"steps/s {row['steps_per_second']:5.1f}  rollbacks {row['rollbacks']}", flush=True)


def main(args, cfg: PipelineConfig) -> dict:
    """`hmr-ros bench adapt` with the parsed arguments and the configuration they give."""
    methods = args.methods or list(ABLATION)
    unknown = sorted(set(methods) - set(ABLATION))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {ABLATION}")
    if args.background_only:
        method = "boa_2nd" if "boa_2nd" in methods else methods[-1]
        return background(args.domains, args.seeds, args.duration, method, cfg,
                          Path(args.out_dir), Path(args.cache) if args.cache else None,
                          tag=args.tag, repeats=args.repeats)
    return run(args.domains, args.seeds, args.duration, methods, cfg, args.protocol,
               Path(args.out_dir), workers=args.workers, latency=not args.no_latency,
               cache=Path(args.cache) if args.cache else None, tag=args.tag)


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
