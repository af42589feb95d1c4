"""Spread of a benchmark metric over stream seeds: the mean and a bootstrap interval.

The unit of resampling is the seed (one whole stream): frames within a stream are strongly
correlated, and seeds are what a re-run with other seeds would change. The interval is the
percentile bootstrap of the mean over seeds, with a fixed RNG seed so that a table is
reproduced to the digit. Two methods run on the same seeds, so their difference is judged on
the per-seed differences (`paired_difference`), which removes the streams' own difficulty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """Mean of `n` values and its bootstrap interval at `level`."""

    mean: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def overlaps(self, other: Interval) -> bool:
        return bool(self.low <= other.high and other.low <= self.high)

    def excludes_zero(self) -> bool:
        return bool(self.low > 0.0 or self.high < 0.0)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def bootstrap_mean(values: Sequence[float] | np.ndarray, level: float = LEVEL,
                   resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """Percentile bootstrap interval of the mean of the finite `values`. One value gives a
    zero-width interval; none gives NaN."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, level)
    mean = float(v.mean())
    if len(v) == 1:
        return Interval(mean, mean, mean, 1, level)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(mean, float(low), float(high), len(v), level)


def paired_difference(a: dict[int, float], b: dict[int, float], **kwargs) -> Interval:
    """Bootstrap interval of the mean per-seed difference a - b over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    return bootstrap_mean([a[s] - b[s] for s in seeds], **kwargs)
