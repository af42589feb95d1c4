"""`hmr-ros demo`: the embedded default, with no download.

Renders a short `pw3d_like` stream (handheld, low camera, cluttered outdoor scene: a domain
the bundled regressor never saw), runs the frozen regressor and a BOA-adapted copy side by
side on it, prints their running PA-MPJPE, and writes `demo.mp4` (frozen left, adapted right),
`demo.png` (a strip of frames) and `demo.json` into the output folder.

By default the demo runs the way a robot does: the stream plays at its frame rate and the
adapted model adapts in the background, each frame predicted with whatever weights the worker
has published by then. Rendering the synthetic camera (about 130 ms a frame here) is not part
of that: the frames, and the frozen model's predictions on them (they do not depend on time),
are made first, in `render_workers` processes; the overlays are drawn after the play. With
`lockstep` every frame is predicted, then adapted on, in turn (protocol `before`,
deterministic, one step per frame).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from .config import PipelineConfig
from .data.frame import Frame, FrameResult
from .eval.evaluate import StreamEvaluator
from .eval.overlay import FrameSink, draw_people
from .jsonio import write_json
from .pipeline import Pipeline, build_pipeline
from .progress import Progress
from .provenance import machine_info
from .source_replay import replay_for
from .stream.run import run_stream
from .stream.runner import StreamRunner
from .stream.sources import synthetic_frames
from .world.domain import load_domain
from .world.scene import SyntheticSequence


def _frozen_config(config: PipelineConfig) -> PipelineConfig:
    return dataclasses.replace(config, adapt=dataclasses.replace(config.adapt, enabled=False))


def _render_chunk(args: tuple) -> list[tuple[Frame, FrameResult]]:
    """Frames `indices` of the stream and the frozen model's results on them (one process).
    The frozen model keeps no state between frames, so each chunk is a piece of the stream
    on its own: the frames go straight to `Pipeline.process`."""
    domain, seed, seconds, config, indices = args
    import torch

    torch.set_num_threads(1)
    seq = SyntheticSequence(load_domain(domain), seed=seed, duration_s=seconds)
    frozen = build_pipeline(_frozen_config(config), adapt=False)
    out = [(f, frozen.process(f)) for f in (seq.frame(i).frame for i in indices)]
    frozen.close()
    return out


def render_with_frozen(domain: str, seed: int, seconds: float, config: PipelineConfig,
                       n_frames: int, workers: int = 2, progress: bool = True
                       ) -> list[tuple[Frame, FrameResult]]:
    """Every frame of the stream with the frozen model's result, in order. Frames are
    rendered independently (`SyntheticSequence.frame(i)`), so chunks can go to `workers`
    processes; the frozen pipeline keeps no state between frames."""
    size = 15  # frames per task: small enough for an even split and a moving progress bar
    chunks = [list(range(s, min(s + size, n_frames))) for s in range(0, n_frames, size)]
    tasks = [(domain, seed, seconds, config, c) for c in chunks]
    results: list[tuple[Frame, FrameResult]] = []
    with Progress(n_frames, "render", enabled=progress) as bar:
        if workers > 1 and len(chunks) > 1:
            with mp.get_context("spawn").Pool(min(workers, len(chunks))) as pool:
                for part in pool.imap(_render_chunk, tasks):
                    results += part
                    bar.update(len(part))
        else:
            for task in tasks:
                part = _render_chunk(task)
                results += part
                bar.update(len(part))
    return results


def _running_line(t: float, ev_f: StreamEvaluator, ev_a: StreamEvaluator) -> str:
    f, a = ev_f.report.means(), ev_a.report.means()
    return (f"  t={t:5.1f}s  running PA-MPJPE  frozen {f.get('pa_mpjpe', float('nan')):6.1f} mm"
            f"   adapted {a.get('pa_mpjpe', float('nan')):6.1f} mm")


def _play_realtime(adapted: Pipeline, rendered: list[tuple[Frame, FrameResult]], fps: float,
                   ev_f: StreamEvaluator, ev_a: StreamEvaluator) -> list[FrameResult]:
    """The adapted pipeline on the stream at its frame rate (never faster), adaptation in the
    background; the running errors printed once a second of stream."""
    runner = StreamRunner(adapted, None, "async", [ev_a])
    every = max(1, int(round(fps)))
    out: list[FrameResult] = []
    start = time.perf_counter()
    for k, (frame, res_a) in enumerate(run_stream(runner, (f for f, _ in rendered))):
        ev_f.add(frame, rendered[k][1])
        out.append(res_a)
        if (k + 1) % every == 0 or k + 1 == len(rendered):
            print(_running_line((k + 1) / fps, ev_f, ev_a), flush=True)
        wait = start + (k + 1) / fps - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    return out


def _play_lockstep(adapted: Pipeline, frozen: Pipeline, seq: SyntheticSequence, fps: float,
                   ev_f: StreamEvaluator, ev_a: StreamEvaluator, progress: bool
                   ) -> list[tuple[Frame, FrameResult, FrameResult]]:
    runner = StreamRunner(adapted, None, "before", [ev_a])
    every = max(1, int(round(fps)))
    out = []
    with Progress(len(seq), "demo", enabled=progress) as bar:
        for k, (frame, res_a) in enumerate(run_stream(runner, synthetic_frames(seq))):
            res_f = frozen.process(frame)  # the frozen twin on the same frame, for comparison
            ev_f.add(frame, res_f)
            out.append((frame, res_f, res_a))
            if (k + 1) % every == 0 or k + 1 == len(seq):
                print(_running_line((k + 1) / fps, ev_f, ev_a), flush=True)
            bar.update(1)
    return out


def _write_video(path: Path, played: list[tuple[Frame, FrameResult, FrameResult]], faces,
                 fps: float, progress: bool) -> Path | None:
    sink = FrameSink(path, fps=fps)
    with Progress(len(played), "video", enabled=progress) as bar:
        for frame, res_f, res_a in played:
            left = draw_people(frame.image, res_f.people, faces, frame.camera, label="frozen")
            right = draw_people(frame.image, res_a.people, faces, frame.camera,
                                label=f"adapted v{res_a.model_version}")
            sink.add(np.concatenate([left, right], axis=1))
            bar.update(1)
    return sink.close()


def demo(out_dir: str | Path = "runs/demo", seconds: float = 7.0, seed: int = 2024,
         domain: str = "pw3d_like", config: PipelineConfig | None = None,
         video: bool = True, progress: bool = True, lockstep: bool = False,
         render_workers: int = 2) -> dict:
    """Frozen vs adapted regressor on a synthetic stream; see the module docstring. Real
    time (the default) varies run to run with the machine's speed; `lockstep` does not."""
    config = config or PipelineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    d = load_domain(domain)
    seq = SyntheticSequence(d, seed=seed, duration_s=seconds)
    print(f"hmr-ros demo: {len(seq)} frames of {d.name} ({seq.camera.width}x"
          f"{seq.camera.height}, seed {seed}); frozen vs {config.adapt.method} adaptation "
          + ("in lock-step (each frame predicted, then adapted on)" if lockstep else
             f"in the background, the stream played at {d.fps:g} fps"), flush=True)
    timings: dict[str, float] = {}
    if lockstep:
        frozen = build_pipeline(_frozen_config(config), adapt=False)
        adapted = build_pipeline(config, adapt=True, start=False, body=frozen.body,
                                 replay=replay_for(config, True))
        ev_f, ev_a = StreamEvaluator(frozen.body), StreamEvaluator(adapted.body)
        t = time.perf_counter()
        played = _play_lockstep(adapted, frozen, seq, d.fps, ev_f, ev_a, progress)
        timings["play_s"] = time.perf_counter() - t
    else:
        t = time.perf_counter()
        rendered = render_with_frozen(domain, seed, seconds, config, len(seq), render_workers,
                                      progress)
        timings["render_s"] = time.perf_counter() - t
        print(f"rendered {len(rendered)} frames and the frozen model's estimates in "
              f"{timings['render_s']:.1f} s; playing at {d.fps:g} fps", flush=True)
        adapted = build_pipeline(config, adapt=True, start=False,
                                 replay=replay_for(config, True))
        ev_f, ev_a = StreamEvaluator(adapted.body), StreamEvaluator(adapted.body)
        t = time.perf_counter()
        results = _play_realtime(adapted, rendered, d.fps, ev_f, ev_a)
        timings["play_s"] = time.perf_counter() - t
        played = [(f, rf, ra) for (f, rf), ra in zip(rendered, results)]
    status = adapted.adaptation.status() if adapted.adaptation is not None else None
    adapted.close()
    video_path = None
    if video:
        t = time.perf_counter()
        video_path = _write_video(out / "demo.mp4", played, adapted.body.faces, d.fps, progress)
        timings["video_s"] = time.perf_counter() - t
    sf, sa = ev_f.summary(), ev_a.summary()
    elapsed = time.perf_counter() - t0
    summary = {"domain": d.name, "seed": seed, "frames": len(seq), "method": config.adapt.method,
               "protocol": "before" if lockstep else "async", "fps": d.fps,
               "frozen": sf, "adapted": sa, "elapsed_s": elapsed, "timings": timings,
               "adaptation": None if status is None else status.__dict__,
               "video": str(video_path) if video_path else None, "machine": machine_info()}
    write_json(out / "demo.json", summary)
    gain = 100.0 * (1.0 - sa["pa_mpjpe"] / sf["pa_mpjpe"]) if sf["pa_mpjpe"] > 0 else 0.0
    print(f"PA-MPJPE frozen {sf['pa_mpjpe']:.1f} mm -> adapted {sa['pa_mpjpe']:.1f} mm "
          f"({abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'}); "
          f"MPJPE {sf['mpjpe']:.1f} -> {sa['mpjpe']:.1f} mm")
    if status is not None:
        print(f"{status.steps} adaptation steps ({status.steps / timings['play_s']:.1f}/s), "
              f"{status.rollbacks} rollbacks, final weights v{status.version}; finished in "
              f"{elapsed:.0f} s ("
              + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in timings.items()) + ")")
    written = [out / "demo.json"] + ([video_path] if video_path else [])
    if video and (out / "demo.png").exists() and video_path != out / "demo.png":
        written.append(out / "demo.png")  # the strip of frames FrameSink writes beside it
    print("wrote " + ", ".join(str(p) for p in written))
    return summary
