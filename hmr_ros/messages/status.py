"""hmr_ros/AdaptationStatus and diagnostic_msgs/DiagnosticArray."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .factory import ConversionError, MessageFactory, make_header

#: AdaptationWorker state names -> AdaptationStatus.STATE_* (a stopped worker reads as paused).
ADAPT_STATES = {"idle": 0, "running": 1, "paused": 2, "error": 3, "stopped": 2}


def _clip_uint(value: Any, bits: int) -> int:
    return int(min(max(int(value), 0), 2**bits - 1))


def adaptation_status_to_msg(factory: MessageFactory, status: Any, stamp_ns: int) -> Any:
    """An `AdaptStatus` (hmr_ros.adapt.worker) -> hmr_ros/AdaptationStatus."""
    if status.state not in ADAPT_STATES:
        raise ConversionError(f"unknown adaptation state {status.state!r}; known: "
                              f"{sorted(ADAPT_STATES)}")
    return factory.new(
        "hmr_ros/msg/AdaptationStatus", header=make_header(factory, stamp_ns, ""),
        state=ADAPT_STATES[status.state], enabled=bool(status.enabled),
        method=str(status.method), model_version=_clip_uint(status.version, 32),
        steps=_clip_uint(status.steps, 64), rollbacks=_clip_uint(status.rollbacks, 32),
        steps_per_second=float(status.steps_per_second), last_loss=float(status.last_loss),
        buffered_frames=_clip_uint(status.buffered, 32), message=str(status.message))


# ------------------------------------------------------------------------ diagnostics

DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


@dataclass(frozen=True)
class DiagnosticEntry:
    """One diagnostic_msgs/DiagnosticStatus: level (DIAG_*), name, message, values."""

    name: str
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)
    hardware_id: str = ""


def diagnostics_to_msg(factory: MessageFactory, entries: Sequence[DiagnosticEntry],
                       stamp_ns: int) -> Any:
    """diagnostic_msgs/DiagnosticArray (the level is a `byte`: an int here, a 1-byte `bytes`
    in rclpy, which RclpyFactory converts)."""
    status = []
    for e in entries:
        if e.level not in (DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE):
            raise ConversionError(f"diagnostic level must be 0..3, got {e.level}")
        values = [factory.new("diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v))
                  for k, v in e.values.items()]
        status.append(factory.new("diagnostic_msgs/msg/DiagnosticStatus", level=int(e.level),
                                  name=e.name, message=e.message, hardware_id=e.hardware_id,
                                  values=values))
    return factory.new("diagnostic_msgs/msg/DiagnosticArray",
                       header=make_header(factory, stamp_ns, ""), status=status)
