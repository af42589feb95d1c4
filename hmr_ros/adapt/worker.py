"""`AdaptationWorker`: adapts the regressor in a background thread while inference runs.

The inference thread only calls `submit` (a few appends under a lock, never waits for a step)
and keeps predicting with the newest published weights. The worker thread takes frames by
schedule from its `SampleBuffer` (`samples.py`), turns the picked samples into a batch
(`assemble.py`), lets the enabled seed methods add to it (`augment.py`) and runs the step,
guard and publication of `Stepper` (`stepper.py`) on it. Lock-step protocols drive the same
frame routine from their own thread through `run_pending`.

The adapter's state (weights, optimiser, guard history, last good snapshot) belongs to the
thread that runs steps. `reset` and `save`, called from any thread, are therefore commands:
queued to the worker thread and run there between two steps, never in the middle of one (a
reset landing mid-step would let a pre-reset gradient reach the source weights and be
published). Without a started thread (lock-step protocols driving `run_pending`) they run on
the caller's thread, serialised with `run_pending`'s steps.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..config import AdaptConfig
from .assemble import PrefixCache, assemble
from .augment import make_augmenters
from .batch import AdaptBatch, AdaptStatus
from .commands import Commands
from .device import lower_thread_priority
from .methods import Adapter
from .samples import AdaptSample, Picked, SampleBuffer
from .stepper import (
    STATE_PAUSED,
    STATE_RUNNING,
    STATE_STOPPED,
    Publish,
    Snapshot,
    Stepper,
    clone_tree,
)

__all__ = ["AdaptationWorker", "AdaptSample", "AdaptStatus", "clone_tree"]

log = logging.getLogger("hmr_ros")

# How long `reset` and `save` wait for the worker thread to run them: a step of hmr_r50 with
# boa_2nd takes seconds on a small CPU, so a minute means the thread is stuck.
COMMAND_TIMEOUT_S = 60.0


class AdaptationWorker:
    def __init__(self, adapter: Adapter, cfg: AdaptConfig, publish: Publish,
                 replay: dict[str, torch.Tensor] | None = None) -> None:
        self.adapter = adapter
        self.cfg = cfg
        # Guards the buffer, the flags and the command queue. `submit` takes it, so it is
        # never held during a step, a copy of weights or a publish.
        self._lock = threading.Condition()
        # Held by whoever runs a step or a command (the worker thread, or the caller of
        # run_pending and of commands when no thread runs), so the two never interleave.
        # `submit` never takes it.
        self._step_lock = threading.RLock()
        self._commands = Commands(self._lock, self._step_lock)  # reset, save
        self.command_timeout = COMMAND_TIMEOUT_S
        rng = np.random.default_rng(0)  # batch_frames' picks, then source replay's draws
        self.buffer = SampleBuffer(cfg, rng)
        self.prefixes = PrefixCache()
        self.core = Stepper(adapter, cfg, publish, after_step=self._keep_prefixes)
        self.augmenters = make_augmenters(cfg, adapter, rng, replay)
        self._enabled = cfg.enabled and cfg.method != "none"
        self._stands_for = 1  # frames the pending pick stands for (catch_up)
        self.samples_used = 0  # samples that entered a step (a frame's people, batch_frames')
        self._stop = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hmr_ros-adaptation",
                                        daemon=True)
        self._commands.open(self._thread)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to end after the step in progress (which is then not published);
        commands already queued still run before it ends."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("adaptation thread did not stop within %.0f s", timeout)
        self.core.state = STATE_STOPPED

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def set_enabled(self, enabled: bool) -> None:
        with self._lock:
            self._enabled = bool(enabled) and self.cfg.method != "none"
            self._lock.notify_all()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def reset(self) -> int:
        """Back to the source weights (published as a new version); returns that version.

        Runs on the worker thread between steps (a step in progress finishes, and is
        published if accepted, first); waits up to `command_timeout` s for it."""
        return self._commands.call("reset", self.core.reset, self.command_timeout)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the last good adapted weights (our checkpoint format, atomic).

        The worker thread only hands over its last good snapshot between steps (a reference:
        snapshots are never modified in place); building the checkpoint and writing it happen
        on the caller's thread, so neither adaptation nor inference waits for the disk."""
        path = Path(path or self.cfg.worker.save_path or "runs/adapted.pt")
        return self.core.write(path, self.snapshot())

    def snapshot(self) -> Snapshot:
        """The last good weights, their version and counts, taken between steps (the same
        wait as `save`; the process worker's child hands this to its parent to write)."""
        return self._commands.call("save", self.core.snapshot, self.command_timeout)

    def status(self) -> AdaptStatus:
        c = self.core
        return AdaptStatus(c.state, self._enabled, self.cfg.method, self.adapter.version,
                           c.steps, c.rollbacks, c.steps_per_second, c.last_loss, self.buffered,
                           self.buffer.dropped, c.errors, c.message, c.resets,
                           self.samples_used)

    # The step counts and reports, as the stepper keeps them (read-only here).
    steps = property(lambda self: self.core.steps)
    rollbacks = property(lambda self: self.core.rollbacks)
    resets = property(lambda self: self.core.resets)
    errors = property(lambda self: self.core.errors)
    reports = property(lambda self: self.core.reports)
    state = property(lambda self: self.core.state)

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self.buffer)

    def augmenter(self, kind: type):
        """The enabled augmenter of class `kind`, or None."""
        return next((a for a in self.augmenters if isinstance(a, kind)), None)

    # ------------------------------------------------------------ input (inference thread)

    def submit(self, samples: list[AdaptSample]) -> None:
        """Hand over the people of one frame. Cheap and non-blocking for the caller."""
        if not samples:
            return
        with self._lock:
            self.buffer.submit(samples)
            self._lock.notify_all()

    def forget(self, track: int) -> None:
        """Drop a lost track's history."""
        with self._lock:
            self.buffer.forget(track)
            for aug in self.augmenters:
                aug.forget(track)

    # ------------------------------------------------------------ the frame routine

    def _pick(self) -> Picked | None:
        """The samples of the next pending frame (under the lock), or None."""
        index = self.buffer.next_index() if self._enabled else None
        return None if index is None else self._select(index)

    def _select(self, index: int) -> Picked | None:
        """`buffer.select`, remembering the frames the pick stands for (catch_up)."""
        picked = self.buffer.select(index)
        self._stands_for = min(self.buffer.stands_for, self.cfg.worker.catch_up)
        return picked

    def next_batch(self) -> AdaptBatch | None:
        """Take the pending frame and build its batch, as a step would get it, without
        stepping (None when nothing is pending)."""
        with self._lock:
            picked = self._pick()
        if picked is None:
            return None
        with self._step_lock:
            return self._batch(picked)

    def _batch(self, picked: Picked) -> AdaptBatch:
        """The picked samples' batch on the adapter's device, with every enabled method's
        part (the thread that owns the adapter, outside the lock that submit takes)."""
        batch = assemble(picked, self.cfg.keypoint_threshold, self.prefixes)
        if self._stands_for > 1:  # a step standing for the frames since the previous one
            batch = dataclasses.replace(batch, lr_scale=float(self._stands_for))
        batch = batch.to(self.adapter.device)
        for aug in self.augmenters:
            batch = aug.augment(batch, picked)
        return batch

    def _adapt(self, picked: Picked, threaded: bool) -> int:
        """steps_per_frame steps on one frame's batch; returns the steps run. On the worker
        thread (`threaded`) queued commands run between steps, a failing step ends the frame
        and a stop request ends it before the next step."""
        with self._step_lock:
            batch = self._batch(picked)
            self.samples_used += len(picked.current)
            if self.cfg.reset_each_frame:  # per-frame test-time optimisation
                self.core.reset()
        for k in range(self.cfg.steps_per_frame):
            if threaded:
                if self._stop:
                    return k
                self._commands.run_queued()  # between steps: never in the middle of one
            with self._step_lock:
                if not threaded:
                    self.core.step(batch, lambda: self._stop)
                elif self.core.guarded_step(batch, lambda: self._stop):
                    time.sleep(min(5.0, 0.1 * self.core.errors))
                    return k + 1
        return self.cfg.steps_per_frame

    def run_pending(self) -> int:
        """Adapt on the pending frame in the CALLER's thread (lock-step evaluation and tests:
        the same selection, batch and steps as the background thread; a failing step
        raises). Returns the number of steps run (0 when nothing is pending or adaptation is
        disabled)."""
        with self._lock:
            picked = self._pick()
        return 0 if picked is None else self._adapt(picked, threaded=False)

    def _run(self) -> None:
        self.core.state = STATE_RUNNING
        lower_thread_priority(self.cfg.worker.thread_nice)
        try:
            self._loop()
        finally:
            self._commands.close()  # runs what is queued; later commands run on their callers

    def _loop(self) -> None:
        while True:
            index = picked = None
            with self._lock:
                while not self._stop and not self._commands.pending:
                    index = self.buffer.next_index() if self._enabled else None
                    if index is not None:
                        picked = self._select(index)  # None: nobody usable in it
                        break
                    self.core.state = STATE_RUNNING if self._enabled else STATE_PAUSED
                    self._lock.wait(0.5)
                if self._stop:
                    return
            self._commands.run_queued()
            if picked is not None:
                self._adapt(picked, threaded=True)

    def _keep_prefixes(self, batch: AdaptBatch) -> None:
        with self._lock:  # submit changes the buffer from other threads
            live = self.buffer.live_keys()
        self.prefixes.keep(self.adapter, batch, live)
