"""Strict JSON out: every file this package writes is valid JSON (RFC 8259); `write_json`
writes one.

Python's json writes NaN and Infinity as bare words, which other readers (jq, browsers,
`json.loads(..., parse_constant=...)` users) reject; a metric that could not be computed is
written as null instead, and `allow_nan=False` makes any other non-finite value an error at
write time rather than a broken file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np


def strict(obj: Any) -> Any:
    """`obj` with dataclasses, numpy values, tuples and paths made plain, and every non-finite
    float replaced by None."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return strict(asdict(obj))
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) else k: strict(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps of `strict(obj)` with allow_nan=False."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write `payload` as indented strict JSON (`dumps`) to `path`, creating its folder; the
    file is replaced in one rename, so a reader never sees half of it. Returns the path.
    TypeError for an object `strict` cannot make plain."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Strict JSON: a metric that could not be computed (NaN) is null, never a bare NaN.
    tmp.write_text(dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path
