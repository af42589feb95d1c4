"""The bilevel step's gradient (BOA): a lower-level weight probe on L_F, then the upper-level
loss at the probe, differentiated with respect to the ORIGINAL weights.

Lower level: theta' = theta - inner_lr * s * dL_F/dtheta, with s = 1 (`inner_mode` sgd, BOA)
or the outer Adam's diagonal preconditioner (`adam`). Second order differentiates
L_up(theta'(theta)) through the probe (Hessian-vector products included); first order takes
dL_up/dtheta' as the approximation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .batch import AdaptBatch


def bilevel_gradient(adapter, batch: AdaptBatch, second_order: bool
                     ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
    """(grads of the upper loss by parameter name, the upper loss, its terms) for the
    adapter's adapted parameters."""
    params = adapter.params()
    names = list(params)
    lower, _ = adapter.lower(params, batch)
    grads = torch.autograd.grad(lower, [params[n] for n in names],
                                create_graph=second_order, allow_unused=True)
    scale = inner_scale(adapter, names, grads)
    probe = {}
    for n, g in zip(names, grads):
        step = None if g is None else adapter.cfg.inner_lr * scale[n] * g
        if second_order:
            probe[n] = params[n] if step is None else params[n] - step
        else:
            base = params[n].detach()
            probe[n] = (base if step is None else base - step.detach()).requires_grad_(True)
    upper, terms = adapter.upper(probe, batch)
    wrt = [params[n] for n in names] if second_order else [probe[n] for n in names]
    g_up = torch.autograd.grad(upper, wrt, allow_unused=True)
    out = {n: (torch.zeros_like(params[n]) if g is None else g.detach())
           for n, g in zip(names, g_up)}
    terms = {k: v.detach() for k, v in terms.items()}
    terms["lower"] = lower.detach()
    return out, upper.detach(), terms


def inner_scale(adapter, names: list[str], grads) -> dict[str, Tensor | float]:
    """Per-parameter factor of the probe step. `sgd` (BOA): 1. `adam`: the outer Adam's
    diagonal preconditioner 1 / (sqrt(v_hat) + eps), held constant (no gradient flows
    through it), so the probe moves every weight by about inner_lr like an Adam step;
    before Adam has statistics, 1 / (|g| + eps)."""
    if adapter.cfg.inner_mode == "sgd":
        return {n: 1.0 for n in names}
    beta2 = adapter.cfg.adam.beta2
    out: dict[str, Tensor | float] = {}
    state = adapter.optimizer.state
    params = adapter.params()
    for n, g in zip(names, grads):
        st = state.get(params[n], {})
        if "exp_avg_sq" in st and float(st.get("step", 0)) > 0:
            v_hat = st["exp_avg_sq"] / (1.0 - beta2 ** float(st["step"]))
            out[n] = 1.0 / (v_hat.sqrt() + 1e-8)
        elif g is not None:
            out[n] = 1.0 / (g.detach().abs() + 1e-8)
        else:
            out[n] = 1.0
    return out
