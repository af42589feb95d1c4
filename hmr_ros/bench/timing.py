"""Small timing helpers shared by the benchmarks (never used in tests' assertions)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Latency statistics of repeated calls, milliseconds."""

    n: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    min_ms: float

    @classmethod
    def from_seconds(cls, samples: list[float] | np.ndarray) -> Timing:
        ms = np.asarray(samples, dtype=np.float64) * 1000.0
        return cls(n=len(ms), mean_ms=float(ms.mean()), p50_ms=float(np.percentile(ms, 50)),
                   p95_ms=float(np.percentile(ms, 95)), min_ms=float(ms.min()))


def time_calls(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> Timing:
    """Call `fn` warmup + repeats times and time the last `repeats` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Timing.from_seconds(samples)
