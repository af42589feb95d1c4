"""Small timing helpers shared by the benchmarks (never used in tests' assertions)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import jsonio


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


def machine_info() -> dict[str, object]:
    """What a benchmark result needs to be read correctly later."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda": torch.cuda.is_available(),
    }


def write_json(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Strict JSON: a metric that could not be computed (NaN) is null, never a bare NaN.
    tmp.write_text(jsonio.dumps(payload, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def _jsonable(obj: object) -> object:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)  # type: ignore[arg-type]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
