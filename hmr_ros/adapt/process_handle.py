"""`ChildHandle`: one adaptation child process and the parent's ends of its channels, for
`ProcessAdaptationWorker` (`process_worker.py`): its start, one command and its reply, its
end."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from .process_child import ChildStart, Report, main
from .shared_weights import SharedWeights

log = logging.getLogger("hmr_ros")


@dataclass(eq=False)
class ChildHandle:
    proc: Any
    commands: Any  # duplex pipe: (id, name, args) -> (id, ok, result, Report)
    events: Any  # the child's words: ready, failed, published, report
    samples: Any  # queue of ("samples", [AdaptSample]) / ("forget", track)
    consumed: Any  # shared counter: queue items the child has taken
    sent: int = 0  # queue items put (by the parent, under its lock)

    @classmethod
    def spawn(cls, ctx, spec: bytes, shared: SharedWeights, how: ChildStart, procs: list,
              timeout: float) -> tuple[ChildHandle, Report]:
        """A new child (appended to `procs`), up and ready, and its first report;
        RuntimeError with the child's error (its traceback logged) when it does not start
        within `timeout` s."""
        cmd_parent, cmd_child = ctx.Pipe(duplex=True)
        ev_parent, ev_child = ctx.Pipe(duplex=False)
        queue, consumed = ctx.Queue(), ctx.RawValue("q", 0)
        proc = ctx.Process(target=main, name="hmr_ros-adaptation", daemon=True,
                           args=(shared, queue, cmd_child, ev_child, consumed, how))
        proc.start()
        cmd_child.close()  # the child's ends: closed here, so that its death closes the pipes
        ev_child.close()
        procs.append(proc)
        handle = cls(proc, cmd_parent, ev_parent, queue, consumed)
        msg: Any = None
        try:
            # The spec after the start, on the pipe: a send fails (rather than hangs, as
            # CPython's write of a large start payload does) when the child dies first, e.g.
            # under a main module without `if __name__ == "__main__"`.
            cmd_parent.send_bytes(spec)
            if wait([ev_parent, proc.sentinel], timeout) and ev_parent.poll():
                msg = ev_parent.recv()
        except (EOFError, OSError):
            pass
        if msg is None or msg[0] != "ready":
            handle.end(1.0)
            if msg is not None:
                log.error("adaptation process failed to start:\n%s", msg[2])
            why = msg[1] if msg is not None else \
                f"it exited with code {proc.exitcode}" if proc.exitcode is not None else \
                f"no word within {timeout:g} s"
            raise RuntimeError(f"the adaptation process did not start: {why}")
        return handle, msg[1]

    def ask(self, req: int, name: str, args: tuple, timeout: float
            ) -> tuple[bool, Any, Report]:
        """Command `name(*args)` as request `req`: (ok, result or exception, report).
        TimeoutError when no reply comes within `timeout` s, RuntimeError when the child
        dies first. The caller serialises calls."""
        try:
            self.commands.send((req, name, args))
        except (OSError, ValueError) as err:
            raise RuntimeError(f"adaptation {name}: the adaptation process is gone "
                               f"({err})") from None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready = wait([self.commands, self.proc.sentinel], timeout=left)
            if self.commands in ready:
                try:
                    rid, ok, result, report = self.commands.recv()
                except (EOFError, OSError):
                    break
                if rid == req:
                    return ok, result, report
                continue  # the late reply to a command that timed out
            if ready:  # the sentinel alone: the child died
                break
        if self.proc.is_alive():
            raise TimeoutError(f"adaptation {name}: the adaptation process did not answer "
                               f"within {timeout:g} s")
        raise RuntimeError(f"adaptation {name}: the adaptation process died (exit code "
                           f"{self.proc.exitcode})")

    def end(self, timeout: float) -> None:
        """Join the child, then terminate, then kill it; close the parent's ends."""
        proc = self.proc
        proc.join(timeout)
        for stop in (proc.terminate, proc.kill):
            if proc.is_alive():
                stop()
                proc.join(2.0)
        self.samples.cancel_join_thread()  # a dead reader: never wait for the feeder at exit
        self.samples.close()
        self.commands.close()
        self.events.close()


def end_all(procs: list) -> None:
    """The finaliser (also at interpreter exit): no child outlives its worker."""
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
