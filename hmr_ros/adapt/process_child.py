"""The adaptation process's side of `ProcessAdaptationWorker` (`process_worker.py`).

`main` runs in a child started with the `spawn` method. It builds the `Adapter` from the
parent's pickled `AdapterSpec` (from the weights in `SharedWeights` when it replaces a child
that died) and drives a plain `AdaptationWorker` with it: the worker's logic (schedule,
batches, steps, guard, commands between steps) is the thread worker's, unchanged; only its
`publish` differs, writing into the shared tensors and telling the parent.

Threads of the child: the main thread answers the parent's commands (and runs lock-step
`run_pending` steps), an intake thread moves samples from the queue into the worker's buffer,
a reporter sends the status every `REPORT_S`, and, once started, the worker's own thread
steps. The child ends when the parent says `stop` or when the parent is gone (its end of the
command pipe closes).
"""

from __future__ import annotations

import io
import pickle
import threading
import traceback
from dataclasses import dataclass
from typing import Any

import torch

from .batch import AdaptStatus
from .shared_weights import SharedWeights

REPORT_S = 0.5  # the child's status reaches the parent at least this often


@dataclass(frozen=True)
class Report:
    """The child's status as the parent shows it; `seq` orders reports that reach the parent
    over different pipes (a command's reply, the events)."""

    seq: int
    status: AdaptStatus
    samples_used: int
    alive: bool  # the worker's own thread runs


@dataclass(frozen=True)
class ChildStart:
    """How a child starts: from the shared weights (a restart) or from the spec's model, with
    adaptation enabled or not, with `threads` torch threads."""

    restart: bool
    enabled: bool
    threads: int


class _Child:
    def __init__(self, shared: SharedWeights, samples, events, consumed) -> None:
        self.worker: Any = None  # the AdaptationWorker, set once built (it needs `publish`)
        self.shared = shared
        self.samples = samples
        self.events = events
        self.consumed = consumed  # shared counter: queue items taken (the parent's bound)
        self._send_lock = threading.Lock()  # events are sent from several threads
        self._seq = 0
        self._received = threading.Condition()
        self.received = 0

    def report(self) -> Report:
        with self._send_lock:
            self._seq += 1
            seq = self._seq
        w = self.worker
        return Report(seq, w.status(), w.samples_used, w.alive)

    def event(self, *msg: Any) -> None:
        with self._send_lock:
            self.events.send(msg)

    def publish(self, state: dict[str, torch.Tensor], version: int) -> None:
        """The worker's publish (its stepping thread): shared tensors, then a word."""
        self.shared.write(state, version)
        self.event("published", version, self.report())

    def intake(self) -> None:
        while True:
            item = self.samples.get()
            if item is None:
                return
            kind, payload = item
            if kind == "samples":
                self.worker.submit(payload)
            else:
                self.worker.forget(payload)
            with self._received:
                self.received += 1
                self.consumed.value = self.received
                self._received.notify_all()

    def reporter(self, stop: threading.Event) -> None:
        while not stop.wait(REPORT_S):
            try:
                self.event("report", self.report())
            except (OSError, ValueError):  # the parent is gone
                return

    # ------------------------------------------------------------ commands

    def start(self) -> None:
        self.worker.start()

    def run_pending(self, sent: int, timeout: float) -> int:
        """After the `sent`-th queue item has reached the buffer (samples and commands travel
        on different channels), the worker's run_pending on this thread."""
        with self._received:
            if not self._received.wait_for(lambda: self.received >= sent, timeout):
                raise TimeoutError(f"adaptation run_pending: {sent - self.received} of the "
                                   f"submitted frames did not arrive within {timeout:g} s")
        return self.worker.run_pending()

    def reset(self, timeout: float) -> int:
        self.worker.command_timeout = timeout
        return self.worker.reset()

    def snapshot(self, timeout: float) -> tuple[bytes, int, int, int]:
        """The last good snapshot: its weights (torch.save bytes, CPU) and counts."""
        self.worker.command_timeout = timeout
        snap = self.worker.snapshot()
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in snap.state.items()}, buf)
        return buf.getvalue(), snap.version, snap.steps, snap.rollbacks

    def set_enabled(self, enabled: bool) -> None:
        self.worker.set_enabled(enabled)

    def status(self) -> None:
        """Nothing: every reply carries a report."""

    def stop(self, timeout: float) -> None:
        self.worker.stop(timeout)


def _picklable(err: BaseException) -> BaseException:
    try:
        pickle.dumps(err)
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def main(shared: SharedWeights, samples, commands, events, consumed, how: ChildStart) -> None:
    """The child's entry point (see the module docstring); the parent's `AdapterSpec` and
    source replay set arrive first on the command pipe (pickled by the parent)."""
    from .methods import Adapter
    from .worker import AdaptationWorker

    torch.set_num_threads(how.threads)
    try:
        spec = commands.recv_bytes()
        # From the parent that started this process over its private pipe, never a file.
        adapter_spec, replay = pickle.loads(spec)
        s = adapter_spec
        adapter = Adapter(s.model, s.body, s.cfg, s.prior, s.inference_device)
        if how.restart:  # from the last accepted weights, not the source's
            state, version = shared.load()
            adapter.load_state(state)
            with torch.no_grad():
                adapter.teacher.load_state_dict(state)
            adapter.version = version
        child = _Child(shared, samples, events, consumed)
        child.worker = AdaptationWorker(adapter, s.cfg, child.publish, replay=replay)
        child.worker.set_enabled(how.enabled)
    except BaseException as err:
        events.send(("failed", f"{type(err).__name__}: {err}", traceback.format_exc()))
        return
    child.event("ready", child.report())
    threading.Thread(target=child.intake, name="hmr_ros-adaptation-intake",
                     daemon=True).start()
    stopped = threading.Event()
    threading.Thread(target=child.reporter, args=(stopped,), name="hmr_ros-adaptation-report",
                     daemon=True).start()
    while True:
        try:
            req, name, args = commands.recv()
        except (EOFError, OSError):  # the parent is gone: so is the reason to adapt
            child.worker.stop(5.0)
            break
        try:
            result, ok = getattr(child, name)(*args), True
        except BaseException as err:  # handed to the caller; the child carries on
            result, ok = _picklable(err), False
        commands.send((req, ok, result, child.report()))
        if name == "stop":
            break
    stopped.set()
