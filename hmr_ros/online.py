"""Running the pipeline over a stream with adaptation: in the background, or in lock-step.

- `async`: the deployment mode. Inference runs in the caller's thread, adaptation in the
  worker's thread on the newest frames; predictions use whatever weights are published.
  Timing-dependent, so not reproducible run to run.
- `before`: lock-step and deterministic. Each frame is predicted with the current weights,
  then the worker adapts on it in the caller's thread: every prediction is made on a frame
  the model has not adapted on (held-out evidence).
- `after`: lock-step, BOA's evaluation protocol: adapt on frame t (with its 2D keypoints),
  then predict frame t with the adapted weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .data.frame import Frame
from .pipeline import FrameResult, Pipeline

PROTOCOLS = ("async", "before", "after")


def run_online(pipeline: Pipeline, frames: Iterable[Frame], protocol: str = "before"
               ) -> Iterator[tuple[Frame, FrameResult]]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    worker = pipeline.adaptation
    if worker is None:
        for frame in frames:
            yield frame, pipeline.process(frame)
        return
    if protocol == "async":
        worker.start()
        for frame in frames:
            yield frame, pipeline.process(frame)
        return
    if worker.alive:
        raise RuntimeError("lock-step protocols need a worker that was not started")
    for frame in frames:
        result = pipeline.process(frame)
        worker.run_pending()
        if protocol == "after":
            result = pipeline.process(frame, submit=False)
        yield frame, result
