"""DualNet meta-training (issue 17): a source model trained to be a good start for test-time
optimisation, with an auxiliary network that supplies pseudo-SMPL targets.

Two regressors of the same architecture: the main network f_w and the auxiliary f_u. Per
training batch:

- inner step (the test-time optimisation, MAML-style):
  w' = w - inner_lr * grad_w L_test(w), where L_test is what can be computed at test time:
  2D keypoint reprojection and the pose / shape priors (as in `adapt/losses.py`), plus a
  pseudo-SMPL term that pulls f_w's vertices, joints, rotations and betas towards f_u's
  prediction for the same crops (each with its own weight);
- outer step: the supervised loss of `train.supervised_loss` evaluated at w' updates w with
  Adam, through the inner step (second order, `create_graph=True`) or with the first-order
  approximation dL/dw' (the authors' choice); f_u is trained by its own supervised loss
  (Adam, its own learning rate), and in second order, when `aux_detach` is off, also by the
  outer loss through its targets.

Parameters are handled functionally (`torch.func.functional_call` on a params dict), as
`adapt.methods.Adapter.bilevel_gradient` does, so the inner step never touches the module's
own tensors. The inner step is batched (one step on the batch's mean test-time loss), as in
the authors' code.

`train_meta` runs the loop like `train.train`: deterministic by seed, resumable from
`<run>/last.pt`, progress on stderr, a JSON log and report, the main network's checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch import Tensor
from torch.func import functional_call

from . import jsonio
from .adapt import dualnet
from .adapt import losses as L
from .adapt.dualnet import AuxTargets, PseudoWeights
from .adapt.prior import MaxMixturePrior
from .body import BodyModel
from .model import HMR, ModelConfig, get_preset, load_checkpoint, save_checkpoint
from .model.checkpoint import read_checkpoint_file
from .model.hmr import RegressorOutput
from .progress import Progress
from .train import TrainConfig, TrainSet, _atomic_save, _batch, _lr, evaluate_set, supervised_loss

log = logging.getLogger("hmr_ros")

Params = dict[str, Tensor]


@dataclass(frozen=True)
class MetaTrainConfig:
    """Meta-training settings. Inner weights start from the authors' public code (0.5
    vertices + 5 2D + 5 3D + 1 rotation + 0.001 shape against f_u, one first-order SGD step
    of 1e-5); the outer weights are `TrainConfig`'s. Starting points, to tune on tuning
    seeds."""

    preset: str = "hmr_small"
    init: str | None = None  # checkpoint both networks start from (None: from scratch)
    aux_init: str | None = None  # the auxiliary network's own start (None: as `init`)
    steps: int = 2000
    batch_size: int = 16
    seed: int = 0
    threads: int = 2
    # inner step (test time)
    inner_lr: float = 1e-5
    order: int = 1  # 1: first-order approximation; 2: through the inner step
    w_keypoints: float = 5.0  # 2D reprojection of the 46 points, normalised crop coords
    w_pose_prior: float = 1e-4
    w_shape_prior: float = 2e-6
    # The pseudo-SMPL terms against f_u (`adapt.dualnet.PseudoWeights`, one source).
    w_aux_vertices: float = PseudoWeights.vertices  # root-centred mesh vertices (m, squared)
    w_aux_joints: float = PseudoWeights.joints  # root-centred 46 points
    w_aux_rot: float = PseudoWeights.rot  # rotation matrices
    w_aux_betas: float = PseudoWeights.betas
    aux_detach: bool = True  # f_u's targets are constants of the inner loss
    keypoint_noise: float = 0.0  # std of noise on the 2D targets (crop units): detector-like
    # outer step
    lr: float = 1e-4  # Adam on w
    aux_lr: float = 1e-4  # Adam on u (the authors: 1e-6 from a pretrained start)
    warmup: int = 100
    clip: float = 5.0
    # The supervised loss's weights: pretraining's own (one source, `TrainConfig`).
    w_pose: float = TrainConfig.w_pose
    w_betas: float = TrainConfig.w_betas
    w_3d: float = TrainConfig.w_3d
    w_2d: float = TrainConfig.w_2d
    w_cam: float = TrainConfig.w_cam
    augment: bool = TrainConfig.augment
    eval_every: int = 250
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {self.order}")
        if not (self.inner_lr >= 0 and self.lr > 0 and self.aux_lr >= 0):
            raise ValueError("inner_lr and aux_lr must be >= 0 and lr > 0")

    def pseudo_weights(self) -> PseudoWeights:
        return PseudoWeights(self.w_aux_vertices, self.w_aux_joints, self.w_aux_rot,
                             self.w_aux_betas)

    def outer(self) -> TrainConfig:
        """The supervised loss's weights and schedule as `train.TrainConfig`."""
        return TrainConfig(preset=self.preset, steps=self.steps, batch_size=self.batch_size,
                           lr=self.lr, warmup=self.warmup, seed=self.seed, threads=self.threads,
                           w_pose=self.w_pose, w_betas=self.w_betas, w_3d=self.w_3d,
                           w_2d=self.w_2d, w_cam=self.w_cam, augment=self.augment,
                           eval_every=self.eval_every, log_every=self.log_every)


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


def with_keypoints(batch: dict[str, Tensor], cfg: MetaTrainConfig,
                   gen: torch.Generator | None) -> dict[str, Tensor]:
    """The batch with its test-time 2D targets "keypoints2d" (B, 46, 2): the true 2D points,
    with Gaussian noise of `cfg.keypoint_noise` (crop units) as a detector would add."""
    kp = batch["points2d"]
    if cfg.keypoint_noise > 0 and gen is not None:
        kp = kp + cfg.keypoint_noise * torch.randn(kp.shape, generator=gen)
    return {**batch, "keypoints2d": kp}


def _networks(cfg: MetaTrainConfig, data: TrainSet, model_config: ModelConfig | None
              ) -> tuple[HMR, HMR]:
    """f_w from `cfg.init`, f_u from `cfg.aux_init` (else `cfg.init`); a network without a
    checkpoint is fresh, drawn from the global generator (main first: deterministic by
    seed)."""
    arch = model_config or get_preset(cfg.preset)
    model = load_checkpoint(cfg.init).model if cfg.init else HMR(
        arch, mean_params=data.mean_params())
    # A copy of the main start makes the pseudo-SMPL targets the main network's own
    # prediction (no gradient at first); `aux_init` gives the auxiliary network its own.
    aux_start = cfg.aux_init or cfg.init
    aux = load_checkpoint(aux_start).model if aux_start else HMR(
        arch, mean_params=data.mean_params())
    return model.train(), aux.train()


def train_meta(cfg: MetaTrainConfig, train_path: str | Path, run_dir: str | Path,
               val_path: str | Path | None = None, out: str | Path | None = None,
               resume: bool = False, progress: bool = True, stop_after: int | None = None,
               model_config: ModelConfig | None = None, out_fp16: bool = False) -> dict:
    """Meta-train and write `<run_dir>/last.pt` (resumable), `log.json`, `report.json` and the
    main network's checkpoint `out` (the auxiliary one beside it as `<out>.aux.pt`).

    `stop_after` ends this invocation at that step after saving `last.pt`; a later call with
    `resume=True` continues exactly where it stopped. `out_fp16` stores the two final
    checkpoints' weights in float16 (half the size: the shipped pair fits weights/'s budget);
    `last.pt` keeps float32."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = TrainSet.load(train_path)
    val = TrainSet.load(val_path) if val_path else None
    body = BodyModel()
    model, aux = _networks(cfg, data, model_config)
    trainer = MetaTrainer(model, aux, body, cfg)
    outer_cfg = cfg.outer()
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    step = 0
    last = run / "last.pt"
    if resume and last.exists():
        state = read_checkpoint_file(last)  # weights_only: nothing in a run folder runs code
        if state["config"] != asdict(cfg):
            log.warning("resuming with a different config than the run was started with")
        trainer.load(state)
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], state["history"]
        print(f"resumed {run} at step {step}")
    t0 = time.perf_counter()
    n = len(data)
    with Progress(cfg.steps, "train-meta", enabled=progress) as bar:
        bar.n = step
        while step < cfg.steps:
            trainer.set_lr(_lr(step, outer_cfg) / cfg.lr)
            idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
            batch = with_keypoints(_batch(data, idx, outer_cfg, gen), cfg, gen)
            terms = trainer.step(batch)
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                entry = {"step": step, "lr": _lr(step - 1, outer_cfg), **terms,
                         "elapsed_s": time.perf_counter() - t0}
                if val is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                    entry.update({f"val_{k}": v for k, v in
                                  evaluate_set(model, body, val).items()})
                    entry.update({f"val_aux_{k}": v for k, v in
                                  evaluate_set(aux, body, val).items()})
                history.append(entry)
                bar.update(cfg.log_every if step % cfg.log_every == 0 else step - bar.n,
                           outer=entry["outer"], **{k: entry[k] for k in entry
                                                    if k == "val_pa_mpjpe"})
            interrupted = stop_after is not None and step >= stop_after
            if step % cfg.eval_every == 0 or step == cfg.steps or interrupted:
                _atomic_save({**trainer.state(), "generator": gen.get_state(),
                              "torch_rng": torch.get_rng_state(), "step": step,
                              "history": history, "config": asdict(cfg)}, last)
            if interrupted and step < cfg.steps:
                return {"config": asdict(cfg), "train_size": n, "steps": step,
                        "final": history[-1] if history else {}, "interrupted": True}
    final = history[-1] if history else {}
    report = {"config": asdict(cfg), "train_set": str(train_path), "val_set": str(val_path),
              "train_size": n, "steps": step, "final": final,
              "seconds": time.perf_counter() - t0}
    (run / "log.json").write_text(jsonio.dumps({"config": asdict(cfg), "history": history},
                                               indent=1))
    if out is not None:
        meta = {"source": "hmr-ros train-meta (DualNet)", "domain": data.domain,
                "train_size": n, "steps": step, "seed": cfg.seed, "model_version": 0,
                "val_pa_mpjpe_mm": float(final.get("val_pa_mpjpe", float("nan")))}
        model.eval()
        aux.eval()
        dtype = torch.float16 if out_fp16 else None
        save_checkpoint(out, model, meta=meta, dtype=dtype)
        aux_path = Path(str(out) + ".aux.pt")
        save_checkpoint(aux_path, aux, meta={**meta, "role": "dualnet auxiliary"}, dtype=dtype)
        report["checkpoint"], report["aux_checkpoint"] = str(out), str(aux_path)
    (run / "report.json").write_text(jsonio.dumps(report, indent=1))
    return report


def config_with(cfg: MetaTrainConfig, **overrides: object) -> MetaTrainConfig:
    """cfg with the overrides that are not None; an unknown field name is an error."""
    known = {f.name for f in fields(cfg)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown MetaTrainConfig fields {unknown}; known: {sorted(known)}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def parse_overrides(items: list[str]) -> dict[str, object]:
    """["KEY=VALUE", ...] -> typed values by MetaTrainConfig's field types (`--set`)."""
    types = {f.name: f.type for f in fields(MetaTrainConfig)}
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set wants KEY=VALUE with KEY a MetaTrainConfig field, got "
                             f"{item!r}; known: {sorted(types)}")
        kind = str(types[key])
        if text.lower() in ("none", "null") and "None" in kind:
            out[key] = None
        elif kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{key} wants true or false, got {text!r}")
            out[key] = text.lower() in ("true", "1", "yes")
        elif kind.startswith("int"):
            out[key] = int(text)
        elif kind.startswith("float"):
            out[key] = float(text)
        else:
            out[key] = text
    return out
