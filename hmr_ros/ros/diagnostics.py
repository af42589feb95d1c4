"""The node's /diagnostics: rates, latencies, counted skips, the adaptation's state."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from ..messages.status import DIAG_ERROR, DIAG_OK, DIAG_WARN, DiagnosticEntry

if TYPE_CHECKING:
    from .engine import NodeEngine

STALE_S = 3.0  # inputs silent for longer than this are reported in diagnostics


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.times: deque[float] = deque()
        self.count = 0
        self.last: float | None = None

    def tick(self, now: float) -> None:
        self.times.append(now)
        self.count += 1
        self.last = now
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self.times) < 2:
            return 0.0
        span = max(now - self.times[0], self.times[-1] - self.times[0])
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def silent_for(self, now: float) -> float:
        return float("inf") if self.last is None else now - self.last


def diagnostic_entries(engine: NodeEngine) -> list[DiagnosticEntry]:
    """The estimator's and the adaptation's DiagnosticStatus entries."""
    now = engine.clock()
    node = engine.node
    skipped = engine.assembler.skipped
    level, message = DIAG_OK, ""
    images_silent = engine.images.silent_for(now)
    kp_silent = engine.keypoints.silent_for(now)
    out_silent = engine.publisher.rate.silent_for(now)
    new_errors = engine.errors - engine.errors_reported
    engine.errors_reported = engine.errors
    problems: list[tuple[int, str]] = []
    if new_errors:
        problems.append((DIAG_ERROR, f"{new_errors} frame(s) failed: {engine.last_error}"))
    if not node.keypoints_topic and engine.stage.source is None:
        problems.append((DIAG_WARN, "no keypoints topic: nobody can be found, nothing is "
                                    "estimated"))
    if images_silent > STALE_S:
        problems.append((DIAG_WARN, f"no images on {node.image_subscription_topic}"))
    elif node.keypoints_topic and kp_silent > STALE_S:
        problems.append((DIAG_WARN, f"no keypoints on {node.keypoints_topic}"))
    elif node.keypoints_topic and out_silent > STALE_S:
        problems.append((DIAG_WARN, "images and keypoints arrive but their stamps do not "
                                    "match (see keypoints_tolerance)"))
    if engine.camera is None:
        problems.append((DIAG_WARN, f"no CameraInfo on {node.camera_info_topic}: fallback "
                                    f"focal {engine.config.inference.fallback_focal:g} px"))
    if problems:
        level = max(p[0] for p in problems)
        message = "; ".join(p[1] for p in problems)
    else:
        message = f"estimating at {engine.publisher.rate.rate(now):.1f} Hz"

    def mean(values: deque[float]) -> str:
        return f"{np.mean(values):.1f}" if values else "nan"

    def p95(values: deque[float]) -> str:
        return f"{np.percentile(values, 95):.1f}" if values else "nan"

    estimator = DiagnosticEntry(f"{engine.name}: estimator", level, message, {
        "image topic": node.image_subscription_topic,
        "keypoints topic": node.keypoints_topic or "(none)",
        "detector": engine.stage.source.name if engine.stage.source is not None else "(none)",
        "input rate (Hz)": f"{engine.images.rate(now):.2f}",
        "keypoints rate (Hz)": f"{engine.keypoints.rate(now):.2f}",
        "output rate (Hz)": f"{engine.publisher.rate.rate(now):.2f}",
        "images received": str(engine.images.count),
        "frames processed": str(engine.frames),
        "images dropped": str(engine.sync.dropped),
        "images skipped (undecodable)": str(skipped["image"] + engine.rejected_images),
        "keypoints skipped (unreadable)": str(skipped["keypoints"]),
        "camera_info skipped (unreadable)": str(skipped["camera_info"]),
        "images with a CameraInfo of another size": str(skipped["camera_size"]),
        "images waiting": str(engine.sync.waiting),
        "people (last frame)": str(engine.publisher.people_last),
        "latency (ms)": mean(engine.publisher.latency_ms),
        "latency p95 (ms)": p95(engine.publisher.latency_ms),
        "receive to publish (ms)": mean(engine.publisher.end_to_end_ms),
        "receive to publish p95 (ms)": p95(engine.publisher.end_to_end_ms),
        "camera info": "yes" if engine.camera is not None else "no (fallback focal)",
        "errors": str(engine.errors),
        "bad inputs": str(engine.bad_inputs),
        "model version": str(engine.adapt_status().version),
        # samples that entered an adaptation step: with the stream's length, how much of what
        # the camera delivered adaptation used
        "adaptation samples used": str(engine.adapt_status().samples_used),
    }, hardware_id=engine.frame_id)
    st = engine.adapt_status()
    adapt_level = DIAG_ERROR if st.state == "error" else DIAG_OK
    adapt_msg = (st.message or st.state) if st.state == "error" else \
        (f"{st.state}, {st.steps_per_second:.2f} steps/s" if st.enabled else "disabled")
    adaptation = DiagnosticEntry(f"{engine.name}: adaptation", adapt_level, adapt_msg, {
        "state": st.state, "enabled": str(st.enabled).lower(), "method": st.method,
        "model version": str(st.version), "steps": str(st.steps),
        "steps per second": f"{st.steps_per_second:.3f}", "rollbacks": str(st.rollbacks),
        "resets to source": str(st.resets),
        "last loss": f"{st.last_loss:.5g}", "buffered frames": str(st.buffered),
        "dropped": str(st.dropped), "errors": str(st.errors), "message": st.message,
        "samples used": str(st.samples_used),
    }, hardware_id=engine.frame_id)
    return [estimator, adaptation]

