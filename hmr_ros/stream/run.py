"""`run_stream`: the one way a stream of `Frame`s is run, from a source into sinks.

Every entry point goes through it: the ROS node's inference thread (source: `SyncSource`,
the newest matched image of the live topics; sinks: the node's publishers and the REP-155
topics), `hmr-ros replay` (a bag's `bag_frames` or a video's `VideoReader`; sinks: the
estimates bag, ground truth, 2D error, overlay video, the run's tally), `hmr-ros live` (a
webcam), `hmr-ros demo` (synthetic frames) and `hmr-ros eval`.

A source is any iterable of `Frame`s, each made by `FrameAssembler`'s rule (stream/frames.py);
the sinks follow the `Sink` protocol of stream/runner.py. The steps of one frame are the
runner's (`StreamRunner.process_all`); `feed` is that for one frame, where a caller (the node's
`step`) takes frames one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..data.frame import Frame, FrameResult
from .runner import StreamRunner

Pair = tuple[Frame, FrameResult]
OnError = Callable[[int, Exception], None]  # (the frame's stamp_ns, the error)


def feed(runner: StreamRunner, frame: Frame, on_error: OnError | None = None) -> list[Pair]:
    """One frame through the runner and its sinks: the (frame, result) pairs now ready.
    With `on_error`, a frame whose processing raises is reported there and gives no pairs
    (a live stream keeps going); without it the error propagates."""
    if on_error is None:
        return runner.process_all(frame)
    try:
        return runner.process_all(frame)
    except Exception as err:  # whatever one frame does, the stream goes on
        on_error(frame.stamp_ns, err)
        return []


def run_stream(runner: StreamRunner, source: Iterable[Frame], on_error: OnError | None = None,
               flush: bool = True) -> Iterator[Pair]:
    """Start the runner, run every frame of `source` through it (`feed`), yield the ready
    pairs; at the end flush the lookahead (`flush`; a stopped live stream does not) and close
    the sinks, also when the caller stops early or an error ends the stream."""
    runner.start()
    try:
        for frame in source:
            yield from feed(runner, frame, on_error)
        if flush:
            yield from runner.flush()
    finally:
        runner.close_sinks()
