"""`AdaptationWorker`: adapts the regressor in a background thread while inference runs.

The inference thread only calls `submit` (a few appends under a lock, never waits for a step)
and keeps predicting with the newest published weights. The worker thread picks frames by
schedule (every frame, every n-th, or the newest as fast as it can), runs the method's steps
on them, lets the drift guard accept or roll back each step, moves the mean teacher, and
publishes accepted weights as numbered versions through `publish(state_dict, version)`;
backends swap them in atomically (`model/backends/`).

The adapter's state (weights, optimiser, guard history, last good snapshot) belongs to the
thread that runs steps. `reset` and `save`, called from any thread, are therefore commands:
queued to the worker thread and run there between two steps, never in the middle of one (a
reset landing mid-step had let a pre-reset gradient reach the source weights and be
published). Without a started thread (lock-step protocols driving `run_pending`) they run on
the caller's thread, serialised with `run_pending`'s steps.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..body.joints import get_joint_set
from ..config import AdaptConfig
from ..data.frame import Keypoints
from ..model.checkpoint import save_checkpoint
from .batch import AdaptBatch, FrameBatch, StepReport
from .commands import Commands
from .dapa import Estimate, make_dapa
from .flow_term import FlowBatch, FlowCache
from .guard import DriftGuard
from .methods import Adapter

log = logging.getLogger("hmr_ros")

STATE_IDLE, STATE_RUNNING, STATE_PAUSED, STATE_ERROR, STATE_STOPPED = (
    "idle", "running", "paused", "error", "stopped")

# How long `reset` and `save` wait for the worker thread to run them: a step of hmr_r50 with
# boa_2nd takes seconds on a small CPU, so a minute means the thread is stuck.
COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AdaptSample:
    """One person in one frame, as inference saw it: the crop (R, R, 3) uint8, its box (3,),
    K (3, 3) and the 2D keypoints in image pixels."""

    track: int
    index: int
    stamp_ns: int
    crop: np.ndarray
    box: np.ndarray
    K: np.ndarray
    keypoints: Keypoints


@dataclass(frozen=True)
class AdaptStatus:
    state: str
    enabled: bool
    method: str
    version: int
    steps: int
    rollbacks: int
    steps_per_second: float
    last_loss: float
    buffered: int
    dropped: int
    errors: int
    message: str
    resets: int = 0  # resets to the source weights after max_consecutive_rollbacks


class AdaptationWorker:
    def __init__(self, adapter: Adapter, cfg: AdaptConfig,
                 publish: Callable[[dict[str, torch.Tensor], int], None],
                 replay: dict[str, torch.Tensor] | None = None) -> None:
        self.adapter = adapter
        self.cfg = cfg
        self.publish = publish
        self.guard = DriftGuard(cfg)
        self.replay = replay
        # Guards the buffers, the schedule, the flags and the command queue. `submit` takes
        # it, so it is never held during a step, a copy of weights or a publish.
        self._lock = threading.Condition()
        # Held by whoever runs a step or a command (the worker thread, or the caller of
        # run_pending and of commands when no thread runs), so the two never interleave.
        # `submit` never takes it.
        self._step_lock = threading.RLock()
        self._commands = Commands(self._lock, self._step_lock)  # reset, save
        self.command_timeout = COMMAND_TIMEOUT_S
        self._tracks: dict[int, deque[AdaptSample]] = {}
        # Frozen-prefix outputs of buffered samples, by (track, index, crop id): see
        # `_keep_prefixes`. Only the thread that owns the adapter touches it.
        self._prefix_cache: dict[tuple[int, int, int], torch.Tensor] = {}
        self._frames: deque[int] = deque()  # frame indices waiting (every_frame, every_n)
        self._newest = -1
        self._last_done = -1
        self._counter = -1
        self._enabled = cfg.enabled and cfg.method != "none"
        self._stop = False
        self._thread: threading.Thread | None = None
        self._last_good = (adapter.state_dict(), _copy_optimizer(adapter))
        self._times: deque[float] = deque(maxlen=20)
        self.steps = 0
        self.rollbacks = 0
        self.consecutive_rollbacks = 0  # since the last accepted step
        self.resets = 0
        self.dropped = 0
        self.errors = 0
        self.last_loss = float("nan")
        self.message = ""
        self.state = STATE_IDLE
        self.reports: deque[StepReport] = deque(maxlen=1000)
        self._rng = np.random.default_rng(0)
        # Motion cues (w_flow > 0): `_batch` (under the lock) names the pairs of consecutive
        # samples; `_attach_flow` (outside it, on the thread that runs steps) computes their
        # flow, so neither `submit` nor inference ever waits for DIS. One cached pair holds
        # 8 R^2 bytes (131 kB at R = 128); the cache keeps at most buffer_frames pairs.
        self._flow_pairs: list[tuple[int, AdaptSample | None, AdaptSample]] = []
        self.flow_cache = FlowCache(cfg.buffer_frames)
        # DAPA (adapt.dapa_weight > 0): synthetic crops rendered here, on the thread that runs
        # steps; `_batch_samples` are the samples of the batch `_batch` built last.
        self.dapa = make_dapa(adapter.body, cfg)
        self.dapa_ms: deque[float] = deque(maxlen=200)  # observe + render, per batch
        self._dapa_batch = None
        self._dapa_count = 0
        self._batch_samples: list[AdaptSample] = []

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
        self.state = STATE_STOPPED

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
        return self._commands.call("reset", self._reset_now, self.command_timeout)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the last good adapted weights (our checkpoint format, atomic).

        The worker thread only hands over its last good snapshot between steps (a reference:
        snapshots are never modified in place); building the checkpoint and writing it happen
        on the caller's thread, so neither adaptation nor inference waits for the disk."""
        path = Path(path or self.cfg.save_path or "runs/adapted.pt")
        state, version, steps, rollbacks = self._commands.call("save", self._snapshot,
                                                               self.command_timeout)
        model = self.adapter.teacher.__class__(self.adapter.model.config)
        model.load_state_dict(state)  # copies to the CPU when the adapter is on a GPU
        return save_checkpoint(path, model, meta={
            "source": "hmr_ros adaptation", "method": self.cfg.method,
            "model_version": version, "steps": steps, "rollbacks": rollbacks})

    def _reset_now(self) -> int:
        self.adapter.reset()
        state = self.adapter.state_dict()
        self._last_good = (state, _copy_optimizer(self.adapter))
        self.guard.losses.clear()
        self.consecutive_rollbacks = 0
        self.publish(state, self.adapter.version)
        return self.adapter.version

    def _snapshot(self) -> tuple[dict[str, torch.Tensor], int, int, int]:
        # Between steps the adapter's version is that of the last good weights.
        return self._last_good[0], self.adapter.version, self.steps, self.rollbacks

    def status(self) -> AdaptStatus:
        times = list(self._times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and \
            times[-1] > times[0] else 0.0
        return AdaptStatus(self.state, self._enabled, self.cfg.method, self.adapter.version,
                           self.steps, self.rollbacks, rate, self.last_loss, self.buffered,
                           self.dropped, self.errors, self.message, self.resets)

    @property
    def buffered(self) -> int:
        with self._lock:
            return sum(len(d) for d in self._tracks.values())

    # ------------------------------------------------------------ input (inference thread)

    def submit(self, samples: list[AdaptSample]) -> None:
        """Hand over the people of one frame. Cheap and non-blocking for the caller.

        Frames are numbered in submission order (their `index` is replaced by that number),
        so tau and the schedules count submitted frames even when a source restarts its
        indices (a replayed bag) or inference skipped images.
        """
        if not samples:
            return
        with self._lock:
            self._counter += 1
            index = self._counter
            samples = [dataclasses.replace(s, index=index) for s in samples]
            for s in samples:
                d = self._tracks.get(s.track)
                if d is None:
                    d = self._tracks[s.track] = deque(maxlen=self.cfg.buffer_frames)
                d.append(s)
            self._newest = max(self._newest, index)
            if self.cfg.schedule != "latest" and (self.cfg.schedule == "every_frame"
                                                  or index % self.cfg.every_n == 0):
                self._frames.append(index)
                while len(self._frames) > self.cfg.buffer_frames:
                    self._frames.popleft()
                    self.dropped += 1
            self._lock.notify_all()

    def forget(self, track: int) -> None:
        """Drop a lost track's history."""
        with self._lock:
            self._tracks.pop(track, None)
            if self.dapa is not None:
                self.dapa.forget(track)

    # ------------------------------------------------------------ worker thread

    def _next_frame(self) -> int | None:
        """Frame index to adapt on next, or None to keep waiting (called under the lock)."""
        if not self._enabled:
            return None
        if self.cfg.schedule == "latest":
            return self._newest if self._newest > self._last_done else None
        while self._frames:
            index = self._frames.popleft()
            if index > self._last_done:
                return index
        return None

    def run_pending(self) -> int:
        """Adapt on the pending frame in the CALLER's thread (lock-step evaluation and tests:
        the same selection, steps and guard as the background thread). Returns the number of
        steps run (0 when nothing is pending or adaptation is disabled)."""
        with self._lock:
            index = self._next_frame()
            if index is None:
                return 0
            batch = self._batch(index)
            self._last_done = index
        if batch is None:
            return 0
        batch = self._attach_flow(batch)  # outside the lock that submit takes
        batch = batch.to(self.adapter.device)  # outside the lock that submit takes
        with self._step_lock:
            batch = self._with_synthetic(batch)
            if self.cfg.reset_each_frame:  # per-frame test-time optimisation
                self._reset_now()
            for _ in range(self.cfg.steps_per_frame):
                self._step(batch)
        return self.cfg.steps_per_frame

    def _run(self) -> None:
        self.state = STATE_RUNNING
        if self.cfg.thread_nice:
            try:  # Linux: PRIO_PROCESS with a thread id sets that thread's niceness only
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, min(
                    19, os.getpriority(os.PRIO_PROCESS, tid) + self.cfg.thread_nice))
            except (AttributeError, OSError) as err:
                log.warning("adapt.thread_nice %d not applied: %s", self.cfg.thread_nice, err)
        try:
            self._loop()
        finally:
            self._commands.close()  # runs what is queued; later commands run on their callers

    def _loop(self) -> None:
        while True:
            index = None
            with self._lock:
                while not self._stop and not self._commands.pending:
                    index = self._next_frame()
                    if index is not None:
                        break
                    self.state = STATE_RUNNING if self._enabled else STATE_PAUSED
                    self._lock.wait(0.5)
                if self._stop:
                    return
                batch = self._batch(index) if index is not None else None
                if index is not None:
                    self._last_done = index
            self._commands.run_queued()
            if batch is None:
                continue
            batch = self._attach_flow(batch)  # outside the lock that submit takes
            batch = batch.to(self.adapter.device)  # outside the lock that submit takes
            with self._step_lock:
                batch = self._with_synthetic(batch)
                if self.cfg.reset_each_frame:  # per-frame test-time optimisation
                    self._reset_now()
            for _ in range(self.cfg.steps_per_frame):
                if self._stop:
                    return
                self._commands.run_queued()  # between steps: never in the middle of one
                with self._step_lock:
                    failed = self._guarded_step(batch)
                if failed:
                    time.sleep(min(5.0, 0.1 * self.errors))
                    break

    def _guarded_step(self, batch: AdaptBatch) -> bool:
        """One step; an exception becomes a rollback and a status message (True)."""
        try:
            self._step(batch)
        except Exception as err:  # a failing step must not kill the thread silently
            self.errors += 1
            self.message = f"step failed: {type(err).__name__}: {err}"
            self.state = STATE_ERROR
            log.exception("adaptation step failed (error %d); weights unchanged",
                          self.errors)
            self._rollback()
            self._count_rollback(self.message)
            return True
        return False

    def _step(self, batch: AdaptBatch) -> None:
        """One step, its verdict and, if accepted, its publication (the thread that owns the
        adapter: the worker thread, or run_pending's caller)."""
        batch = batch.to(self.adapter.device)  # itself when it is there already
        report = self.adapter.step(batch)
        self._keep_prefixes(batch)
        if self._stop:
            self._rollback()
            return
        verdict = self.guard.check(self.adapter, report, batch)
        self.last_loss = report.loss
        if not verdict.ok:
            self.rollbacks += 1
            self.message = f"rolled back: {verdict.reason}"
            log.warning("adaptation step rolled back to version %d: %s", self.adapter.version,
                        verdict.reason)
            self._rollback()
            self.reports.append(StepReport(report.method, report.loss, report.terms, False,
                                           verdict.reason, report.seconds,
                                           self.adapter.version))
            self._count_rollback(verdict.reason)
            return
        self.consecutive_rollbacks = 0
        self.adapter.update_teacher()
        self.adapter.version += 1
        state = self.adapter.state_dict()
        self._last_good = (state, _copy_optimizer(self.adapter))
        self.steps += 1
        self._times.append(time.perf_counter())
        self.state = STATE_RUNNING
        self.reports.append(StepReport(report.method, report.loss, report.terms, True, "",
                                       report.seconds, self.adapter.version))
        self.publish(state, self.adapter.version)

    def _keep_prefixes(self, batch: AdaptBatch) -> None:
        """Remember the frozen prefix of each sample of the step: a frame's sample comes back
        as the partner tau frames later (and in batch_frames' picks), and its prefix does not
        change. Kept only while the sample is buffered."""
        if self.adapter.scope.prefix_stage is None:
            return
        for fb in (batch.current, batch.previous):
            prefix = self.adapter.cached_prefix(fb.images)
            if prefix is None or not fb.keys:
                continue
            for key, row in zip(fb.keys, prefix):
                self._prefix_cache[key] = row
        with self._lock:  # submit changes the buffers from other threads
            live = {(s.track, s.index, id(s.crop)) for dq in self._tracks.values() for s in dq}
        for key in [k for k in self._prefix_cache if k not in live]:
            del self._prefix_cache[key]

    def _count_rollback(self, reason: str) -> None:
        """After max_consecutive_rollbacks in a row the last good snapshot is evidently not
        good (a state every step fails from): back to the source weights, said in status."""
        self.consecutive_rollbacks += 1
        n = self.consecutive_rollbacks
        if n < self.cfg.max_consecutive_rollbacks:
            return
        version = self._reset_now()  # we are the thread that owns the adapter
        self.resets += 1
        self.consecutive_rollbacks = 0
        self.message = (f"reset to the source weights (version {version}) after {n} "
                        f"consecutive rollbacks; last: {reason}")
        log.warning("adaptation %s", self.message)

    def _rollback(self) -> None:
        state, opt = self._last_good
        # Copies of both: torch's Optimizer.load_state_dict keeps the given tensors (no copy
        # when dtype and device match), and Adam updates them in place afterwards, while the
        # snapshot must stay as it is (it was published, and save hands it out by reference).
        self.adapter.load_state({k: v.clone() for k, v in state.items()}, clone_tree(opt))

    # ------------------------------------------------------------ batches

    def _usable(self, s: AdaptSample) -> np.ndarray:
        conf = np.where(s.keypoints.confidence >= self.cfg.keypoint_threshold,
                        s.keypoints.confidence, 0.0)
        return conf.astype(np.float32)

    def _batch(self, index: int) -> AdaptBatch | None:
        """Samples of frame `index` (plus earlier frames when batch_frames > 1) and their
        partners tau frames back (called under the lock)."""
        cur, prev = [], []
        fmt = None
        for dq in self._tracks.values():
            history = [s for s in dq if s.index <= index]
            if not history or history[-1].index != index:
                continue  # this person is not in the frame
            chosen = [history[-1]]
            extra = min(self.cfg.batch_frames - 1, len(history) - 1)
            if extra > 0:
                picks = self._rng.choice(len(history) - 1, size=extra, replace=False)
                chosen += [history[int(i)] for i in sorted(picks)]
            for s in chosen:
                if (self._usable(s) > 0).sum() < self.cfg.min_keypoints:
                    continue
                if fmt is None:
                    fmt = s.keypoints.format
                if s.keypoints.format != fmt:
                    continue
                earlier = [p for p in dq if p.index <= s.index - self.cfg.tau
                           and p.keypoints.format == fmt]
                cur.append(s)
                prev.append(earlier[-1] if earlier else s)
        if not cur:
            return None
        if self.cfg.w_flow > 0:
            self._flow_pairs = [(s.track, _sample_at(self._tracks[s.track], s.index - 1), s)
                                for s in cur]
        self._batch_samples = cur
        mapping = torch.as_tensor(get_joint_set(fmt).matrix(), dtype=torch.float32)
        replay = None
        if self.replay is not None:
            idx = torch.as_tensor(self._rng.integers(0, len(self.replay["images"]), 2))
            replay = {k: v[idx] for k, v in self.replay.items()}
            replay["images"] = replay["images"].permute(0, 3, 1, 2).float() / 255.0
        return AdaptBatch(self._frames_to_batch(cur, mapping),
                          self._frames_to_batch(prev, mapping), replay)

    def _attach_flow(self, batch: AdaptBatch) -> AdaptBatch:
        """`batch` with the flow of the pairs `_batch` named (w_flow > 0; outside the lock):
        each current person against itself one frame earlier; a person without that frame
        gets weight 0 (its own crop stands in, so shapes stay fixed)."""
        pairs, self._flow_pairs = self._flow_pairs, []
        if self.cfg.w_flow <= 0 or not pairs or len(pairs) != len(batch.current):
            return batch
        r = pairs[0][2].crop.shape[0]
        zero = np.zeros((2, r, r), dtype=np.float32)
        fwd, bwd, earlier, weight = [], [], [], []
        for track, a, b in pairs:
            if a is None:
                fwd.append(zero)
                bwd.append(zero)
                earlier.append(b)
                weight.append(0.0)
                continue
            f = self.flow_cache.get((track, a.index, b.index), a.crop, a.box, b.crop, b.box,
                                    self.cfg.flow_preset)
            fwd.append(f.forward.astype(np.float32))
            bwd.append(f.backward.astype(np.float32))
            earlier.append(a)
            weight.append(1.0)
        images = torch.from_numpy(np.stack([s.crop for s in earlier])).permute(0, 3, 1, 2)
        flow = FlowBatch(
            images=images.float() / 255.0,
            box=torch.as_tensor(np.stack([s.box for s in earlier]), dtype=torch.float32),
            K=torch.as_tensor(np.stack([s.K for s in earlier]), dtype=torch.float32),
            forward=torch.from_numpy(np.stack(fwd)), backward=torch.from_numpy(np.stack(bwd)),
            weight=torch.as_tensor(weight, dtype=torch.float32))
        return dataclasses.replace(batch, flow=flow)

    def _with_synthetic(self, batch: AdaptBatch) -> AdaptBatch:
        """`batch` with DAPA's synthetic crops (itself when DAPA is off): the student's
        estimates on the batch's current crops update the people's looks, and every
        `dapa_every` batches a new synthetic batch is rendered (the last one is reused in
        between). A failure is logged and the step goes on without synthetic crops."""
        if self.dapa is None:
            return batch
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                out = self.adapter.predict(None, batch.current.images)
            rotmat, betas, cam = (t.detach().float().cpu().numpy()
                                  for t in (out.rotmat, out.betas, out.cam))
            estimates = [Estimate(s.track, s.crop, np.asarray(s.box, np.float32),
                                  np.asarray(s.K, np.float32), rotmat[i], betas[i], cam[i])
                         for i, s in enumerate(self._batch_samples)]
            self.dapa.observe(estimates)
            if self._dapa_batch is None or self._dapa_count % self.cfg.dapa_every == 0:
                syn = self.dapa.generate(estimates, self.cfg.dapa_batch)
                self._dapa_batch = None if syn is None else syn.to(self.adapter.device)
            self._dapa_count += 1
        except Exception as err:  # the real frames' step must still run
            log.warning("DAPA generation failed: %s: %s", type(err).__name__, err)
            return batch
        self.dapa_ms.append((time.perf_counter() - t0) * 1e3)
        return dataclasses.replace(batch, synthetic=self._dapa_batch)

    def _frames_to_batch(self, samples: list[AdaptSample], mapping: torch.Tensor) -> FrameBatch:
        images = torch.from_numpy(np.stack([s.crop for s in samples])).permute(0, 3, 1, 2)
        # The crop's identity is part of the key: a restarted stream may bring the same track
        # and index back with another image. Keys of samples that left the buffer are pruned
        # (`_keep_prefixes`), so a cached id always belongs to a live crop.
        keys = tuple((s.track, s.index, id(s.crop)) for s in samples)
        cached = [self._prefix_cache.get(k) for k in keys]
        return FrameBatch(
            keys=keys,
            prefix=torch.stack(cached) if cached and all(c is not None for c in cached)
            else None,
            images=images.float() / 255.0,
            box=torch.as_tensor(np.stack([s.box for s in samples]), dtype=torch.float32),
            K=torch.as_tensor(np.stack([s.K for s in samples]), dtype=torch.float32),
            keypoints=torch.as_tensor(np.stack([s.keypoints.xy for s in samples]),
                                      dtype=torch.float32),
            conf=torch.as_tensor(np.stack([self._usable(s) for s in samples])),
            mapping=mapping)


def _sample_at(dq: deque[AdaptSample], index: int) -> AdaptSample | None:
    """The sample of frame `index` in a track's buffer, or None."""
    for s in reversed(dq):
        if s.index == index:
            return s
        if s.index < index:
            return None
    return None

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
