"""`DriftGuard`: after every adaptation step, is the student still sane? Finite weights and
optimiser state, a loss not exploding against its recent median, the student near its mean
teacher. A failed check rolls the worker back to the last good weights."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..config import AdaptConfig
from .batch import AdaptBatch, StepReport
from .methods import Adapter


@dataclass
class GuardVerdict:
    ok: bool
    reason: str = ""


def _non_finite_optimizer_state(adapter: Adapter) -> str:
    """'exp_avg of fc1.weight' for the first non-finite optimiser tensor, '' when all are
    finite."""
    entries = [(param, key, value) for param, state in adapter.optimizer.state.items()
               for key, value in state.items()
               if isinstance(value, Tensor) and value.is_floating_point()]
    if not entries:
        return ""
    # One fused pass over every moment (a norm is NaN/inf when any element is, or when it
    # overflows: either way not a state to keep): 1.8 ms for hmr_small's Adam state, where a
    # Python loop of isfinite().all() took 18 ms of the adaptation thread per step.
    norms = torch._foreach_norm([value for _, _, value in entries])
    if bool(torch.isfinite(torch.stack(norms)).all()):
        return ""
    names = {id(p): n for n, p in adapter.model.named_parameters()}
    for (param, key, _), norm in zip(entries, norms):
        if not bool(torch.isfinite(norm)):
            return f"{key} of {names.get(id(param), '?')}"
    return ""


def _non_finite_weights(adapter: Adapter) -> str:
    """The first weight of the student with a non-finite value, '' when all are finite (one
    fused norm over all of them, as for the optimiser state). Frozen weights are checked
    too: they should never change, and the guard is there for what should not happen."""
    params = dict(adapter.model.named_parameters())
    norms = torch._foreach_norm([p.detach() for p in params.values()])
    if bool(torch.isfinite(torch.stack(norms)).all()):
        return ""
    return next((n for n, norm in zip(params, norms) if not bool(torch.isfinite(norm))), "?")


class DriftGuard:
    """Decides whether a step may stand: finite weights and optimiser state, a loss that did
    not explode relative to the recent median, and a student that stayed near its teacher
    (3D joints)."""

    def __init__(self, cfg: AdaptConfig, history: int = 50) -> None:
        self.cfg = cfg
        self.losses: deque[float] = deque(maxlen=history)

    def check(self, adapter: Adapter, report: StepReport, batch: AdaptBatch) -> GuardVerdict:
        if not np.isfinite(report.loss):
            return GuardVerdict(False, f"non-finite loss {report.loss}")
        bad = _non_finite_weights(adapter)
        if bad:
            return GuardVerdict(False, f"non-finite weights in {bad}")
        # A non-finite Adam moment accepted once would become the "last good" snapshot, and
        # every later step would roll back to it.
        bad = _non_finite_optimizer_state(adapter)
        if bad:
            return GuardVerdict(False, f"non-finite optimiser state {bad}")
        if len(self.losses) >= 10:
            median = float(np.median(self.losses))
            if report.loss > self.cfg.guard.loss_factor * max(median, 1e-8):
                return GuardVerdict(False, f"loss {report.loss:.4g} exploded (> "
                                           f"{self.cfg.guard.loss_factor:g} x median "
                                           f"{median:.4g})")
        # The step's frozen prefix and teacher points are reused: only the adapted part of
        # the student runs again (its weights just changed).
        gap = adapter.drift(batch.current.images)
        if not np.isfinite(gap) or gap > self.cfg.guard.disagreement:
            return GuardVerdict(False, f"student drifted {gap:.3f} m from its teacher (> "
                                       f"{self.cfg.guard.disagreement:g} m)")
        self.losses.append(report.loss)
        return GuardVerdict(True)
