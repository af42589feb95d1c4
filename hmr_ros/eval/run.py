"""`hmr-ros eval`: the frozen regressor on synthetic domains or on bags, as a table and JSON."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from ..config import PipelineConfig, replace_path
from ..data.frame import Frame
from ..jsonio import write_json
from ..pipeline import Pipeline, build_pipeline
from ..progress import Progress
from ..provenance import provenance
from ..stream.run import run_stream
from ..stream.runner import StreamRunner
from .evaluate import StreamEvaluator

COLUMNS = ("frames", "detected", "mpjpe", "pa_mpjpe", "pve", "accel")


def domain_frames(domain: str, seeds: Sequence[int], duration: float
                  ) -> Iterator[tuple[int, Frame]]:
    """(stream key, frame) of every stream: the key is the seed."""
    from ..stream.sources import synthetic_frames
    from ..world.domain import load_domain
    from ..world.scene import SyntheticSequence

    d = load_domain(domain)
    for seed in seeds:
        for frame in synthetic_frames(SyntheticSequence(d, seed=seed, duration_s=duration)):
            yield seed, frame


def bag_file_frames(path: str, limit: int | None = None, **topics: str
                    ) -> Iterator[tuple[int, Frame]]:
    """(stream key, frame) of the bag at `path` (`stream.frames.bag_frames`): the key is 0."""
    from ..messages.bag import BagReader, detect_topics
    from ..stream.frames import bag_frames

    with BagReader(path) as reader:
        for frame in bag_frames(reader, detect_topics(reader, **topics), limit=limit):
            yield 0, frame


def run_eval(pipeline: Pipeline, frames: Iterator[tuple[int, Frame]], total: int | None,
             label: str, progress: bool = True) -> dict[str, float]:
    ev = StreamEvaluator(pipeline.body)
    runner = StreamRunner(pipeline)  # frozen weights: people and ids come with the frames
    n = 0
    versions = set()
    key = [0]  # the stream of the frame being run (the evaluator keeps ACCEL per stream)

    def keyed() -> Iterator[Frame]:
        for stream, frame in frames:
            key[0] = stream
            yield frame

    with Progress(total, f"eval {label}", enabled=progress) as bar:
        for frame, result in run_stream(runner, keyed()):
            versions.add(result.model_version)
            ev.add(frame, result, key[0])
            n += 1
            bar.update(1)
    out = ev.summary()
    out["frames"] = float(n)
    out["model_versions"] = float(len(versions))  # 1: the same weights throughout
    return out


def format_table(rows: dict[str, dict[str, float]]) -> str:
    head = f"{'data':24s} {'frames':>7s} {'detected':>9s} {'MPJPE':>8s} {'PA-MPJPE':>9s} " \
           f"{'PVE':>8s} {'ACCEL':>7s}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:24s} {r.get('frames', 0):7.0f} {100 * r.get('detected', 0):8.1f}% "
                     f"{r.get('mpjpe', float('nan')):8.1f} {r.get('pa_mpjpe', float('nan')):9.1f} "
                     f"{r.get('pve', float('nan')):8.1f} {r.get('accel', float('nan')):7.1f}")
    lines.append("(mm; MPJPE mid-hip aligned and PA-MPJPE on LSP-14 joints, PVE pelvis aligned, "
                 "ACCEL mm/frame^2)")
    return "\n".join(lines)


def main(bags: Sequence[str], domains: Sequence[str], seeds: Sequence[int], duration: float,
         weights: str, out: str | None, limit: int | None = None,
         progress: bool = True) -> dict[str, dict[str, float]]:
    cfg = PipelineConfig()
    if weights:
        cfg = replace_path(cfg, "inference.weights", weights)
    pipeline = build_pipeline(cfg, adapt=False)  # the frozen regressor
    rows: dict[str, dict[str, float]] = {}
    for d in domains:
        from ..world.domain import load_domain

        fps = load_domain(d).fps
        total = len(seeds) * max(1, int(round(duration * fps)))
        rows[d] = run_eval(pipeline, domain_frames(d, seeds, duration), total, d, progress)
    for b in bags:
        rows[Path(b).name] = run_eval(pipeline, bag_file_frames(b, limit), limit, Path(b).name,
                                      progress)
    print(format_table(rows))
    if out:
        path = write_json(out, {"benchmark": "eval", "weights": weights or "default",
                                "seeds": list(seeds), "duration_s": duration,
                                **provenance(), "results": rows})
        print(f"wrote {path}")
    return rows
