"""Adaptation methods behind one interface: `Adapter.step(batch) -> StepReport`.

- `none`: nothing changes (the frozen baseline).
- `framewise` (BOA's B1): one Adam step on the single-frame loss L_F.
- `joint` (B3): one Adam step on L_F + L_T.
- `two_stage`: an Adam step on L_F, then one on L_T.
- `boa_1st`, `boa_2nd`: Bilevel Online Adaptation. A lower-level SGD "weight probe"
  theta' = theta - inner_lr * grad L_F(theta); then the upper-level loss L_F + L_T evaluated
  at theta' updates the ORIGINAL theta with Adam. `boa_2nd` back-propagates through the probe
  (second order, `create_graph=True`); `boa_1st` uses the gradient at theta' directly.

L_F = w_keypoints * L2D + w_pose_prior * GMM + w_shape_prior * |beta|^2 [+ w_replay * L_S]
L_T = w_teacher * mean-teacher consistency + w_motion * 2D motion over tau frames
After every accepted step the teacher moves: teacher = decay * teacher + (1 - decay) * student.

Parameters are handled functionally (`torch.func.functional_call`), so the probe never
touches the module's own tensors.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import Tensor
from torch.func import functional_call

from ..body import BodyModel
from ..config import AdaptConfig
from ..model.hmr import HMR, RegressorOutput
from . import losses as L
from .dapa import SyntheticBatch, synthetic_loss
from .prior import MaxMixturePrior
from .scope import make_scope


@dataclass(frozen=True)
class FrameBatch:
    """Frames to adapt on, as tensors.

    images (B, 3, R, R) in [0, 1]; box (B, 3) crop boxes; K (B, 3, 3); keypoints (B, J, 2)
    pixels in the image; conf (B, J) (0 for unusable joints); mapping (J, 46) from SMPL
    source points to the keypoints' layout.
    """

    images: Tensor
    box: Tensor
    K: Tensor
    keypoints: Tensor
    conf: Tensor
    mapping: Tensor

    @property
    def keypoints_crop(self) -> Tensor:
        return L.to_crop(self.keypoints, self.box)

    def to(self, device: torch.device) -> FrameBatch:
        """The same batch on `device` (itself when it is there already)."""
        if self.images.device == device:
            return self
        return FrameBatch(*(t.to(device) for t in (self.images, self.box, self.K,
                                                   self.keypoints, self.conf, self.mapping)))

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class AdaptBatch:
    """The newest frames and, for the motion term, the same people tau frames earlier
    (`previous`; equal to `current` for people without enough history, which makes their
    motion term zero)."""

    current: FrameBatch
    previous: FrameBatch
    replay: dict[str, Tensor] | None = None
    synthetic: SyntheticBatch | None = None  # DAPA's rendered crops (adapt/dapa.py)

    def to(self, device: torch.device) -> AdaptBatch:
        """The same batch on `device` (itself when it is there already)."""
        if self.current.images.device == device:
            return self
        replay = None if self.replay is None else {k: v.to(device)
                                                   for k, v in self.replay.items()}
        synthetic = None if self.synthetic is None else self.synthetic.to(device)
        return AdaptBatch(self.current.to(device), self.previous.to(device), replay, synthetic)


@dataclass(frozen=True)
class StepReport:
    method: str
    loss: float  # the objective that drove the update (upper level for BOA)
    terms: dict[str, float] = field(default_factory=dict)
    accepted: bool = True
    reason: str = ""
    seconds: float = 0.0
    version: int = 0


class Adapter:
    """Owns the student (the weights being adapted), its mean teacher, the source weights and
    the optimiser, and runs one method's steps.

    Everything lives on `device`: `cfg.device`, or `inference_device` when that is empty (the
    pipeline passes inference.device, so by default adaptation runs where inference does).
    `model` itself is not modified: the student is a float32 copy of it. The body model and
    the prior are copied to `device` only when they are elsewhere.
    """

    def __init__(self, model: HMR, body: BodyModel, cfg: AdaptConfig,
                 prior: MaxMixturePrior | None = None, inference_device: str = "cpu") -> None:
        self.cfg = cfg
        self.method = cfg.method
        self.device = adapt_device(cfg.device or inference_device)
        self.body = _on_device(body, self.device)
        self.model = copy.deepcopy(model).float().to(self.device).eval()  # eval: no dropout
        self.scope = make_scope(self.model, cfg.scope)
        adapted = set(self.scope.names)
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in adapted)
        # Within one step, the frozen prefix of each image batch (scopes that freeze the
        # first backbone stages compute it once, not at every forward of the bilevel step).
        self._prefixes: dict[int, Tensor] | None = None
        self.teacher = copy.deepcopy(self.model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.source = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.prior = _on_device(prior if prior is not None else MaxMixturePrior(), self.device)
        self.version = 0
        self.steps = 0
        self._make_optimizer()

    def _make_optimizer(self) -> None:
        self.optimizer = torch.optim.Adam(list(self.params().values()), lr=self.cfg.outer_lr,
                                          betas=(self.cfg.adam_beta1, self.cfg.adam_beta2))

    # ------------------------------------------------------------------ state

    def params(self) -> dict[str, Tensor]:
        """The adapted parameters (`adapt.scope`), by name."""
        adapted = set(self.scope.names)
        return {n: p for n, p in self.model.named_parameters() if n in adapted}

    def state_dict(self) -> dict[str, Tensor]:
        """A detached copy of the student's weights (what inference should use)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state(self, state: dict[str, Tensor], optimizer: dict | None = None) -> None:
        with torch.no_grad():
            self.model.load_state_dict(state)
        self._make_optimizer()
        if optimizer is not None:
            self.optimizer.load_state_dict(optimizer)

    def reset(self) -> None:
        """Back to the source weights: student and teacher, fresh optimiser."""
        with torch.no_grad():
            self.model.load_state_dict(self.source)
            self.teacher.load_state_dict(self.source)
        self._make_optimizer()
        self.version += 1

    # ------------------------------------------------------------------ losses

    def predict(self, params: dict[str, Tensor] | None, images: Tensor) -> RegressorOutput:
        return self._forward(params, [images])

    def _prefix(self, images: Tensor) -> Tensor:
        """The frozen backbone's output for `images` (computed once per step and batch)."""
        key = id(images)
        if self._prefixes is not None and key in self._prefixes:
            return self._prefixes[key]
        with torch.no_grad():
            out = self.model.prefix(images, self.scope.prefix_stage)
        if self._prefixes is not None:
            self._prefixes[key] = out
        return out

    def _forward(self, params: dict[str, Tensor] | None, parts: list[Tensor],
                 module: HMR | None = None) -> RegressorOutput:
        """One forward over the concatenated image batches `parts` (student by default);
        through the cached frozen prefix when the scope has one."""
        module = self.model if module is None else module
        stage = self.scope.prefix_stage
        if stage is None:
            x, kwargs = torch.cat(parts) if len(parts) > 1 else parts[0], {}
        else:
            x, kwargs = torch.cat([self._prefix(p) for p in parts]), {"from_stage": stage}
        if params is None:
            return module(x, **kwargs)
        return functional_call(module, params, (x,), kwargs)

    def frame_loss(self, out: RegressorOutput, fb: FrameBatch,
                   replay: dict[str, Tensor] | None = None,
                   replay_out: RegressorOutput | None = None,
                   synthetic: SyntheticBatch | None = None,
                   synthetic_out: RegressorOutput | None = None
                   ) -> tuple[Tensor, dict[str, Tensor]]:
        """L_F on the current frames (and the replay and DAPA batches when given)."""
        c = self.cfg
        points = self.body.forward_rotmat(out.rotmat, out.betas).points
        joints = torch.einsum("js,bsd->bjd", fb.mapping, points)
        pred = L.project_to_crop(joints, out.cam, fb.box, fb.K)
        terms = {
            "keypoints": L.keypoint_loss(pred, fb.keypoints_crop, fb.conf),
            "pose_prior": L.pose_prior(self.prior, out.rotmat),
            "shape_prior": L.shape_prior(out.betas),
        }
        total = (c.w_keypoints * terms["keypoints"] + c.w_pose_prior * terms["pose_prior"]
                 + c.w_shape_prior * terms["shape_prior"])
        if replay is not None and replay_out is not None and c.w_replay > 0:
            terms["replay"] = _replay_loss(self.body, replay_out, replay)
            total = total + c.w_replay * terms["replay"]
        if synthetic is not None and synthetic_out is not None and c.dapa_weight > 0:
            terms["synthetic"], parts = synthetic_loss(self.body, synthetic_out, synthetic)
            terms.update(parts)
            total = total + c.dapa_weight * terms["synthetic"]
        return total, terms

    def temporal_loss(self, out_now: RegressorOutput, out_prev: RegressorOutput,
                      batch: AdaptBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """L_T: mean-teacher consistency on the current frames + 2D motion over tau."""
        c = self.cfg
        cur, prev = batch.current, batch.previous
        points_now = self.body.forward_rotmat(out_now.rotmat, out_now.betas).points
        with torch.no_grad():
            t_out = self._forward(None, [cur.images], self.teacher)
            teacher_points = self.body.forward_rotmat(t_out.rotmat, t_out.betas).points
        terms = {"teacher": L.consistency_loss(points_now, teacher_points)}
        points_prev = self.body.forward_rotmat(out_prev.rotmat, out_prev.betas).points
        uv_now = L.project_pixels(torch.einsum("js,bsd->bjd", cur.mapping, points_now),
                                  L.camera_translation(out_now.cam, cur.box, cur.K), cur.K)
        uv_prev = L.project_pixels(torch.einsum("js,bsd->bjd", prev.mapping, points_prev),
                                   L.camera_translation(out_prev.cam, prev.box, prev.K),
                                   prev.K)
        terms["motion"] = L.motion_loss(uv_now, uv_prev, cur.keypoints, prev.keypoints,
                                        cur.conf * prev.conf, cur.box)
        total = c.w_teacher * terms["teacher"] + c.w_motion * terms["motion"]
        return total, terms

    def _outputs(self, params: dict[str, Tensor] | None, batch: AdaptBatch,
                 previous: bool = True
                 ) -> tuple[RegressorOutput, RegressorOutput | None, RegressorOutput | None,
                            RegressorOutput | None]:
        """Current, previous (and replay, and DAPA's synthetic) outputs from ONE forward over
        all images."""
        parts = [batch.current.images]
        if previous:
            parts.append(batch.previous.images)
        if batch.replay is not None:
            parts.append(batch.replay["images"])
        if batch.synthetic is not None:
            parts.append(batch.synthetic.images)
        out = self._forward(params, parts)
        sizes = [len(p) for p in parts]
        pieces = [RegressorOutput(*chunk) for chunk in zip(
            *(t.split(sizes) for t in (out.pose6d, out.rotmat, out.betas, out.cam)))]
        now = pieces.pop(0)
        prev = pieces.pop(0) if previous else None
        rep = pieces.pop(0) if batch.replay is not None else None
        syn = pieces.pop(0) if batch.synthetic is not None else None
        return now, prev, rep, syn

    def lower(self, params, batch: AdaptBatch) -> tuple[Tensor, dict[str, Tensor]]:
        now, _, rep, syn = self._outputs(params, batch, previous=False)
        return self.frame_loss(now, batch.current, batch.replay, rep, batch.synthetic, syn)

    def upper(self, params, batch: AdaptBatch) -> tuple[Tensor, dict[str, Tensor]]:
        now, prev, rep, syn = self._outputs(params, batch)
        lf, tf = self.frame_loss(now, batch.current, batch.replay, rep, batch.synthetic, syn)
        lt, tt = self.temporal_loss(now, prev, batch)
        return lf + lt, {**tf, **tt}

    # ------------------------------------------------------------------ steps

    def step(self, batch: AdaptBatch) -> StepReport:
        self._prefixes = {}
        try:
            return self._step(batch)
        finally:
            self._prefixes = None

    def _step(self, batch: AdaptBatch) -> StepReport:
        t0 = time.perf_counter()
        m = self.method
        if m == "none":
            return StepReport(m, 0.0, accepted=False, reason="method none", version=self.version)
        if m == "framewise":
            loss, terms = self._adam(lambda p: self.lower(p, batch))
        elif m == "joint":
            loss, terms = self._adam(lambda p: self.upper(p, batch))
        elif m == "two_stage":
            _, t1 = self._adam(lambda p: self.lower(p, batch))
            loss, t2 = self._adam(lambda p: self._temporal_only(p, batch))
            terms = {**t1, **{f"stage2_{k}": v for k, v in t2.items()}}
        elif m in ("boa_1st", "boa_2nd"):
            loss, terms = self._bilevel(batch, second_order=(m == "boa_2nd"))
        else:
            raise ValueError(f"unknown adaptation method {m!r}")
        self.steps += 1
        return StepReport(m, float(loss), {k: float(v) for k, v in terms.items()},
                          seconds=time.perf_counter() - t0, version=self.version)

    def _temporal_only(self, params, batch: AdaptBatch) -> tuple[Tensor, dict[str, Tensor]]:
        now, prev, _, _ = self._outputs(params, batch)
        return self.temporal_loss(now, prev, batch)

    def _adam(self, objective) -> tuple[Tensor, dict[str, Tensor]]:
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms = objective(None)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), {k: v.detach() for k, v in terms.items()}

    def bilevel_gradient(self, batch: AdaptBatch, second_order: bool
                         ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        """Gradient of the upper-level loss with respect to the ORIGINAL weights theta.

        Lower level: theta' = theta - inner_lr * dL_F/dtheta. Second order differentiates
        L_up(theta'(theta)) through the probe (Hessian-vector products included); first
        order takes dL_up/dtheta' as the approximation. Returns (grads, upper loss, terms).
        """
        params = self.params()
        names = list(params)
        lower, _ = self.lower(params, batch)
        grads = torch.autograd.grad(lower, [params[n] for n in names],
                                    create_graph=second_order, allow_unused=True)
        scale = self._inner_scale(names, grads)
        probe = {}
        for n, g in zip(names, grads):
            step = None if g is None else self.cfg.inner_lr * scale[n] * g
            if second_order:
                probe[n] = params[n] if step is None else params[n] - step
            else:
                base = params[n].detach()
                probe[n] = (base if step is None else base - step.detach()).requires_grad_(True)
        upper, terms = self.upper(probe, batch)
        wrt = [params[n] for n in names] if second_order else [probe[n] for n in names]
        g_up = torch.autograd.grad(upper, wrt, allow_unused=True)
        out = {n: (torch.zeros_like(params[n]) if g is None else g.detach())
               for n, g in zip(names, g_up)}
        terms = {k: v.detach() for k, v in terms.items()}
        terms["lower"] = lower.detach()
        return out, upper.detach(), terms

    def _inner_scale(self, names: list[str], grads) -> dict[str, Tensor | float]:
        """Per-parameter factor of the probe step. `sgd` (BOA): 1. `adam`: the outer Adam's
        diagonal preconditioner 1 / (sqrt(v_hat) + eps), held constant (no gradient flows
        through it), so the probe moves every weight by about inner_lr like an Adam step;
        before Adam has statistics, 1 / (|g| + eps)."""
        if self.cfg.inner_mode == "sgd":
            return {n: 1.0 for n in names}
        beta2 = self.cfg.adam_beta2
        out: dict[str, Tensor | float] = {}
        state = self.optimizer.state
        params = self.params()
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

    def _bilevel(self, batch: AdaptBatch, second_order: bool) -> tuple[Tensor, dict]:
        grads, upper, terms = self.bilevel_gradient(batch, second_order)
        self.optimizer.zero_grad(set_to_none=True)
        for n, p in self.params().items():
            p.grad = grads[n]
        self.optimizer.step()
        return upper, terms

    def update_teacher(self) -> None:
        d = self.cfg.teacher_decay
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters()):
                t.mul_(d).add_(s.detach(), alpha=1.0 - d)


def adapt_device(spec: str) -> torch.device:
    """`spec` ('cpu', 'cuda', 'cuda:1') as a torch.device that exists here; RuntimeError
    naming adapt.device when it does not (no CUDA, or no such GPU)."""
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"adaptation device {spec!r} (adapt.device, or inference.device "
                               "when that is empty): torch sees no CUDA device here "
                               "(torch.cuda.is_available() is False); set adapt.device to cpu")
        if device.index is None:  # tensors report cuda:N: compare like with like
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise RuntimeError(f"adaptation device {spec!r}: torch sees only "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    return device


_M = TypeVar("_M", bound=torch.nn.Module)


def _on_device(module: _M, device: torch.device) -> _M:
    """`module` itself when its tensors are on `device` already, else a copy moved there
    (nn.Module.to moves in place, and the caller's module serves inference)."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device == device for t in tensors):
        return module
    return copy.deepcopy(module).to(device)


def _replay_loss(body: BodyModel, out: RegressorOutput, data: dict[str, Tensor]) -> Tensor:
    """Supervised loss on labelled source crops (BOA's L_S): 3D points and rotations."""
    pred = body.forward_rotmat(out.rotmat, out.betas).points
    gt = data["points3d"]
    l3d = ((pred - pred[:, :1]) - (gt - gt[:, :1])).pow(2).sum(-1).mean()
    return l3d + (out.rotmat - data["rotmat"]).pow(2).mean()


# ---------------------------------------------------------------------- drift guard
