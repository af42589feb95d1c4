"""A publish callback for worker tests: every (version, state dict) the worker hands to
inference, in publication order, with waits bounded so that a hang fails instead of
blocking the suite."""

from __future__ import annotations

import threading

import torch

WAIT_S = 60.0  # upper limit of every wait for another thread or process


class Published:
    def __init__(self) -> None:
        self.items: list[tuple[int, dict[str, torch.Tensor]]] = []
        self._cond = threading.Condition()

    def __call__(self, state: dict[str, torch.Tensor], version: int) -> None:
        with self._cond:
            self.items.append((version, {k: v.detach().clone() for k, v in state.items()}))
            self._cond.notify_all()

    def wait_for(self, version: int, at_least: bool = False) -> dict[str, torch.Tensor]:
        """The weights published as `version` (with `at_least`, the first published at
        `version` or later: a process worker's relay hands over only the newest of versions
        written while it was busy)."""
        def hit(v: int) -> bool:
            return v >= version if at_least else v == version

        with self._cond:
            assert self._cond.wait_for(lambda: any(hit(v) for v, _ in self.items),
                                       WAIT_S), f"version {version} never published"
            return next(s for v, s in self.items if hit(v))

    @property
    def versions(self) -> list[int]:
        with self._cond:
            return [v for v, _ in self.items]

    def last(self) -> tuple[int, dict[str, torch.Tensor]]:
        with self._cond:
            return self.items[-1]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
