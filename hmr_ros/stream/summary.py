"""The summary of one `hmr-ros replay` or `hmr-ros live` run: `metrics.json` and the closing
lines, from one function (`summarize`, `print_summary`).

`Tally` is the sink that counts what the run did; `RunReport` holds it with what the command
knows about its input, detector, adaptation and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..adapt.worker import AdaptStatus
from ..data.frame import Frame, FrameResult
from ..provenance import machine_info


class Tally:
    """Per-frame bookkeeping of one run (a sink): latencies, people, ids."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.people = 0
        self.skipped = 0
        self.ids: set[int] = set()

    def add(self, frame: Frame, result: FrameResult) -> None:
        self.latencies.append(result.latency_ms)
        self.people += len(result.people)
        self.skipped += len(result.skipped)
        self.ids.update(p.id for p in result.people)


@dataclass(frozen=True)
class RunReport:
    """What one run did. protocol: the one asked for (reported as `none` without
    adaptation); keypoint_error: `KeypointErrorSink.report`; metrics: the ground-truth
    summary (None without ground truth); outputs: what was written, by kind."""

    input: str
    input_kind: str
    tally: Tally
    elapsed_s: float
    adapt: bool
    protocol: str
    method: str
    status: AdaptStatus | None
    people_from: str
    frames_detected: int
    keypoint_error: dict
    metrics: dict | None = None
    topics: dict[str, Any] | None = None
    skipped_images: int = 0
    skipped_inputs: dict[str, int] | None = None
    outputs: dict[str, str | None] = field(default_factory=dict)


def summarize(run: RunReport) -> dict:
    """The run as the JSON-ready dict of `metrics.json`."""
    tally = run.tally
    n = len(tally.latencies)
    lat = np.asarray(tally.latencies) if n else np.zeros(1)
    return {
        "bag": run.input, "input": run.input, "input_kind": run.input_kind,
        "topics": run.topics,
        "frames": n, "people": tally.people, "skipped_people": tally.skipped,
        "skipped_images": run.skipped_images, "skipped_inputs": run.skipped_inputs,
        "adapt": run.adapt, "protocol": run.protocol if run.adapt else "none",
        "method": run.method,
        "elapsed_s": run.elapsed_s, "fps": n / run.elapsed_s if run.elapsed_s > 0 else 0.0,
        "latency_ms": {"p50": float(np.percentile(lat, 50)),
                       "p95": float(np.percentile(lat, 95))},
        "adaptation": None if run.status is None else run.status.__dict__,
        "detection": {"people_from": run.people_from, "frames_detected": run.frames_detected,
                      "ids": sorted(tally.ids)},
        "keypoint_error": run.keypoint_error,
        "metrics": run.metrics,
        "outputs": run.outputs,
        "machine": machine_info(),
    }


def print_summary(run: RunReport, summary: dict) -> None:
    """The closing lines: frames and speed, ids, adaptation, 2D error, ground truth."""
    tally, status = run.tally, run.status
    print(f"{summary['frames']} frames, {tally.people} body estimates in "
          f"{run.elapsed_s:.1f} s ({summary['fps']:.1f} fps), inference p50 "
          f"{summary['latency_ms']['p50']:.1f} ms")
    if tally.ids:
        print(f"people ids: {', '.join(str(i) for i in sorted(tally.ids))}")
    if status is not None:
        print(f"adaptation {status.method}: {status.steps} steps, version {status.version}, "
              f"{status.rollbacks} rollbacks")
    rep = run.keypoint_error
    if rep[next(k for k in ("adapted", "frozen") if k in rep)]["frames"]:
        print_keypoint_report(rep)
    if run.metrics is not None:
        print(format_metrics(run.metrics))


def print_keypoint_report(rep: dict) -> None:
    def part(name: str) -> str:
        s = rep.get(name)
        if not s or s["mean_px"] is None:
            return f"{name} -"
        return f"{name} {s['mean_px']:.2f} px ({s['mean_normalised']:.4f} of the box)"

    held = ("held out: each frame predicted before adapting on it" if rep["held_out"]
            else "NOT held out: protocol after")
    names = [n for n in ("frozen", "adapted") if n in rep]
    print(f"2D keypoint error over {rep[names[0]]['frames']} frames ({held}): "
          + ", ".join(part(n) for n in names))


def format_metrics(m: dict) -> str:
    """The ground-truth metrics line; a metric with no scored frame (every image skipped,
    every person unusable) reads "-" instead of ending the run with a KeyError."""
    def part(label: str, key: str, unit: str) -> str:
        v = m.get(key)
        ok = isinstance(v, (int, float)) and np.isfinite(v)
        return f"{label} {v:.1f} {unit}" if ok else f"{label} - {unit}"

    line = ", ".join([part("MPJPE", "mpjpe", "mm"), part("PA-MPJPE", "pa_mpjpe", "mm"),
                      part("PVE", "pve", "mm"), part("ACCEL", "accel", "mm/frame^2")])
    if not any(isinstance(m.get(k), (int, float)) and np.isfinite(m[k])
               for k in ("mpjpe", "pa_mpjpe")):
        line += " (no estimate was scored)"
    return line
