"""Warnings that a stream can repeat thousands of times: once per key, or at most once per
period per key. Every input adapter and the node use this, so a bad input is logged the same
way (and counted by the caller) wherever it enters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol


class Log(Protocol):
    def info(self, msg: str) -> None: ...

    def warning(self, msg: str) -> None: ...

    def error(self, msg: str) -> None: ...


class ThrottledLog:
    def __init__(self, log: Log | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.log: Log = log or logging.getLogger("hmr_ros")
        self.clock = clock
        self._warned: set[str] = set()
        self._last: dict[str, float] = {}

    def warned(self, key: str) -> bool:
        return key in self._warned

    def once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning(msg)

    def throttled(self, key: str, msg: str, period: float = 10.0) -> None:
        now = self.clock()
        if now - self._last.get(key, -float("inf")) >= period:
            self._last[key] = now
            self._warned.add(key)
            self.log.warning(msg)
