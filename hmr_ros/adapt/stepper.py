"""`Stepper`: one adaptation step, its verdict and its publication.

The adapter steps; the drift guard accepts or rolls the step back; an accepted step moves the
mean teacher and is published as a new numbered version through `publish(state_dict,
version)` (backends swap it in atomically); a rejected one restores the last good snapshot.
After `adapt.guard.max_consecutive_rollbacks` rejections in a row that snapshot is evidently
not good: the adapter goes back to the source weights, said in the status. A step that raises
is counted as an error and rolled back. Only the thread that owns the adapter calls it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import AdaptConfig
from ..model.checkpoint import save_checkpoint
from .batch import AdaptBatch, StepReport
from .guard import DriftGuard
from .methods import Adapter

log = logging.getLogger("hmr_ros")

STATE_IDLE, STATE_RUNNING, STATE_PAUSED, STATE_ERROR, STATE_STOPPED = (
    "idle", "running", "paused", "error", "stopped")


@dataclass(frozen=True)
class Snapshot:
    """The last good weights, their version and the step counts when they were taken."""

    state: dict[str, torch.Tensor]
    version: int
    steps: int
    rollbacks: int


Publish = Callable[[dict[str, torch.Tensor], int], None]


class Stepper:
    def __init__(self, adapter: Adapter, cfg: AdaptConfig, publish: Publish,
                 after_step: Callable[[AdaptBatch], None] = lambda batch: None) -> None:
        """`after_step(batch)` runs after every adapter step, before its verdict (the worker
        keeps the step's frozen prefixes there)."""
        self.adapter = adapter
        self.after_step = after_step
        self.cfg = cfg
        self.publish = publish
        self.guard = DriftGuard(cfg)
        self.last_good = (adapter.state_dict(), _copy_optimizer(adapter))
        self.times: deque[float] = deque(maxlen=20)  # when the last accepted steps ended
        self.reports: deque[StepReport] = deque(maxlen=1000)
        self.steps = 0
        self.rollbacks = 0
        self.consecutive_rollbacks = 0  # since the last accepted step
        self.resets = 0
        self.errors = 0
        self.last_loss = float("nan")
        self.message = ""
        self.state = STATE_IDLE

    def step(self, batch: AdaptBatch, stopping: Callable[[], bool] = lambda: False) -> None:
        """One step on `batch`; `stopping()` true after the step discards it unpublished."""
        batch = batch.to(self.adapter.device)  # itself when it is there already
        report = self.adapter.step(batch)
        self.after_step(batch)
        if stopping():
            self.rollback()
            return
        verdict = self.guard.check(self.adapter, report, batch)
        self.last_loss = report.loss
        if not verdict.ok:
            self.rollbacks += 1
            self.message = f"rolled back: {verdict.reason}"
            log.warning("adaptation step rolled back to version %d: %s", self.adapter.version,
                        verdict.reason)
            self.rollback()
            self.reports.append(StepReport(report.method, report.loss, report.terms, False,
                                           verdict.reason, report.seconds,
                                           self.adapter.version))
            self._count_rollback(verdict.reason)
            return
        self.consecutive_rollbacks = 0
        self.adapter.update_teacher()
        self.adapter.version += 1
        state = self.adapter.state_dict()
        self.last_good = (state, _copy_optimizer(self.adapter))
        self.steps += 1
        self.times.append(time.perf_counter())
        self.state = STATE_RUNNING
        self.reports.append(StepReport(report.method, report.loss, report.terms, True, "",
                                       report.seconds, self.adapter.version))
        self.publish(state, self.adapter.version)

    def guarded_step(self, batch: AdaptBatch, stopping: Callable[[], bool]) -> bool:
        """`step`, with an exception turned into a rollback and a status message (True)."""
        try:
            self.step(batch, stopping)
        except Exception as err:  # a failing step must not kill the thread silently
            self.errors += 1
            self.message = f"step failed: {type(err).__name__}: {err}"
            self.state = STATE_ERROR
            log.exception("adaptation step failed (error %d); weights unchanged",
                          self.errors)
            self.rollback()
            self._count_rollback(self.message)
            return True
        return False

    def reset(self) -> int:
        """Back to the source weights, published as a new version; returns it."""
        self.adapter.reset()
        state = self.adapter.state_dict()
        self.last_good = (state, _copy_optimizer(self.adapter))
        self.guard.losses.clear()
        self.consecutive_rollbacks = 0
        self.publish(state, self.adapter.version)
        return self.adapter.version

    def rollback(self) -> None:
        state, opt = self.last_good
        # Copies of both: torch's Optimizer.load_state_dict keeps the given tensors (no copy
        # when dtype and device match), and Adam updates them in place afterwards, while the
        # snapshot must stay as it is (it was published, and save hands it out by reference).
        self.adapter.load_state({k: v.clone() for k, v in state.items()}, clone_tree(opt))

    def _count_rollback(self, reason: str) -> None:
        self.consecutive_rollbacks += 1
        n = self.consecutive_rollbacks
        if n < self.cfg.guard.max_consecutive_rollbacks:
            return
        version = self.reset()
        self.resets += 1
        self.consecutive_rollbacks = 0
        self.message = (f"reset to the source weights (version {version}) after {n} "
                        f"consecutive rollbacks; last: {reason}")
        log.warning("adaptation %s", self.message)

    def snapshot(self) -> Snapshot:
        """The last good weights and their counts (between steps the adapter's version is
        that of the last good weights)."""
        return Snapshot(self.last_good[0], self.adapter.version, self.steps, self.rollbacks)

    def write(self, path: Path, snap: Snapshot) -> Path:
        """`snap` as a checkpoint of our format at `path` (any thread: it reads no state
        that steps change)."""
        return write_snapshot(path, type(self.adapter.teacher), self.adapter.model.config,
                              self.cfg.method, snap)

    @property
    def steps_per_second(self) -> float:
        t = list(self.times)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0


def write_snapshot(path: Path, model_type: type, model_config, method: str, snap: Snapshot
                   ) -> Path:
    """`snap` as a checkpoint of our format at `path`: a `model_type(model_config)` with its
    weights (the process worker writes in the parent, where no adapter lives)."""
    model = model_type(model_config)
    model.load_state_dict(snap.state)  # copies to the CPU when the adapter is on a GPU
    return save_checkpoint(path, model, meta={
        "source": "hmr_ros adaptation", "method": method, "model_version": snap.version,
        "steps": snap.steps, "rollbacks": snap.rollbacks})


def _copy_optimizer(adapter: Adapter) -> dict:
    return clone_tree(adapter.optimizer.state_dict())


def clone_tree(obj):
    """A copy of nested dicts/lists/tuples in which every tensor is cloned (detached).

    Replaces `copy.deepcopy` of optimiser state: deepcopy walks every object in Python while
    holding the GIL (about 30 ms for hmr_small's Adam state on our CPUs, once per step), which
    stalls the inference thread; this copies the same tensors in about 2 ms."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_tree(v) for v in obj)
    return obj
