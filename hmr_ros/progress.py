"""Progress of long commands on stderr, drawn by tqdm.

On a terminal it is tqdm's bar, redrawn in place (carriage returns) at most every 0.2 s. When
the stream is not a terminal (CI logs, `2> file`, a pipe) redrawing in place would leave one
line of thousands of `\\r`-joined repaints, and tqdm's own answer (`disable=None`: nothing at
all) would make an hour of training look hung. There it writes plain lines instead: one when
the task starts, then at most one per `log_interval_s` (default 30 s: a few lines a minute
keep a log readable), and the final state at the end, each line ending in a newline.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

TTY_INTERVAL_S = 0.2  # redraw rate of the bar on a terminal
LOG_INTERVAL_S = 30.0  # at most one line this often when the stream is not a terminal


class _LineBar(tqdm):
    """tqdm that prints each refresh as a line of its own: no carriage returns, no clearing
    (tqdm's documented way to change the output: override `display`)."""

    # tqdm's monitor thread refreshes from a thread of its own when updates are rare; the
    # interval check in `update` is all a log needs.
    monitor_interval = 0

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing the line: nothing to clear in a log
            return False
        state = (self.n, self.postfix, msg)
        if state == getattr(self, "_last_state", None):
            return False  # the closing refresh right after a printed update: same line
        self._last_state = state
        self.fp.write((str(self) if msg is None else msg) + "\n")
        self.fp.flush()
        return True


class Progress:
    """`with Progress(total, "render") as bar: ... bar.update(1, loss=0.3)`.

    `total=None` counts without a bar; `enabled=False` writes nothing at all. The values given
    to `update` as keywords are shown after the bar (`loss=0.3`, floats with 4 significant
    digits) and kept until replaced. `n` is the count so far; setting it (a resumed run)
    starts the count there.
    """

    def __init__(self, total: int | None, desc: str, stream: TextIO | None = None,
                 enabled: bool = True, log_interval_s: float = LOG_INTERVAL_S) -> None:
        self.total = total
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.info: dict[str, object] = {}
        self._n = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        options: dict[str, Any] = dict(total=total, desc=desc, file=self.stream,
                                       disable=not enabled)
        if self._tty:
            self._bar: tqdm = tqdm(mininterval=TTY_INTERVAL_S, dynamic_ncols=True, leave=True,
                                   **options)
        else:
            # ascii: a log viewer may not render tqdm's block characters; miniters=1: the
            # time check alone decides (tqdm would otherwise skip checks after fast updates);
            # leave=False: tqdm's own closing display ends in a bare newline, `close` below
            # prints the final line instead.
            self._bar = _LineBar(mininterval=log_interval_s, miniters=1, ascii=True,
                                 leave=False, **options)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def n(self) -> int:
        return self._n

    @n.setter
    def n(self, value: int) -> None:
        self._n = value
        if self.enabled:
            # Counted from here: the rate does not include the steps done before.
            self._bar.n = self._bar.last_print_n = self._bar.initial = value

    def update(self, n: int = 1, **info: object) -> None:
        self._n = self.n + n
        self.info.update(info)
        if not self.enabled:
            return
        if info:
            self._bar.set_postfix_str(_postfix(self.info), refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self.enabled and not self._tty and not self._bar.disable:
            self._bar.refresh()  # the final count and values, even between intervals
        self._bar.close()


def _postfix(info: dict[str, object]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in info.items())
