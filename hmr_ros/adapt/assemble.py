"""Picked samples -> the tensors of a step (`AdaptBatch`), with the frozen prefix of samples
an earlier step already computed.

Scopes that freeze the first backbone stages (`adapt.scope`) need the frozen prefix of every
image a step reads. A frame's sample comes back as the motion partner tau frames later (and
in batch_frames' picks), and its prefix never changes, so `PrefixCache` keeps it while the
sample is buffered. Only the thread that runs steps touches the cache.
"""

from __future__ import annotations

import numpy as np
import torch

from ..body.joints import get_joint_set
from .batch import AdaptBatch, FrameBatch
from .samples import AdaptSample, Picked, usable_confidence

Key = tuple[int, int, int]  # (track, frame index, id of the crop)


class PrefixCache:
    """Frozen-prefix outputs of buffered samples, by `Key`."""

    def __init__(self) -> None:
        self.rows: dict[Key, torch.Tensor] = {}

    def lookup(self, keys: tuple[Key, ...]) -> torch.Tensor | None:
        """(B, ...) prefixes of all `keys`, or None unless every one is cached."""
        cached = [self.rows.get(k) for k in keys]
        if cached and all(c is not None for c in cached):
            return torch.stack(cached)
        return None

    def keep(self, adapter, batch: AdaptBatch, live: set[Key]) -> None:
        """Remember the prefixes the adapter computed for `batch`'s samples in its last step;
        drop those of samples no longer buffered (`live`)."""
        if adapter.scope.prefix_stage is None:
            return
        for fb in (batch.current, batch.previous):
            prefix = adapter.cached_prefix(fb.images)
            if prefix is None or not fb.keys:
                continue
            for key, row in zip(fb.keys, prefix):
                self.rows[key] = row
        for key in [k for k in self.rows if k not in live]:
            del self.rows[key]


def frame_batch(samples: list[AdaptSample], mapping: torch.Tensor, threshold: float,
                cache: PrefixCache) -> FrameBatch:
    """The samples as a `FrameBatch`: images (B, 3, R, R) in [0, 1], boxes, K, keypoints,
    usable confidences (B, J) and their cached prefixes."""
    images = torch.from_numpy(np.stack([s.crop for s in samples])).permute(0, 3, 1, 2)
    # The crop's identity is part of the key: a restarted stream may bring the same track and
    # index back with another image. Keys of samples that left the buffer are pruned
    # (`PrefixCache.keep`), so a cached id always belongs to a live crop.
    keys = tuple((s.track, s.index, id(s.crop)) for s in samples)
    return FrameBatch(
        keys=keys,
        prefix=cache.lookup(keys),
        images=images.float() / 255.0,
        box=torch.as_tensor(np.stack([s.box for s in samples]), dtype=torch.float32),
        K=torch.as_tensor(np.stack([s.K for s in samples]), dtype=torch.float32),
        keypoints=torch.as_tensor(np.stack([s.keypoints.xy for s in samples]),
                                  dtype=torch.float32),
        conf=torch.as_tensor(np.stack([usable_confidence(s, threshold) for s in samples])),
        mapping=mapping)


def assemble(picked: Picked, threshold: float, cache: PrefixCache) -> AdaptBatch:
    """The step's batch of the picked samples and their motion partners (on the CPU)."""
    mapping = torch.as_tensor(get_joint_set(picked.format).matrix(), dtype=torch.float32)
    return AdaptBatch(frame_batch(picked.current, mapping, threshold, cache),
                      frame_batch(picked.previous, mapping, threshold, cache))
