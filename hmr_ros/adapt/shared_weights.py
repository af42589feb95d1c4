"""`SharedWeights`: the newest published weights of an adaptation process, in shared memory.

The parent allocates one shared-memory tensor per state-dict entry (and a small header) once,
before the first child starts, and hands the same tensors to every child it starts (a
restarted child reads its start weights from them). The child's `write` and the parent's
`read` hold an inter-process lock only for the copy, so neither ever sees half of one version
and half of another; the writer never waits for more than one copy of the weights.

A lock rather than a seqlock: the lock is a POSIX semaphore, a full memory barrier on every
CPU (a seqlock over plain tensor stores would need explicit fences on ARM boards, where the
node also runs). A child killed during its copy would leave the lock taken and the tensors
torn: the header's `writing` flag says so, `read` gives up after a timeout instead of
waiting for ever, and the parent, once it knows the child is gone, replaces the lock
(`renew_lock`) and restores the tensors from its own copy of the last version it accepted.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The header: [version of the weights in the tensors, 1 while a copy is in progress].
VERSION, WRITING = 0, 1


class SharedWeights:
    def __init__(self, like: dict[str, Tensor], version: int, ctx) -> None:
        """Tensors shaped as `like` (float entries as float32, as the adapter's student
        keeps them), filled with `like` as version `version`; `ctx` a multiprocessing
        context (its Lock)."""
        self._ctx = ctx
        dtypes = {k: torch.float32 if v.is_floating_point() else v.dtype for k, v in like.items()}
        sizes: dict[torch.dtype, int] = {}
        self._layout = []  # (key, dtype, offset, shape)
        for k, v in like.items():
            offset = sizes.get(dtypes[k], 0)
            self._layout.append((k, dtypes[k], offset, tuple(v.shape)))
            sizes[dtypes[k]] = offset + v.numel()
        # One storage per dtype: a child gets a handful of handles, not one per entry (the
        # start of a spawned child must stay small: CPython's parent blocks writing it to a
        # child that died before reading it all).
        self._flat = {d: torch.empty(n, dtype=d).share_memory_() for d, n in sizes.items()}
        self.tensors = self._views()
        self.header = torch.zeros(2, dtype=torch.int64).share_memory_()
        self.lock = ctx.Lock()
        self.restore(like, version)

    def _views(self) -> dict[str, Tensor]:
        return {k: self._flat[d][o:o + _numel(shape)].view(shape)
                for k, d, o, shape in self._layout}

    def __getstate__(self) -> dict:
        """What a child gets (at its start): the flat storages (shared), header and lock."""
        return {"_layout": self._layout, "_flat": self._flat, "header": self.header,
                "lock": self.lock}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _ctx=None)
        self.tensors = self._views()

    # ------------------------------------------------------------ the child

    def write(self, state: dict[str, Tensor], version: int) -> None:
        """Copy `state` in as `version` (the child's publish: on its stepping thread)."""
        with self.lock, torch.no_grad():
            self.header[WRITING] = 1
            for k, dst in self.tensors.items():
                dst.copy_(state[k])  # from the adapter's device
            self.header[VERSION] = int(version)
            self.header[WRITING] = 0

    def load(self) -> tuple[dict[str, Tensor], int]:
        """A private copy of the weights and their version (a starting child)."""
        with self.lock:
            return {k: v.clone() for k, v in self.tensors.items()}, int(self.header[VERSION])

    # ------------------------------------------------------------ the parent

    @property
    def version(self) -> int:
        """The version in the tensors (a read without the lock: a hint, not a promise)."""
        return int(self.header[VERSION])

    def read(self, newer_than: int, timeout: float = 5.0
             ) -> tuple[dict[str, Tensor], int] | None:
        """A private copy of the weights and their version when it is newer than
        `newer_than`, else None; None too when the lock is not free within `timeout` s (a
        child that died holding it)."""
        if int(self.header[VERSION]) <= newer_than:
            return None
        if not self.lock.acquire(timeout=timeout):
            return None
        try:
            version = int(self.header[VERSION])
            if version <= newer_than or int(self.header[WRITING]):
                return None
            return {k: v.clone() for k, v in self.tensors.items()}, version
        finally:
            self.lock.release()

    @property
    def torn(self) -> bool:
        """A copy started and never finished (read only once no child runs)."""
        return bool(self.header[WRITING])

    def restore(self, state: dict[str, Tensor], version: int) -> None:
        """Write `state` as `version` without the lock (no child runs: the parent before a
        start)."""
        with torch.no_grad():
            for k, dst in self.tensors.items():
                dst.copy_(state[k])
        self.header[VERSION] = int(version)
        self.header[WRITING] = 0

    def renew_lock(self) -> None:
        """A fresh lock for the next child (the last one may have died holding the old)."""
        self.lock = self._ctx.Lock()


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
