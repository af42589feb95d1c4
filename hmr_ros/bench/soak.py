"""`hmr-ros bench soak`: the pipeline with adaptation in the background on a long stream that
never repeats, for a given time, watching memory and threads.

The stream is a chain of synthetic segments (`--segment` s each, a new seed, hence new people,
motions and scenes, every segment), with stamps that keep increasing across segments; people
of a finished segment are forgotten by the worker as a tracker would. Frames go through the
one stream runner (async protocol: adaptation on the worker's own thread) as fast as the
machine renders and estimates them.

Every `--sample` seconds: RSS, the Python threads alive and whether the adaptation thread is,
frames, people, skipped people, adaptation steps, rollbacks, resets, errors and buffered
frames. Written to `bench/results/soak_<tag>.json` (rewritten at every sample, so a killed run
keeps what it measured) and a markdown summary at the end.
"""

from __future__ import annotations

import dataclasses
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import PipelineConfig
from ..data.frame import Detection, Frame
from ..jsonio import write_json
from ..provenance import footnote, provenance

SEGMENT_S = 20.0


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; the peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def endless_frames(domain: str, seed: int, segment_s: float = SEGMENT_S,
                   scale: float | None = None) -> Iterator[tuple[int, Frame]]:
    """(segment, frame) forever: segment k is a fresh synthetic stream of seed `seed + k`;
    stamps and indices run on across segments; person ids are made unique per segment."""
    from ..world.domain import load_domain
    from ..world.scene import SyntheticSequence

    d = load_domain(domain)
    if scale is not None:
        d = dataclasses.replace(d, image=dataclasses.replace(d.image, render_scale=scale))
    period = int(round(1e9 / d.fps))
    index = 0
    stamp = 1_700_000_000_000_000_000
    segment = 0
    while True:
        seq = SyntheticSequence(d, seed=seed + segment, duration_s=segment_s)
        for i in range(len(seq)):
            f = seq.frame(i).frame
            base = 1000 * (segment + 1)
            dets = tuple(Detection(base + det.id, det.keypoints, det.box)
                         for det in f.detections)
            truth = {base + k: v for k, v in f.ground_truth.items()}
            yield segment, dataclasses.replace(f, stamp_ns=stamp, index=index,
                                               detections=dets, ground_truth=truth)
            index += 1
            stamp += period
        segment += 1


@dataclass
class Sample:
    elapsed_s: float
    rss_mb: float
    threads: int
    worker_alive: bool
    frames: int
    people: int
    skipped_people: int
    steps: int
    rollbacks: int
    resets: int
    errors: int
    buffered: int
    segment: int


def run(minutes: float, config: PipelineConfig | None = None, domain: str = "pw3d_like",
        seed: int = 5000, sample_s: float = 30.0, segment_s: float = SEGMENT_S,
        scale: float | None = 0.5, tag: str = "cpu", out_dir: str | Path = "bench/results",
        progress: bool = True) -> dict:
    from ..pipeline import build_pipeline
    from ..source_replay import replay_for
    from ..stream.runner import StreamRunner

    config = config or PipelineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak_{tag}.json"
    pipeline = build_pipeline(config, adapt=True, start=False, replay=replay_for(config, True))
    worker = pipeline.adaptation
    if worker is None:
        raise SystemExit("bench soak needs adaptation: adapt.method must not be none")
    runner = StreamRunner(pipeline, None, "async")
    runner.start()
    samples: list[Sample] = []
    frames = people = skipped = 0
    last_segment = 0
    seen_ids: set[int] = set()
    t0 = time.perf_counter()
    next_sample = 0.0
    meta = {"command": f"hmr-ros bench soak --minutes {minutes:g} --domain {domain} --seed "
                       f"{seed} --sample {sample_s:g} --segment {segment_s:g} --tag {tag}",
            "domain": domain, "seed": seed, "segment_s": segment_s, "render_scale": scale,
            "method": config.adapt.method, "schedule": config.adapt.schedule,
            **provenance()}

    def take(segment: int) -> None:
        st = worker.status()
        s = Sample(time.perf_counter() - t0, rss_mb(), threading.active_count(), worker.alive,
                   frames, people, skipped, st.steps, st.rollbacks, st.resets, st.errors,
                   st.buffered, segment)
        samples.append(s)
        write_json(path, {**meta, "samples": [dataclasses.asdict(x) for x in samples],
                          "done": False})
        if progress:
            print(f"soak {s.elapsed_s / 60:6.1f} min  frames {s.frames:7d}  steps "
                  f"{s.steps:6d}  rollbacks {s.rollbacks:4d}  resets {s.resets}  RSS "
                  f"{s.rss_mb:7.1f} MB  threads {s.threads}  worker "
                  f"{'alive' if s.worker_alive else 'DEAD'}", flush=True)

    try:
        for segment, frame in endless_frames(domain, seed, segment_s, scale):
            elapsed = time.perf_counter() - t0
            if elapsed >= next_sample:
                take(segment)
                next_sample += sample_s
            if elapsed >= minutes * 60.0:
                break
            if segment != last_segment:  # the previous segment's people are gone
                for pid in seen_ids:
                    worker.forget(pid)
                seen_ids.clear()
                last_segment = segment
            _, result = runner.process(frame)
            seen_ids.update(d.id for d in frame.detections)
            frames += 1
            people += len(result.people)
            skipped += len(result.skipped)
        take(last_segment)  # the last sample while everything still runs
    finally:
        pipeline.close()
    first, last = samples[0], samples[-1]
    middle = samples[len(samples) // 2]
    # Memory after warm-up (the first sample after one minute) to the end: the growth that a
    # leak would show, not the one-off allocations of the first frames.
    warm = next((s for s in samples if s.elapsed_s >= 60.0), first)
    summary = {
        "duration_min": last.elapsed_s / 60.0, "frames": last.frames,
        "fps": last.frames / last.elapsed_s if last.elapsed_s > 0 else 0.0,
        "segments": last.segment + 1, "people": last.people,
        "skipped_people": last.skipped_people, "steps": last.steps,
        "rollbacks": last.rollbacks, "resets": last.resets, "errors": last.errors,
        "rss_mb": {"start": first.rss_mb, "warm": warm.rss_mb, "middle": middle.rss_mb,
                   "end": last.rss_mb, "max": max(s.rss_mb for s in samples)},
        "rss_growth_after_warmup_pct": 100.0 * (last.rss_mb / warm.rss_mb - 1.0),
        "worker_alive_throughout": all(s.worker_alive for s in samples),
        "threads": {"min": min(s.threads for s in samples),
                    "max": max(s.threads for s in samples)},
    }
    write_json(path, {**meta, "samples": [dataclasses.asdict(x) for x in samples],
                      "summary": summary, "done": True})
    md = path.with_suffix(".md")
    r = summary["rss_mb"]
    md.write_text(
        f"# bench soak ({tag})\n\n`{meta['command']}`\n\n"
        "| minutes | frames | fps | segments | steps | rollbacks | resets | errors | RSS start "
        "/ warm / middle / end MB | growth after 1 min | adaptation thread |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {summary['duration_min']:.1f} | {summary['frames']} | {summary['fps']:.1f} | "
        f"{summary['segments']} | {summary['steps']} | {summary['rollbacks']} | "
        f"{summary['resets']} | {summary['errors']} | {r['start']:.0f} / {r['warm']:.0f} / "
        f"{r['middle']:.0f} / {r['end']:.0f} | {summary['rss_growth_after_warmup_pct']:+.1f}% | "
        f"{'alive throughout' if summary['worker_alive_throughout'] else 'DIED'} |\n\n"
        + footnote(meta["environment"]) + "\n")
    if progress:
        print(f"wrote {path}, {md}")
    return summary
