"""`ProcessAdaptationWorker`: `AdaptationWorker`'s interface, with the adaptation in a child
process (`adapt.worker.kind: process`).

In a thread, adaptation shares the interpreter with inference and the ROS executor: its
Python-level work (batch assembly, the optimiser's loop, the guard) takes the GIL from them.
Here a child started with `spawn` (the parent has threads: `fork` would copy their locks
mid-use) owns the `Adapter` and runs a plain `AdaptationWorker` (`process_child.py`); the
parent keeps only what inference needs:

- `submit` puts a frame's samples on a queue (pickled by the queue's feeder thread) and
  returns; at `adapt.buffer_frames` items not yet taken by the child, a frame is dropped and
  counted (`dropped`), never waited for. `forget` travels on the same queue, so the child sees
  submissions and forgets in the caller's order.
- Accepted weights are written by the child into `SharedWeights` (preallocated shared
  memory, an inter-process lock held for the copy only). A relay thread of the parent reads
  them when the child says so and hands them to `publish(state, version)` with the version
  they were published under. A thread rather than polling from `submit`: weights then arrive
  without frames too (a reset while the camera is quiet), and the copy and the backend's swap
  never run on the inference thread.
- Commands (start, run_pending, reset, save, set_enabled, stop) go over a pipe and wait for
  the reply, with a timeout. The status is not a round trip: the child reports it with every
  publication, reply and every half second, and `status` returns the newest report.
- If the child dies, the relay thread sees it at once (its pipe closes), says so in the
  status (state `error` until a new child is up, `errors` and `message` for good) and starts a
  new child from the last accepted weights: the version and weights continue where they were.
  A child that dies before it is up is not restarted (its error would repeat).
- `stop` asks the child to end, then terminates and kills it; children are daemonic and a
  finaliser ends them at exit, and a child whose parent is gone ends itself.
- `run_pending` (lock-step protocols) runs the step in the child and returns once its weights
  reached `publish`, so lock-step runs give the thread worker's results.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import pickle
import threading
import weakref
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as tmp

from ..body import BodyModel
from ..config import AdaptConfig
from ..model.hmr import HMR
from .batch import AdaptStatus
from .device import adapt_device
from .prior import MaxMixturePrior
from .process_child import ChildStart, Report
from .process_handle import ChildHandle, end_all
from .shared_weights import SharedWeights
from .stepper import STATE_ERROR, STATE_IDLE, STATE_STOPPED, Publish, Snapshot, write_snapshot
from .worker import COMMAND_TIMEOUT_S

__all__ = ["AdapterSpec", "ProcessAdaptationWorker"]

log = logging.getLogger("hmr_ros")

START_TIMEOUT_S = 120.0  # a child imports torch and builds its adapter (seconds on 2 cores)
RUN_PENDING_TIMEOUT_S = 600.0  # one frame's steps (boa_2nd of hmr_r50 on a slow CPU)
REPLY_MARGIN_S = 10.0  # beyond the child's own wait, for the reply to come back


@dataclass(frozen=True)
class AdapterSpec:
    """What the child builds its `Adapter` from: `Adapter`'s arguments."""

    model: HMR
    body: BodyModel
    cfg: AdaptConfig
    inference_device: str = "cpu"
    prior: MaxMixturePrior | None = None


class ProcessAdaptationWorker:
    def __init__(self, spec: AdapterSpec, cfg: AdaptConfig, publish: Publish,
                 replay: dict[str, torch.Tensor] | None = None) -> None:
        """Starts the child (its adapter built, adaptation not yet running: `start`) and
        waits for it; RuntimeError with the child's error when it cannot start."""
        adapt_device(cfg.worker.device or spec.inference_device)  # the thread worker's check
        self.cfg = cfg
        self.command_timeout = COMMAND_TIMEOUT_S
        self._publish = publish
        # A copy (plain pickle, not torch.multiprocessing's shared tensors): the child's
        # adapter must not share storage with the parent's inference model. Only our own child
        # reads these bytes; no data file is ever unpickled.
        self._spec = pickle.dumps((spec, replay), protocol=pickle.HIGHEST_PROTOCOL)
        self._model = (type(spec.model), spec.model.config)
        source = {k: v.detach().float().clone() if v.is_floating_point() else v.detach().clone()
                  for k, v in spec.model.state_dict().items()}
        self._ctx = tmp.get_context("spawn")
        self.shared = SharedWeights(source, 0, self._ctx)
        self._accepted = (source, 0)  # the last weights handed to publish, and their version
        self._lock = threading.Condition()  # the fields below; notified when the child changes
        self._cmd_lock = threading.Lock()  # one command at a time on the pipe
        self._deliver_lock = threading.Lock()
        self._ids = itertools.count()
        self._enabled = cfg.enabled and cfg.method != "none"
        self._background = False
        self._stopping = False
        self._report: Report | None = None
        self._down = ""  # why no child runs (between a death and its replacement), or ""
        self._failed = ""  # why no child will run again, or ""
        self.restarts = 0
        self.crashes = 0
        self._crash_message = ""
        self._queue_dropped = 0
        self._carried = [0, 0, 0, 0, 0]  # steps, rollbacks, resets, errors, samples of the dead
        self._queue_bound = max(2, cfg.buffer_frames)
        self._procs: list = []
        self._finalizer = weakref.finalize(self, end_all, self._procs)
        self._child: ChildHandle | None = self._spawn(restart=False)
        self._relay_thread = threading.Thread(target=self._relay, daemon=True,
                                              name="hmr_ros-adaptation-relay")
        self._relay_thread.start()

    # ------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        """Adapt in the background (the child's worker thread); after `stop`, in a new child
        from the last accepted weights."""
        with self._lock:
            if self._background and self.alive:
                return
            self._background, self._stopping = True, False
            respawn = self._child is None and not self._failed
        if respawn:
            self._install(self._spawn(restart=True))
            self._start_relay()
        self._call("start")

    def stop(self, timeout: float = 30.0) -> None:
        """End the child: `stop` (the step in progress is not published), then terminate and
        kill it if it has not gone within `timeout` s."""
        with self._lock:
            self._stopping = True
            child, self._child = self._child, None
            self._lock.notify_all()
        if child is not None:
            try:
                self._ask(child, "stop", (timeout,), timeout + REPLY_MARGIN_S)
            except Exception as err:  # dead, stuck or gone: ended below all the same
                log.info("adaptation process did not stop cleanly: %s", err)
            child.end(timeout)
        if self._relay_thread.is_alive() and self._relay_thread is not threading.current_thread():
            self._relay_thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Adapting in the background: started, and the child runs."""
        child = self._child
        return self._background and child is not None and child.proc.is_alive()

    @property
    def pid(self) -> int | None:
        """The child's process id (None while none runs)."""
        child = self._child
        return child.proc.pid if child is not None else None

    def set_enabled(self, enabled: bool) -> None:
        """Kept here too: a restarted child starts with it. Not waited for when no child
        runs."""
        self._enabled = bool(enabled) and self.cfg.method != "none"
        if self._child is not None and not self._down:  # else the next child gets it
            try:
                self._call("set_enabled", self._enabled)
            except RuntimeError as err:
                log.warning("adaptation: set_enabled reaches the next child: %s", err)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def reset(self) -> int:
        """Back to the source weights (published, and handed to `publish` before this
        returns); returns that version."""
        version = self._call("reset", self.command_timeout)
        self._deliver()
        return version

    def save(self, path: str | Path | None = None) -> Path:
        """Write the last good adapted weights: the child hands over its snapshot between
        steps; the checkpoint is built and written here."""
        path = Path(path or self.cfg.worker.save_path or "runs/adapted.pt")
        data, version, steps, rollbacks = self._call("snapshot", self.command_timeout)
        state = torch.load(io.BytesIO(data), weights_only=True)
        return write_snapshot(path, *self._model, self.cfg.method,
                              Snapshot(state, version, steps, rollbacks))

    def status(self) -> AdaptStatus:
        """The child's newest report, with what the parent knows: drops at the queue, deaths
        of children (in `errors` and, until the child says something newer, `message`)."""
        with self._lock:
            rep, child = self._report, self._child
            down, failed, stopping = self._down, self._failed, self._stopping
        st = rep.status if rep is not None else AdaptStatus(
            STATE_IDLE, self._enabled, self.cfg.method, 0, 0, 0, 0.0, float("nan"), 0, 0, 0, "")
        queued = child.sent - child.consumed.value if child is not None else 0
        state = STATE_ERROR if down or failed else STATE_STOPPED if stopping else st.state
        message = failed or down or st.message or self._crash_message
        steps, rollbacks, resets, errors, _ = self._carried
        return dataclasses.replace(st, state=state, enabled=self._enabled,
                                   steps=st.steps + steps, rollbacks=st.rollbacks + rollbacks,
                                   resets=st.resets + resets, buffered=st.buffered + queued,
                                   dropped=st.dropped + self._queue_dropped,
                                   errors=st.errors + errors + self.crashes, message=message,
                                   samples_used=self.samples_used)

    steps = property(lambda self: self.status().steps)
    rollbacks = property(lambda self: self.status().rollbacks)
    resets = property(lambda self: self.status().resets)
    errors = property(lambda self: self.status().errors)
    state = property(lambda self: self.status().state)
    buffered = property(lambda self: self.status().buffered)

    @property
    def samples_used(self) -> int:
        rep = self._report
        return (rep.samples_used if rep is not None else 0) + self._carried[4]

    def augmenter(self, kind: type) -> None:
        """None: the augmenters live in the child (the thread worker's introspection)."""
        return None

    # ------------------------------------------------------------ input (inference thread)

    def submit(self, samples: list) -> None:
        """Hand over the people of one frame: a put on the queue, never a wait (dropped and
        counted when the child is behind by `adapt.buffer_frames` frames or not running)."""
        if samples:
            self._put(("samples", samples), drop=True)

    def forget(self, track: int) -> None:
        """Drop a lost track's history (in order with the submissions)."""
        self._put(("forget", int(track)), drop=False)

    def _put(self, item: tuple, drop: bool) -> None:
        with self._lock:
            child = self._child
            if child is None or self._down or (drop and child.sent - child.consumed.value
                                 >= self._queue_bound):
                self._queue_dropped += drop
                return
            child.samples.put(item)
            child.sent += 1

    def run_pending(self) -> int:
        """Adapt on the pending frame in the child, now (lock-step protocols); returns the
        steps run once their weights have reached `publish`."""
        with self._lock:
            sent = self._child.sent if self._child is not None else 0
        steps = self._call("run_pending", sent, self.command_timeout,
                           timeout=RUN_PENDING_TIMEOUT_S)
        self._deliver()
        return steps

    # ------------------------------------------------------------ the child

    def _spawn(self, restart: bool) -> ChildHandle:
        """A new child, up and ready (RuntimeError with its error otherwise)."""
        how = ChildStart(restart, self._enabled, self.cfg.worker.threads)
        handle, report = ChildHandle.spawn(self._ctx, self._spec, self.shared, how,
                                           self._procs, START_TIMEOUT_S)
        self._set_report(report, fresh=True)
        return handle

    def _install(self, handle: ChildHandle) -> None:
        with self._lock:
            self._child, self._down = handle, ""
            self._lock.notify_all()

    def _start_relay(self) -> None:
        if not self._relay_thread.is_alive():
            self._relay_thread = threading.Thread(target=self._relay, daemon=True,
                                                  name="hmr_ros-adaptation-relay")
            self._relay_thread.start()

    def _set_report(self, rep: Report, fresh: bool = False) -> None:
        with self._lock:
            if fresh or self._report is None or rep.seq > self._report.seq:
                self._report = rep

    def _relay(self) -> None:
        """The parent's thread: the child's words, its weights to `publish`, its death."""
        while not self._stopping:
            child = self._child
            if child is None:
                return
            try:
                ready = wait([child.events, child.proc.sentinel], timeout=1.0)
            except (OSError, ValueError):  # closed by `stop` meanwhile
                continue
            if not ready or child is not self._child:
                continue
            try:
                msg = child.events.recv() if child.events in ready else None
            except (EOFError, OSError):
                msg = None
            if msg is None:
                if not self._stopping and child is self._child:
                    self._replace(child)
            elif msg[0] in ("published", "report"):
                self._set_report(msg[-1])
                if msg[0] == "published":
                    self._deliver()

    def _deliver(self) -> None:
        """The newest weights in shared memory, if newer than the last handed over, to
        `publish` (the relay thread, or a caller that waits for them)."""
        with self._deliver_lock:
            got = self.shared.read(self._accepted[1])
            if got is None:
                return
            try:
                self._publish(*got)
            except Exception:
                log.exception("adaptation: publishing model version %d failed", got[1])
                return
            self._accepted = got

    def _replace(self, dead: ChildHandle) -> None:
        """The child died: say so, restore the shared weights to the last accepted version
        if it died mid-copy, and start a new child from them."""
        dead.proc.join(5.0)
        code = dead.proc.exitcode
        with self._lock:
            self.crashes += 1
            if self._report is not None:  # counts go on across children
                st = self._report.status
                self._carried = [a + b for a, b in zip(self._carried, (
                    st.steps, st.rollbacks, st.resets, st.errors, self._report.samples_used))]
            self._down = (f"the adaptation process (pid {dead.proc.pid}) died (exit code "
                          f"{code}); restarting it from model version {self._accepted[1]}")
            self._lock.notify_all()
        log.error("adaptation: %s", self._down)
        dead.end(1.0)
        self.shared.renew_lock()  # it may have died holding the old one
        if self.shared.torn:
            self.shared.restore(*self._accepted)
        else:
            self._deliver()  # what it published last, if the relay had not read it yet
        try:
            handle = self._spawn(restart=True)
        except RuntimeError as err:
            with self._lock:
                self._child, self._failed = None, f"{self._down}; failed: {err}"
                self._lock.notify_all()
            log.error("adaptation: %s", self._failed)
            return
        with self._lock:
            self.restarts += 1
            self._crash_message = (f"the adaptation process died (exit code {code}) and was "
                                   f"restarted from model version {self.shared.version} "
                                   f"(restart {self.restarts})")
        self._install(handle)
        if self._stopping:
            handle.end(1.0)
            return
        self._call("set_enabled", self._enabled)  # a switch while it started
        if self._background:
            self._call("start")

    def _call(self, name: str, *args: Any, timeout: float | None = None) -> Any:
        """Command `name(*args)` in the child, waiting for its result (its exception is
        raised here). Waits for a child being restarted; RuntimeError when none runs."""
        wait_s = timeout if timeout is not None else self.command_timeout + REPLY_MARGIN_S
        with self._lock:
            self._lock.wait_for(lambda: not self._down or self._child is None
                                or self._stopping, wait_s)
            child = self._child
            if child is None or self._down:
                raise RuntimeError(f"adaptation {name}: no adaptation process runs "
                                   f"({self._failed or self._down or 'stopped'})")
        return self._ask(child, name, args, wait_s)

    def _ask(self, child: ChildHandle, name: str, args: tuple, timeout: float) -> Any:
        with self._cmd_lock:
            ok, result, report = child.ask(next(self._ids), name, args, timeout)
        self._set_report(report)
        if not ok:
            raise result
        return result


