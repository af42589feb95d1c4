"""`Commands`: functions that must run on the thread that owns some state, between two of its
units of work, called from any thread and waited for.

The adaptation worker's state (weights, optimiser, guard, last good snapshot) is changed by its
steps; a reset or a save from another thread would otherwise land in the middle of a step.
While the owner thread runs (`open` .. `close`), `call` queues the function and waits for the
owner to run it (`run_queued`, between steps). Otherwise it runs on the caller's thread under
the work lock, which whoever runs the steps without a thread (`run_pending`) holds as well.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

_T = TypeVar("_T")


@dataclass(eq=False)
class _Command:
    """One queued function and its outcome."""

    name: str
    run: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Commands:
    """A queue of functions for an owner thread.

    `cond` is the owner's condition (notified when a command arrives, so an owner waiting
    for work wakes up); it is held only for queue operations. `work_lock` is held while a
    command runs, and by the owner (or a thread-less caller) while it works, so commands
    and work never interleave.
    """

    def __init__(self, cond: threading.Condition, work_lock: threading.RLock) -> None:
        self._cond = cond
        self._work_lock = work_lock
        self._queue: deque[_Command] = deque()
        self._owner: threading.Thread | None = None  # queued to while not None

    def open(self, owner: threading.Thread) -> None:
        """From now on commands are queued for `owner` (before it starts)."""
        with self._cond:
            self._owner = owner

    def close(self) -> None:
        """The owner is leaving: later calls run on their callers' threads, and the ones
        queued until now run here (on the owner, as its last act), so none waits for a
        thread that has gone."""
        with self._cond:
            self._owner = None
        self.run_queued()

    @property
    def pending(self) -> bool:
        """Whether commands are waiting (read under `cond`)."""
        return bool(self._queue)

    def call(self, name: str, fn: Callable[[], _T], timeout: float) -> _T:
        """`fn()` run between two units of the owner's work; its result or its exception.

        TimeoutError, saying whether the command was cancelled (it had not started) or will
        still take effect, when the owner does not complete it within `timeout` s."""
        cmd = _Command(name, fn)
        with self._cond:
            owner = self._owner
            if owner is threading.current_thread():
                owner = None  # the owner itself (e.g. from its publish callback): run now
            elif owner is not None:
                self._queue.append(cmd)
                self._cond.notify_all()
        if owner is None:
            with self._work_lock:
                return fn()
        if not cmd.done.wait(timeout):
            with self._cond:
                cancelled = cmd in self._queue
                if cancelled:
                    self._queue.remove(cmd)
            what = "was cancelled before it started" if cancelled else \
                "started and will still take effect"
            raise TimeoutError(f"adaptation {name}: the worker thread did not complete it "
                               f"within {timeout:g} s (a step stuck?); the {name} {what}")
        if cmd.error is not None:
            raise cmd.error
        return cmd.result

    def run_queued(self) -> None:
        """Run the queued commands, oldest first (the owner, between units of work)."""
        while True:
            with self._cond:
                if not self._queue:
                    return
                cmd = self._queue.popleft()
            with self._work_lock:
                try:
                    cmd.result = cmd.run()
                except Exception as err:  # handed to the caller; the owner carries on
                    cmd.error = err
                finally:
                    cmd.done.set()
