"""The seed methods' additions to a step's batch, each a small `Augmenter`.

A step's batch starts as the picked frames and their motion partners (`assemble.py`); each
enabled augmenter then adds what its method's loss reads: labelled source crops (BOA's L_S),
the image flow to the frame before (motion cues, `flow_term.py`) and DAPA's synthetic crops in
the target's looks (`dapa.py`). DualNet's term needs no batch of its own: the adapter's
auxiliary network reads the current crops (`dualnet.py`). Augmenters run on the thread that
runs steps, never on the inference thread, in the order `make_augmenters` gives.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from typing import Protocol

import numpy as np
import torch

from ..config import AdaptConfig
from .batch import AdaptBatch
from .dapa import DapaGenerator, Estimate, make_dapa
from .flow_term import FlowBatch, FlowCache
from .samples import Picked

log = logging.getLogger("hmr_ros")


class Augmenter(Protocol):
    def augment(self, batch: AdaptBatch, picked: Picked) -> AdaptBatch:
        """`batch` (on the adapter's device) with this method's part added."""

    def forget(self, track: int) -> None:
        """A track is lost: drop what is kept of it."""


class SourceReplay:
    """Two labelled source crops per step for L_S, drawn from the worker's rng."""

    def __init__(self, data: dict[str, torch.Tensor], rng: np.random.Generator,
                 device: torch.device) -> None:
        self.data, self.rng, self.device = data, rng, device

    def augment(self, batch: AdaptBatch, picked: Picked) -> AdaptBatch:
        idx = torch.as_tensor(self.rng.integers(0, len(self.data["images"]), 2))
        replay = {k: v[idx] for k, v in self.data.items()}
        replay["images"] = replay["images"].permute(0, 3, 1, 2).float() / 255.0
        return dataclasses.replace(batch, replay={k: v.to(self.device)
                                                  for k, v in replay.items()})

    def forget(self, track: int) -> None:
        pass


class FlowCues:
    """Each current person against itself one frame earlier, with the image flow between the
    two crops (OpenCV DIS, cached per pair). A person without that frame gets weight 0 (its
    own crop stands in, so shapes stay fixed). One cached pair holds 8 R^2 bytes (131 kB at
    R = 128); the cache keeps at most buffer_frames pairs."""

    def __init__(self, cfg: AdaptConfig, device: torch.device) -> None:
        self.preset = cfg.flow.preset
        self.cache = FlowCache(cfg.buffer_frames)
        self.device = device

    def augment(self, batch: AdaptBatch, picked: Picked) -> AdaptBatch:
        r = picked.current[0].crop.shape[0]
        zero = np.zeros((2, r, r), dtype=np.float32)
        fwd, bwd, earlier, weight = [], [], [], []
        for a, b in zip(picked.earlier, picked.current):
            if a is None:
                fwd.append(zero)
                bwd.append(zero)
                earlier.append(b)
                weight.append(0.0)
                continue
            f = self.cache.get((b.track, a.index, b.index), a.crop, a.box, b.crop, b.box,
                               self.preset)
            fwd.append(f.forward.astype(np.float32))
            bwd.append(f.backward.astype(np.float32))
            earlier.append(a)
            weight.append(1.0)
        images = torch.from_numpy(np.stack([s.crop for s in earlier])).permute(0, 3, 1, 2)
        flow = FlowBatch(
            images=images.float() / 255.0,
            box=torch.as_tensor(np.stack([s.box for s in earlier]), dtype=torch.float32),
            K=torch.as_tensor(np.stack([s.K for s in earlier]), dtype=torch.float32),
            forward=torch.from_numpy(np.stack(fwd)), backward=torch.from_numpy(np.stack(bwd)),
            weight=torch.as_tensor(weight, dtype=torch.float32))
        return dataclasses.replace(batch, flow=flow.to(self.device))

    def forget(self, track: int) -> None:
        pass  # pairs age out of the bounded cache


class DapaSupervision:
    """DAPA's synthetic crops: the student's estimates on the batch's current crops update
    the people's looks, and every `adapt.dapa.every` batches a new synthetic batch is
    rendered (the last one is reused in between). A failure is logged and the step goes on
    without synthetic crops."""

    def __init__(self, generator: DapaGenerator, adapter, cfg: AdaptConfig) -> None:
        self.generator, self.adapter = generator, adapter
        self.every, self.size = cfg.dapa.every, cfg.dapa.batch
        self.ms: deque[float] = deque(maxlen=200)  # observe + render, per batch
        self._batch = None
        self._count = 0

    def augment(self, batch: AdaptBatch, picked: Picked) -> AdaptBatch:
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                out = self.adapter.predict(None, batch.current.images)
            rotmat, betas, cam = (t.detach().float().cpu().numpy()
                                  for t in (out.rotmat, out.betas, out.cam))
            estimates = [Estimate(s.track, s.crop, np.asarray(s.box, np.float32),
                                  np.asarray(s.K, np.float32), rotmat[i], betas[i], cam[i])
                         for i, s in enumerate(picked.current)]
            self.generator.observe(estimates)
            if self._batch is None or self._count % self.every == 0:
                syn = self.generator.generate(estimates, self.size)
                self._batch = None if syn is None else syn.to(self.adapter.device)
            self._count += 1
        except Exception as err:  # the real frames' step must still run
            log.warning("DAPA generation failed: %s: %s", type(err).__name__, err)
            return batch
        self.ms.append((time.perf_counter() - t0) * 1e3)
        return dataclasses.replace(batch, synthetic=self._batch)

    def forget(self, track: int) -> None:
        self.generator.forget(track)


def make_augmenters(cfg: AdaptConfig, adapter, rng: np.random.Generator,
                    replay: dict[str, torch.Tensor] | None) -> list[Augmenter]:
    """The augmenters `cfg` enables, in the order they apply."""
    out: list[Augmenter] = []
    if replay is not None:
        out.append(SourceReplay(replay, rng, adapter.device))
    if cfg.flow.weight > 0:
        out.append(FlowCues(cfg, adapter.device))
    generator = make_dapa(adapter.body, cfg)
    if generator is not None:
        out.append(DapaSupervision(generator, adapter, cfg))
    return out
