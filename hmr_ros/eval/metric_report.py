"""Aggregating per-sample metric values: `summarize` and the accumulating `MetricReport`.

NaN values (undefined samples) are kept and counted but ignored by every mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .metric_inputs import ArrayLike, to_float64


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _values(values: object, name: str) -> np.ndarray:
    """Per-sample values (scalar or any shape) as a flat float64 copy."""
    return np.array(to_float64(values, name), dtype=np.float64).reshape(-1)


def summarize(per_sample: Mapping[str, ArrayLike]) -> dict[str, float]:
    """Mean of each metric's per-sample values, ignoring NaN (NaN if all are NaN or empty).

    per_sample: {name: (N,) or any shape} -> {name: float}
    """
    return {name: _nanmean(_values(v, name)) for name, v in per_sample.items()}


@dataclass(frozen=True, eq=False)
class MetricReport:
    """Per-sample metric values accumulated over a stream (frames, batches, sequences).

    The instance is frozen (its attributes cannot be rebound) but accumulates: `add` appends
    values under a name. NaN values (undefined samples) are kept and counted in `to_dict`'s
    "total" but ignored by every mean. Names keep their first-insertion order.

        report = MetricReport()
        report.add("mpjpe_mm", mpjpe(pred, gt, root=0))
        report.add("accel_mm", accel_error(pred_seq, gt_seq))
        report.means()  # {"mpjpe_mm": ..., "accel_mm": ...}
    """

    _chunks: dict[str, list[np.ndarray]] = field(default_factory=dict, init=False, repr=False)

    def add(self, name: str, values: ArrayLike | float) -> None:
        """Append per-sample values (a scalar or an array of any shape, flattened)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        self._chunks.setdefault(name, []).append(_values(values, name))

    def add_all(self, per_sample: Mapping[str, ArrayLike | float]) -> None:
        """`add` each entry of a {name: values} mapping."""
        for name, values in per_sample.items():
            self.add(name, values)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._chunks)

    def values(self, name: str) -> np.ndarray:
        """All values added under `name`, in order, NaN included. -> (N,) float64"""
        if name not in self._chunks:
            raise KeyError(f"no metric {name!r} in this report (have {list(self._chunks)})")
        return np.concatenate(self._chunks[name])

    def counts(self) -> dict[str, int]:
        """Number of valid (non-NaN) values per metric."""
        return {n: int((~np.isnan(self.values(n))).sum()) for n in self._chunks}

    def means(self) -> dict[str, float]:
        """Mean of each metric over all its non-NaN values (NaN if there are none)."""
        return {n: _nanmean(self.values(n)) for n in self._chunks}

    def to_dict(self) -> dict[str, dict[str, float | int | None]]:
        """JSON-ready summary: {name: {"mean": float | None, "count": valid, "total": all}}.

        "mean" is None when no value is valid (strict JSON has no NaN).
        """
        out: dict[str, dict[str, float | int | None]] = {}
        for n in self._chunks:
            v = self.values(n)
            mean = _nanmean(v)
            out[n] = {
                "mean": None if math.isnan(mean) else mean,
                "count": int((~np.isnan(v)).sum()),
                "total": int(v.size),
            }
        return out
