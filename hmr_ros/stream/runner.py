"""`StreamRunner`: the steps between an input's `Frame`s and the sinks.

Every entry point runs frames through it, by `run_stream` (stream/run.py): the ROS node's
inference thread, `hmr-ros replay` / `live` / `demo` and `hmr-ros eval`; the benchmarks also
call `run` over an iterator. Per frame:

1. people and stable ids: the `DetectionStage` (keypoints from the input, or the in-process
   detector; tracker ids); tracks lost for `detector.tracker.timeout_s` leave the adaptation
   buffers;
2. the estimate: `Pipeline.process` (crops, regressor, body model; people with keypoints are
   handed to the adaptation worker);
3. the adaptation protocol:
   - `async`: the deployment mode. Adaptation runs in the worker's thread on the newest
     frames; predictions use whatever weights are published. Timing-dependent.
   - `before`: lock-step and deterministic. Each frame is predicted with the current weights,
     then the worker adapts on it in the caller's thread: every prediction is made on a frame
     the model has not adapted on (held-out evidence).
   - `after`: lock-step, BOA's evaluation protocol: adapt on frame t (with its 2D keypoints),
     then predict frame t with the adapted weights;
4. the sinks (`Sink.add(frame, result)`): ROS publishers, the REP-155 topics, the estimates
   bag, the evaluator, the overlay video, the run's tally, whatever the caller attached. A
   sink that keeps per-track state also has `lost(tracks)`, called with the tracks that ended
   at a frame before that frame's results are handed on; one that holds a file has `close()`,
   called once at the stream's end (`run_stream`, stream/run.py).

With the temporal stage in lookahead mode (`temporal.mode: lookahead`), frame t's refined
result is ready when frame t + d has been processed: `process_all` returns (and hands the
sinks) the pairs that became ready, each result with the index and stamp of the frame it
describes, and `run` flushes the last d frames at the stream's end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from ..data.frame import Frame, FrameResult
from ..detect.stage import DetectionStage
from ..pipeline import Pipeline

PROTOCOLS = ("async", "before", "after")


class Sink(Protocol):
    """Where results go. Optional methods, called when a sink has them:
    `lost(tracks: list[int])` (tracks that ended, before the frame's `add`) and `close()`."""

    def add(self, frame: Frame, result: FrameResult) -> None:
        """One frame's result (called on the runner's thread, in frame order)."""


class TrackSink(Sink, Protocol):
    def lost(self, tracks: list[int]) -> None:
        """These tracks ended (the tracker's timeout): drop what is kept per track."""


class StreamRunner:
    def __init__(self, pipeline: Pipeline, stage: DetectionStage | None = None,
                 protocol: str = "async", sinks: Sequence[Sink] = (),
                 replace_input_people: bool = False) -> None:
        """stage: None when the frames already carry their people with stable ids (the
        synthetic world); replace_input_people: an explicitly chosen detector replaces the
        keypoints the input brings."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        worker = pipeline.adaptation
        if worker is not None and protocol != "async" and worker.alive:
            raise RuntimeError("lock-step protocols need a worker that was not started")
        self.pipeline = pipeline
        self.stage = stage
        self.protocol = protocol
        self.sinks = list(sinks)
        self.replace_input_people = replace_input_people
        self.frames = 0
        self.lost: list[int] = []  # tracks that ended at the last frame (sinks may need them)

    def start(self) -> None:
        """Start the adaptation thread (async protocol; lock-step steps on the caller's)."""
        worker = self.pipeline.adaptation
        if worker is not None and self.protocol == "async" and not worker.alive:
            worker.start()

    def people(self, frame: Frame) -> Frame:
        """Step 1: the frame with its people and their stable ids."""
        if self.stage is None:
            return frame
        if self.replace_input_people and frame.detections:
            frame = dataclasses.replace(frame, detections=())
        frame = self.stage.process(frame)
        worker = self.pipeline.adaptation
        self.lost = self.stage.pop_lost()
        for track in self.lost:
            if worker is not None:
                worker.forget(track)
        if self.lost:
            for sink in self.sinks:
                lost = getattr(sink, "lost", None)
                if lost is not None:
                    lost(self.lost)
        return frame

    def estimate(self, frame: Frame) -> FrameResult:
        """Steps 2 and 3: the pipeline and the adaptation protocol."""
        # Under `after` the frame is looked at twice; only the second look (adapted weights)
        # enters the temporal stage.
        result = (self.pipeline.process(frame) if self.protocol != "after"
                  else self.pipeline.process(frame, refine=False))
        worker = self.pipeline.adaptation
        if worker is not None and self.protocol != "async":
            worker.run_pending()
            if self.protocol == "after":
                result = self.pipeline.process(frame, submit=False)
        return result

    def process(self, frame: Frame) -> tuple[Frame, FrameResult]:
        """One frame through steps 1-4; returns the frame with its people and the result."""
        frame = self.people(frame)
        result = self.estimate(frame)
        for sink in self.sinks:
            sink.add(frame, result)
        self.frames += 1  # counted once its sinks have it: the node numbers frames by this
        return frame, result

    def process_all(self, frame: Frame) -> list[tuple[Frame, FrameResult]]:
        """One frame through steps 1-4; returns the (frame, result) pairs that are ready:
        this frame's, or with a lookahead delay those of earlier frames (none while the
        first d frames wait). The sinks get exactly these pairs."""
        if self.pipeline.temporal_delay == 0:
            return [self.process(frame)]
        frame = self.people(frame)
        self.estimate(frame)
        pairs = self._emit(self.pipeline.pop_refined())
        self.frames += 1
        return pairs

    def flush(self) -> list[tuple[Frame, FrameResult]]:
        """At a stream's end: the results still waiting for their lookahead, to the sinks."""
        return self._emit(self.pipeline.flush())

    def _emit(self, pairs: list[tuple[Frame, FrameResult]]) -> list[tuple[Frame, FrameResult]]:
        for pair in pairs:
            for sink in self.sinks:
                sink.add(*pair)
        return pairs

    def close_sinks(self) -> None:
        """Close every sink that has `close` (once, at the stream's end)."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()

    def run(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, FrameResult]]:
        """Every frame through steps 1-4, then the lookahead flush (sinks stay open)."""
        self.start()
        for frame in frames:
            yield from self.process_all(frame)
        yield from self.flush()


def run_online(pipeline: Pipeline, frames: Iterable[Frame], protocol: str = "before"
               ) -> Iterator[tuple[Frame, FrameResult]]:
    """Frames that already carry their people through the pipeline under `protocol` (no
    sinks: the caller takes the pairs)."""
    return StreamRunner(pipeline, None, protocol).run(frames)
