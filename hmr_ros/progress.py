"""A dependency-free progress bar for long commands (stderr; one line per 10% when piped)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`with Progress(total, "render") as bar: ... bar.update(1, loss=0.3)`."""

    def __init__(self, total: int | None, desc: str, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.total = total
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.n = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.info: dict[str, object] = {}

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1, **info: object) -> None:
        self.n += n
        self.info.update(info)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            if now - self._last_draw > 0.2 or (self.total and self.n >= self.total):
                self._draw(end="\r")
                self._last_draw = now
        elif self.total:
            decile = int(10 * self.n / self.total)
            if decile != self._last_decile:
                self._last_decile = decile
                self._draw(end="\n")

    def _draw(self, end: str) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self.info.items())
        if self.total:
            frac = min(1.0, self.n / self.total)
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
            text = (f"{self.desc} [{bar}] {self.n}/{self.total} {100 * frac:5.1f}% "
                    f"{rate:.1f}/s eta {eta:5.0f}s {extra}")
        else:
            text = f"{self.desc} {self.n} {rate:.1f}/s {extra}"
        self.stream.write(text.ljust(100) + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty:
            self._draw(end="\n")
