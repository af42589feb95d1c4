"""OS priority of background threads (adaptation, HOG proposals)."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("hmr_ros")


def lower_thread_priority(nice: int, what: str = "adapt.worker.thread_nice") -> None:
    """Add `nice` to the calling thread's OS niceness (Linux), so that the inference and ROS
    threads preempt it when the CPUs are busy; a warning naming `what` where that is not
    possible."""
    if not nice:
        return
    try:  # Linux: PRIO_PROCESS with a thread id sets that thread's niceness only
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError) as err:
        log.warning("%s %d not applied: %s", what, nice, err)
