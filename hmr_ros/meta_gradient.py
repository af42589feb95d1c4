"""The meta-gradient of DualNet meta-training and the trainer that applies it.

The inner step is the test-time optimisation (L_test at w, one SGD step to w'); the outer loss
is pretraining's supervised loss at w'. Parameters are handled functionally
(`torch.func.functional_call` on a params dict), so the inner step never touches the
module's own tensors. The whole procedure: `train_meta.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.func import functional_call

from .adapt import dualnet
from .adapt import losses as L
from .adapt.dualnet import AuxTargets
from .adapt.prior import MaxMixturePrior
from .body import BodyModel
from .model import HMR
from .model.hmr import RegressorOutput
from .train import supervised_loss
from .train_meta_config import MetaTrainConfig

Params = dict[str, Tensor]


class _Bound:
    """A module called with a params dict: lets `train.supervised_loss`, which calls
    `model(images)`, evaluate the loss at stepped weights w' without copying the module."""

    def __init__(self, module: HMR, params: Params) -> None:
        self.module, self.params = module, params

    def __call__(self, images: Tensor) -> RegressorOutput:
        return functional_call(self.module, self.params, (images,))


def params_of(module: torch.nn.Module) -> Params:
    """The trainable parameters by name (the tensors themselves: gradients reach them)."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def aux_targets(aux: HMR, aux_params: Params | None, body: BodyModel, images: Tensor,
                cfg: MetaTrainConfig) -> AuxTargets:
    """f_u's targets for images (B, 3, R, R) (`adapt.dualnet.aux_targets`); detached when
    `cfg.aux_detach`."""
    return dualnet.aux_targets(aux, body, images, cfg.pseudo_weights(), aux_params,
                               detach=cfg.aux_detach)


def inner_loss(model: HMR, params: Params, body: BodyModel, prior: MaxMixturePrior,
                   batch: dict[str, Tensor], targets: AuxTargets, cfg: MetaTrainConfig
                   ) -> tuple[Tensor, dict[str, Tensor]]:
    """L_test at weights `params`: 2D reprojection of the 46 points against batch
    "keypoints2d" (B, 46, 2) crop coords (confidence 1), priors, and the pseudo-SMPL terms
    against f_u's `targets`. Returns (total, terms)."""
    out = functional_call(model, params, (batch["images"],))
    raw = body.points_rotmat(out.rotmat, out.betas)
    xy = L.project_to_crop(raw, out.cam, batch["box"], batch["K"])
    kp = batch.get("keypoints2d", batch["points2d"])
    conf = torch.ones(kp.shape[:2], dtype=kp.dtype, device=kp.device)
    terms = {
        "keypoints": L.keypoint_loss(xy, kp, conf),
        "pose_prior": L.pose_prior(prior, out.rotmat),
        "shape_prior": L.shape_prior(out.betas),
    }
    pseudo, pseudo_terms = dualnet.pseudo_smpl_loss(body, out, targets, cfg.pseudo_weights(),
                                                    points=raw)
    terms.update(pseudo_terms)
    total = (cfg.w_keypoints * terms["keypoints"] + cfg.w_pose_prior * terms["pose_prior"]
             + cfg.w_shape_prior * terms["shape_prior"] + pseudo)
    return total, terms


def inner_step(params: Params, loss: Tensor, inner_lr: float, second_order: bool) -> Params:
    """w' = w - inner_lr * grad_w loss. Second order keeps the graph (w' is a function of w,
    Hessian-vector products included); first order gives fresh leaves (w' detached)."""
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=second_order,
                                allow_unused=True)
    probe = {}
    for n, g in zip(names, grads):
        step = 0.0 if g is None else inner_lr * g
        if second_order:
            probe[n] = params[n] - step
        else:
            probe[n] = (params[n].detach() - (step.detach() if torch.is_tensor(step)
                                              else step)).requires_grad_(True)
    return probe


@dataclass
class MetaGradient:
    """Gradients of the outer loss for w (by name) and, when it flows there, for u; the
    outer loss at w', the inner loss at w and the terms of both (floats)."""

    grads: dict[str, Tensor]
    aux_grads: dict[str, Tensor] | None
    outer: Tensor
    inner: Tensor
    terms: dict[str, float]


def meta_gradient(model: HMR, aux: HMR, body: BodyModel, prior: MaxMixturePrior,
                  batch: dict[str, Tensor], cfg: MetaTrainConfig,
                  params: Params | None = None, aux_params: Params | None = None
                  ) -> MetaGradient:
    """d L_train(w'(w)) / dw for one batch (see the module docstring)."""
    params = params_of(model) if params is None else params
    aux_params = params_of(aux) if aux_params is None else aux_params
    second = cfg.order == 2
    targets = aux_targets(aux, aux_params, body, batch["images"], cfg)
    inner, t_in = inner_loss(model, params, body, prior, batch, targets, cfg)
    probe = inner_step(params, inner, cfg.inner_lr, second)
    outer_terms = supervised_loss(_Bound(model, probe), body, batch, cfg.outer())
    names = list(params)
    wrt = [params[n] for n in names] if second else [probe[n] for n in names]
    aux_names = list(aux_params) if (second and not cfg.aux_detach) else []
    g = torch.autograd.grad(outer_terms.total, wrt + [aux_params[n] for n in aux_names],
                            allow_unused=True)
    grads = {n: (torch.zeros_like(params[n]) if x is None else x.detach())
             for n, x in zip(names, g)}
    aux_grads = None
    if aux_names:
        aux_grads = {n: (torch.zeros_like(aux_params[n]) if x is None else x.detach())
                     for n, x in zip(aux_names, g[len(names):])}
    terms = {f"inner_{k}": float(v.detach()) for k, v in t_in.items()}
    terms.update({f"outer_{k}": v for k, v in outer_terms.items().items()})
    # What the one test-time step bought on this batch (> 0: it helped), the quantity
    # meta-training is meant to grow: both sides without dropout (in training mode two
    # masks' noise would swamp a 1e-5 step's effect).
    was = model.training
    model.eval()
    with torch.no_grad():
        before = supervised_loss(_Bound(model, params), body, batch, cfg.outer()).total
        after = supervised_loss(_Bound(model, probe), body, batch, cfg.outer()).total
    model.train(was)
    terms["step_gain"] = float(before - after)
    return MetaGradient(grads, aux_grads, outer_terms.total.detach(), inner.detach(), terms)


def meta_objective(model: HMR, aux: HMR, body: BodyModel, prior: MaxMixturePrior,
                   batch: dict[str, Tensor], cfg: MetaTrainConfig, params: Params) -> Tensor:
    """L_train(w') as a function of the values in `params` (the inner step taken exactly,
    as the second-order gradient sees it): what finite differences of the meta-gradient
    perturb."""
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    targets = aux_targets(aux, None, body, batch["images"], replace(cfg, aux_detach=True))
    inner, _ = inner_loss(model, leaves, body, prior, batch, targets, cfg)
    probe = inner_step(leaves, inner, cfg.inner_lr, second_order=False)
    with torch.no_grad():
        return supervised_loss(_Bound(model, probe), body, batch, cfg.outer()).total


class MetaTrainer:
    """The two networks, their Adam optimisers and one `step(batch)` of meta-training."""

    def __init__(self, model: HMR, aux: HMR, body: BodyModel, cfg: MetaTrainConfig,
                 prior: MaxMixturePrior | None = None) -> None:
        self.model, self.aux, self.body, self.cfg = model, aux, body, cfg
        self.prior = prior if prior is not None else MaxMixturePrior()
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.aux_opt = torch.optim.Adam(aux.parameters(), lr=cfg.aux_lr)

    def set_lr(self, factor: float) -> None:
        """Scale both learning rates by the schedule's factor (warm-up, cosine)."""
        for g in self.opt.param_groups:
            g["lr"] = self.cfg.lr * factor
        for g in self.aux_opt.param_groups:
            g["lr"] = self.cfg.aux_lr * factor

    def step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One meta-training step on `batch`; returns its terms (outer at w', inner at w,
        and the auxiliary network's own supervised loss)."""
        mg = meta_gradient(self.model, self.aux, self.body, self.prior, batch, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        for n, p in params_of(self.model).items():
            p.grad = mg.grads[n]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        aux_terms = supervised_loss(self.aux, self.body, batch, self.cfg.outer())
        self.aux_opt.zero_grad(set_to_none=True)
        aux_terms.total.backward()
        if mg.aux_grads is not None:
            for n, p in params_of(self.aux).items():
                p.grad = mg.aux_grads[n] if p.grad is None else p.grad + mg.aux_grads[n]
        torch.nn.utils.clip_grad_norm_(self.aux.parameters(), self.cfg.clip)
        self.aux_opt.step()
        return {"outer": float(mg.outer), "inner": float(mg.inner),
                "aux_total": float(aux_terms.total.detach()), **mg.terms}

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "aux": self.aux.state_dict(),
                "optimizer": self.opt.state_dict(), "aux_optimizer": self.aux_opt.state_dict()}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.aux.load_state_dict(state["aux"])
        self.opt.load_state_dict(state["optimizer"])
        self.aux_opt.load_state_dict(state["aux_optimizer"])
