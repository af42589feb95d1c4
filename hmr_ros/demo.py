"""`hmr-ros demo`: the embedded default, with no download.

Renders a short `pw3d_like` stream (handheld, low camera, cluttered outdoor scene: a domain
the bundled regressor never saw), runs the frozen regressor and a BOA-adapted copy side by
side on it, prints their running PA-MPJPE, and writes `demo.mp4` (frozen left, adapted right),
`demo.png` (a strip of frames) and `demo.json` into the output folder.

Both models predict every frame BEFORE the adapted one has used that frame (the `before`
protocol of `hmr_ros.online`), so the comparison is on frames the adaptation has not seen.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from .config import PipelineConfig
from .eval.evaluate import StreamEvaluator
from .eval.overlay import FrameSink, draw_people
from .jsonio import write_json
from .pipeline import build_pipeline
from .progress import Progress
from .provenance import machine_info
from .stream.runner import StreamRunner
from .world.domain import load_domain
from .world.scene import SyntheticSequence


def demo(out_dir: str | Path = "runs/demo", seconds: float = 7.0, seed: int = 2024,
         domain: str = "pw3d_like", config: PipelineConfig | None = None,
         video: bool = True, progress: bool = True, realtime: bool = False) -> dict:
    """Frozen vs adapted regressor on a synthetic stream. By default in lock-step: every
    frame is predicted, then adapted on, in turn (deterministic, one step per frame).
    `realtime`: the stream plays at its frame rate (never faster) with adaptation in the
    background, as on a robot; the adapted model uses whatever weights the worker has
    published, so the numbers vary run to run (and, until adaptation runs at camera rate,
    are worse: README "Try it")."""
    lockstep = not realtime
    config = config or PipelineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    d = load_domain(domain)
    seq = SyntheticSequence(d, seed=seed, duration_s=seconds)
    print(f"hmr-ros demo: {len(seq)} frames of {d.name} ({seq.camera.width}x"
          f"{seq.camera.height}, seed {seed}); frozen vs {config.adapt.method} adaptation "
          + ("in lock-step (each frame predicted, then adapted on)" if lockstep else
             f"in the background, the stream at {d.fps:g} fps at most"))
    frozen = build_pipeline(dataclasses.replace(config, adapt=dataclasses.replace(
        config.adapt, enabled=False)), adapt=False)
    adapted = build_pipeline(config, adapt=True, start=False, body=frozen.body)
    runner = StreamRunner(adapted, None, "before" if lockstep else "async")
    ev_f, ev_a = StreamEvaluator(frozen.body), StreamEvaluator(adapted.body)
    sink = FrameSink(out / "demo.mp4", fps=d.fps) if video else None
    frames = (seq.frame(i).frame for i in range(len(seq)))

    def both():
        start = time.perf_counter()
        for k, (frame, res_a) in enumerate(runner.run(frames)):
            yield frame, frozen.process(frame), res_a
            if not lockstep:  # at the stream's frame rate, never faster
                wait = start + (k + 1) / d.fps - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)

    every = max(1, int(round(d.fps)))
    with Progress(len(seq), "demo", enabled=progress) as bar:
        for k, (frame, res_f, res_a) in enumerate(both()):
            ev_f.add(frame, res_f)
            ev_a.add(frame, res_a)
            if sink is not None:
                cam = frame.camera
                left = draw_people(frame.image, res_f.people, frozen.body.faces, cam,
                                   label="frozen")
                right = draw_people(frame.image, res_a.people, adapted.body.faces, cam,
                                    label=f"adapted v{res_a.model_version}")
                sink.add(np.concatenate([left, right], axis=1))
            if (k + 1) % every == 0 or k + 1 == len(seq):
                f, a = ev_f.report.means(), ev_a.report.means()
                print(f"  t={(k + 1) / d.fps:5.1f}s  running PA-MPJPE  frozen "
                      f"{f.get('pa_mpjpe', float('nan')):6.1f} mm   adapted "
                      f"{a.get('pa_mpjpe', float('nan')):6.1f} mm", flush=True)
            bar.update(1)
    status = adapted.adaptation.status() if adapted.adaptation is not None else None
    adapted.close()
    video_path = sink.close() if sink is not None else None
    sf, sa = ev_f.summary(), ev_a.summary()
    elapsed = time.perf_counter() - t0
    summary = {"domain": d.name, "seed": seed, "frames": len(seq), "method": config.adapt.method,
               "protocol": "before" if lockstep else "async",
               "frozen": sf, "adapted": sa, "elapsed_s": elapsed,
               "adaptation": None if status is None else status.__dict__,
               "video": str(video_path) if video_path else None, "machine": machine_info()}
    write_json(out / "demo.json", summary)
    gain = 100.0 * (1.0 - sa["pa_mpjpe"] / sf["pa_mpjpe"]) if sf["pa_mpjpe"] > 0 else 0.0
    print(f"PA-MPJPE frozen {sf['pa_mpjpe']:.1f} mm -> adapted {sa['pa_mpjpe']:.1f} mm "
          f"({abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'}); "
          f"MPJPE {sf['mpjpe']:.1f} -> {sa['mpjpe']:.1f} mm")
    if status is not None:
        print(f"{status.steps} adaptation steps, {status.rollbacks} rollbacks, "
              f"final weights v{status.version}; finished in {elapsed:.0f} s")
    written = [out / "demo.json"] + ([video_path] if video_path else [])
    if video and (out / "demo.png").exists() and video_path != out / "demo.png":
        written.append(out / "demo.png")  # the strip of frames FrameSink writes beside it
    print("wrote " + ", ".join(str(p) for p in written))
    return summary
