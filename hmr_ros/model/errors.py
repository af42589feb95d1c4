"""Errors of the inference backends and of exporting the regressor to them.

Their own module so that callers that only report them (the command line's one-line errors,
the backends) need not import the exporters.
"""

from __future__ import annotations

from ..errors import HmrRosError


class ExportError(HmrRosError, RuntimeError):
    """An export that cannot be produced or would not map every weight to the graph."""


class BackendUnavailable(HmrRosError, RuntimeError):
    """An inference backend cannot run here (its package or device is missing)."""


class TensorRTUnavailable(BackendUnavailable):
    """TensorRT (the `tensorrt` Python package) or a CUDA device is missing."""
