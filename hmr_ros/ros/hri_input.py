"""ROS4HRI skeletons as input (`hri_input`): another detector's `hri_msgs/Skeleton2D`, one
topic per tracked body (ids from `/humans/bodies/tracked`), gathered into the people of one
stamp for `FrameSync`, with the detector's ids kept (`HriIds`).

A stamp's people are handed on when every tracked body has sent its skeleton for it, or when
a newer stamp starts (a body that skipped a frame does not hold the frame back). ROS-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..messages.factory import stamp_to_ns
from ..messages.hri import HriIds
from ..stream.frames import SkeletonPeople


class SkeletonGather:
    def __init__(self, ids: HriIds, keep: int = 8) -> None:
        self.ids = ids
        self.keep = keep
        self._tracked: set[str] = set()
        self._pending: dict[int, dict[str, Any]] = {}  # stamp -> body -> Skeleton2D

    def tracked(self, names: Iterable[str]) -> None:
        self._tracked = set(names)

    def add(self, body: str, msg: Any) -> list[tuple[int, SkeletonPeople]]:
        """Store one skeleton; returns the stamps now complete, oldest first."""
        stamp = stamp_to_ns(msg.header.stamp)
        self._pending.setdefault(stamp, {})[body] = msg
        done = []
        for s in sorted(self._pending):
            bodies = self._pending[s]
            complete = self._tracked <= set(bodies) if self._tracked else True
            if s < stamp or complete:
                done.append(s)
        while len(self._pending) - len(done) > self.keep:  # never grow without bound
            done.append(min(s for s in self._pending if s not in done))
        out = []
        for s in sorted(set(done)):
            bodies = self._pending.pop(s)
            out.append((s, SkeletonPeople(tuple(
                (self.ids.track(name), m) for name, m in sorted(bodies.items())))))
        return out
