"""Adaptation methods behind one interface: `Adapter.step(batch) -> StepReport`.

- `none`: nothing changes (the frozen baseline).
- `framewise` (BOA's B1): one Adam step on the single-frame loss L_F.
- `joint` (B3): one Adam step on L_F + L_T.
- `two_stage`: an Adam step on L_F, then one on L_T.
- `boa_1st`, `boa_2nd`: Bilevel Online Adaptation. A lower-level SGD "weight probe"
  theta' = theta - inner_lr * grad L_F(theta); then the upper-level loss L_F + L_T evaluated
  at theta' updates the ORIGINAL theta with Adam. `boa_2nd` back-propagates through the probe
  (second order, `create_graph=True`); `boa_1st` uses the gradient at theta' directly.

L_F = loss.keypoints * L2D + loss.pose_prior * GMM + loss.shape_prior * |beta|^2
      [+ replay.weight * L_S + dapa.weight * L_syn + dualnet.weight * pseudo-SMPL]
L_T = teacher.weight * mean-teacher consistency + loss.motion * 2D motion over tau frames
      [+ flow.weight * motion cues (image flow vs projected mesh motion, consecutive frames)
       + loss.anchor * pose and shape near the frozen source model's estimate]
(the weights are `adapt.*` fields of `hmr_ros/config/adapt.py`).
After every accepted step the teacher moves: teacher = decay * teacher + (1 - decay) * student
(`adapt.teacher.decay`).

Parameters are handled functionally (`torch.func.functional_call`), so the probe never
touches the module's own tensors.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import Tensor
from torch.func import functional_call

from ..body import BodyModel
from ..config import AdaptConfig
from ..model.hmr import HMR, RegressorOutput
from ..model.weights import dualnet_aux_path, load_regressor
from . import losses as L
from .batch import AdaptBatch, FrameBatch, StepReport  # noqa: F401 (their import path too)
from .bilevel import bilevel_gradient
from .dapa import SyntheticBatch, synthetic_loss
from .device import adapt_device, on_device
from .dualnet import AuxTargets, PseudoWeights, aux_targets, pseudo_smpl_loss
from .flow_term import flow_term
from .prior import MaxMixturePrior
from .scope import make_scope


class Adapter:
    """Owns the student (the weights being adapted), its mean teacher, the source weights and
    the optimiser, and runs one method's steps.

    Everything lives on `device`: `cfg.worker.device`, or `inference_device` when that is
    empty (the pipeline passes inference.device, so by default adaptation runs where
    inference does).
    `model` itself is not modified: the student is a float32 copy of it. The body model and
    the prior are copied to `device` only when they are elsewhere.
    """

    def __init__(self, model: HMR, body: BodyModel, cfg: AdaptConfig,
                 prior: MaxMixturePrior | None = None, inference_device: str = "cpu") -> None:
        self.cfg = cfg
        self.method = cfg.method
        self.device = adapt_device(cfg.worker.device or inference_device)
        self.body = on_device(body, self.device)
        self.model = copy.deepcopy(model).float().to(self.device).eval()  # eval: no dropout
        self.scope = make_scope(self.model, cfg.scope)
        adapted = set(self.scope.names)
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in adapted)
        # Within one step, the frozen prefix of each image batch (scopes that freeze the
        # first backbone stages compute it once, not at every forward of the bilevel step).
        # They stay readable after the step for the guard's check (`drift`), which follows
        # before any weight of the prefix or the teacher changes; entries hold their images
        # so that a key (an id) is never reused while it is cached.
        self._prefixes: dict[int, tuple[Tensor, Tensor]] = {}
        self._teacher_cache: tuple[Tensor, Tensor] | None = None  # (images, points)
        self._caching = False  # True inside a step: only steps fill the caches
        self.teacher = copy.deepcopy(self.model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.source = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.prior = on_device(prior if prior is not None else MaxMixturePrior(), self.device)
        # The anchor's reference: the source weights, never adapted (only with w_anchor > 0).
        self.frozen = None
        if cfg.loss.anchor > 0:
            self.frozen = copy.deepcopy(self.teacher)
        # DualNet's auxiliary network (adapt.dualnet.weight > 0): frozen, never adapted.
        self.aux = self._load_aux(cfg.dualnet.aux) if cfg.dualnet.weight > 0 else None
        self._aux_cache: tuple[Tensor, AuxTargets] | None = None
        self.version = 0
        self.steps = 0
        self._make_optimizer()

    def _load_aux(self, path: str) -> HMR:
        """The auxiliary regressor of `adapt.dualnet.aux` on `device`, frozen, eval mode."""
        aux_path = dualnet_aux_path(path)
        aux = load_regressor(aux_path).model.float().to(self.device).eval()
        if aux.config.input_size != self.model.config.input_size:
            raise ValueError(f"adapt.dualnet.aux {aux_path} takes {aux.config.input_size} px "
                             f"crops, the regressor {self.model.config.input_size} px")
        for p in aux.parameters():
            p.requires_grad_(False)
        return aux

    def _make_optimizer(self) -> None:
        self.optimizer = torch.optim.Adam(list(self.params().values()), lr=self.cfg.outer_lr,
                                          betas=(self.cfg.adam.beta1, self.cfg.adam.beta2))

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
        self._teacher_cache = None
        self._make_optimizer()
        self.version += 1

    # ------------------------------------------------------------------ losses

    def predict(self, params: dict[str, Tensor] | None, images: Tensor) -> RegressorOutput:
        return self._forward(params, [images])

    def _points(self, out: RegressorOutput) -> Tensor:
        """(B, 46, 3) body points of an output, model origin (`BodyModel.points_rotmat`)."""
        return self.body.points_rotmat(out.rotmat, out.betas)

    def teacher_points(self, images: Tensor) -> Tensor:
        """(B, 46, 3) the mean teacher's body points for `images`, no gradient. Within a step
        (and its guard check, which follows before the teacher moves) computed once."""
        cached = self._teacher_cache
        if cached is not None and cached[0] is images:
            return cached[1]
        with torch.no_grad():
            points = self._points(self._forward(None, [images], self.teacher))
        if self._caching:
            self._teacher_cache = (images, points)
        return points

    def aux_targets(self, images: Tensor) -> AuxTargets:
        """DualNet's auxiliary network's pseudo-SMPL targets for `images` (B, 3, R, R), no
        gradient; computed once per image batch (the same crops come back at every step on
        a frame, and their targets never change: the auxiliary network is frozen)."""
        cached = self._aux_cache
        if cached is not None and cached[0] is images:
            return cached[1]
        x = images.contiguous() if self.scope.name == "norm" else images
        with torch.no_grad():
            targets = aux_targets(self.aux, self.body, x, PseudoWeights())
        self._aux_cache = (images, targets)
        return targets

    def drift(self, images: Tensor) -> float:
        """Mean distance (m) of the student's root-centred body points from the teacher's on
        `images` (B, 3, H, W): the guard's check after a step, reusing the step's frozen prefix
        and teacher points when `images` is the step's current batch."""
        with torch.no_grad():
            ps = self._points(self._forward(None, [images]))
            pt = self.teacher_points(images)
        return float(((ps - ps[:, :1]) - (pt - pt[:, :1])).norm(dim=-1).mean())

    def _prefix(self, images: Tensor) -> Tensor:
        """The frozen backbone's output for `images` (computed once per step and batch)."""
        entry = self._prefixes.get(id(images))
        if entry is not None and entry[0] is images:
            return entry[1]
        with torch.no_grad():
            out = self.model.prefix(images, self.scope.prefix_stage)
        if self._caching:
            self._prefixes[id(images)] = (images, out)
        return out

    def cached_prefix(self, images: Tensor) -> Tensor | None:
        """The frozen prefix the last step computed (or was given) for `images`, else None."""
        entry = self._prefixes.get(id(images))
        return entry[1] if entry is not None and entry[0] is images else None

    def _forward(self, params: dict[str, Tensor] | None, parts: list[Tensor],
                 module: HMR | None = None) -> RegressorOutput:
        """One forward over the concatenated image batches `parts` (student by default);
        through the cached frozen prefix when the scope has one."""
        module = self.model if module is None else module
        stage = self.scope.prefix_stage
        if stage is None:
            x, kwargs = torch.cat(parts) if len(parts) > 1 else parts[0], {}
            # Crops arrive as permuted HWC arrays (channels-last strides), as inference sees
            # them. torch 2.13's CPU GroupNorm backward segfaults on such an input when it
            # does not require grad itself, which happens only in the `norm` scope (conv
            # weights frozen): only there is it made contiguous (other scopes keep the exact
            # numbers of inference's layout).
            if self.scope.name == "norm":
                x = x.contiguous()
        else:
            x, kwargs = torch.cat([self._prefix(p) for p in parts]), {"from_stage": stage}
        if params is None:
            return module(x, **kwargs)
        return functional_call(module, params, (x,), kwargs)

    def frame_loss(self, out: RegressorOutput, fb: FrameBatch,
                   replay: dict[str, Tensor] | None = None,
                   replay_out: RegressorOutput | None = None,
                   points: Tensor | None = None,
                   synthetic: SyntheticBatch | None = None,
                   synthetic_out: RegressorOutput | None = None
                   ) -> tuple[Tensor, dict[str, Tensor]]:
        """L_F on the current frames (and the replay and DAPA batches when given); `points`
        (B, 46, 3) are out's body points when the caller has them already."""
        c = self.cfg
        points = self._points(out) if points is None else points
        joints = torch.einsum("js,bsd->bjd", fb.mapping, points)
        pred = L.project_to_crop(joints, out.cam, fb.box, fb.K)
        terms = {
            "keypoints": L.keypoint_loss(pred, fb.keypoints_crop, fb.conf),
            "pose_prior": L.pose_prior(self.prior, out.rotmat),
            "shape_prior": L.shape_prior(out.betas),
        }
        total = (c.loss.keypoints * terms["keypoints"] + c.loss.pose_prior * terms["pose_prior"]
                 + c.loss.shape_prior * terms["shape_prior"])
        if replay is not None and replay_out is not None and c.replay.weight > 0:
            terms["replay"] = _replay_loss(self.body, replay_out, replay)
            total = total + c.replay.weight * terms["replay"]
        if self.aux is not None:
            targets = self.aux_targets(fb.images)
            terms["dualnet"], parts = pseudo_smpl_loss(self.body, out, targets, PseudoWeights(),
                                                       points=points)
            terms.update(parts)
            total = total + c.dualnet.weight * terms["dualnet"]
        if synthetic is not None and synthetic_out is not None and c.dapa.weight > 0:
            terms["synthetic"], parts = synthetic_loss(self.body, synthetic_out, synthetic)
            terms.update(parts)
            total = total + c.dapa.weight * terms["synthetic"]
        return total, terms

    def temporal_loss(self, out_now: RegressorOutput, out_prev: RegressorOutput,
                      batch: AdaptBatch, points_now: Tensor | None = None,
                      out_flow: RegressorOutput | None = None
                      ) -> tuple[Tensor, dict[str, Tensor]]:
        """L_T: mean-teacher consistency on the current frames + 2D motion over tau
        [+ flow against the frames one earlier (out_flow) + anchor to the source model];
        `points_now` (B, 46, 3) are out_now's body points when the caller has them."""
        c = self.cfg
        cur, prev = batch.current, batch.previous
        points_now = self._points(out_now) if points_now is None else points_now
        terms = {"teacher": L.consistency_loss(points_now, self.teacher_points(cur.images))}
        points_prev = self._points(out_prev)
        uv_now = L.project_pixels(torch.einsum("js,bsd->bjd", cur.mapping, points_now),
                                  L.camera_translation(out_now.cam, cur.box, cur.K), cur.K)
        uv_prev = L.project_pixels(torch.einsum("js,bsd->bjd", prev.mapping, points_prev),
                                   L.camera_translation(out_prev.cam, prev.box, prev.K),
                                   prev.K)
        terms["motion"] = L.motion_loss(uv_now, uv_prev, cur.keypoints, prev.keypoints,
                                        cur.conf * prev.conf, cur.box)
        total = c.teacher.weight * terms["teacher"] + c.loss.motion * terms["motion"]
        if c.flow.weight > 0 and batch.flow is not None and out_flow is not None:
            terms["flow"] = flow_term(self.body, out_flow, out_now, batch.flow, cur.box, cur.K)
            total = total + c.flow.weight * terms["flow"]
        if c.loss.anchor > 0 and self.frozen is not None:
            with torch.no_grad():
                ref = self._forward(None, [cur.images], self.frozen)
            terms["anchor"] = L.anchor_loss(out_now.rotmat, out_now.betas, ref.rotmat,
                                            ref.betas)
            total = total + c.loss.anchor * terms["anchor"]
        return total, terms

    def _outputs(self, params: dict[str, Tensor] | None, batch: AdaptBatch,
                 previous: bool = True
                 ) -> tuple[RegressorOutput, RegressorOutput | None, RegressorOutput | None,
                            RegressorOutput | None, RegressorOutput | None]:
        """Current, previous, replay, DAPA's synthetic and the flow's earlier frames' outputs
        (None where absent) from ONE forward over all images."""
        parts = [batch.current.images]
        if previous:
            parts.append(batch.previous.images)
        if batch.replay is not None:
            parts.append(batch.replay["images"])
        if batch.synthetic is not None:
            parts.append(batch.synthetic.images)
        flow = previous and batch.flow is not None and self.cfg.flow.weight > 0
        if flow:
            parts.append(batch.flow.images)
        out = self._forward(params, parts)
        sizes = [len(p) for p in parts]
        pieces = [RegressorOutput(*chunk) for chunk in zip(
            *(t.split(sizes) for t in (out.pose6d, out.rotmat, out.betas, out.cam)))]
        now = pieces.pop(0)
        prev = pieces.pop(0) if previous else None
        rep = pieces.pop(0) if batch.replay is not None else None
        syn = pieces.pop(0) if batch.synthetic is not None else None
        earlier = pieces.pop(0) if flow else None
        return now, prev, rep, syn, earlier

    def lower(self, params, batch: AdaptBatch) -> tuple[Tensor, dict[str, Tensor]]:
        now, _, rep, syn, _ = self._outputs(params, batch, previous=False)
        return self.frame_loss(now, batch.current, batch.replay, rep,
                               synthetic=batch.synthetic, synthetic_out=syn)

    def upper(self, params, batch: AdaptBatch) -> tuple[Tensor, dict[str, Tensor]]:
        now, prev, rep, syn, earlier = self._outputs(params, batch)
        points_now = self._points(now)  # one body evaluation serves both levels' terms
        lf, tf = self.frame_loss(now, batch.current, batch.replay, rep, points_now,
                                 batch.synthetic, syn)
        lt, tt = self.temporal_loss(now, prev, batch, points_now, earlier)
        return lf + lt, {**tf, **tt}

    # ------------------------------------------------------------------ steps

    def step(self, batch: AdaptBatch) -> StepReport:
        self._prefixes, self._teacher_cache, self._caching = {}, None, True
        if self.scope.prefix_stage is not None:  # prefixes earlier steps computed
            for fb in (batch.current, batch.previous):
                if fb.prefix is not None:
                    self._prefixes[id(fb.images)] = (fb.images, fb.prefix)
        scale = batch.lr_scale
        if scale != 1.0:  # the step stands for several frames (adapt.worker.catch_up)
            for g in self.optimizer.param_groups:
                g["lr"] = self.cfg.outer_lr * scale
        try:
            return self._step(batch)
        finally:
            self._caching = False
            if scale != 1.0:
                for g in self.optimizer.param_groups:
                    g["lr"] = self.cfg.outer_lr

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
        now, prev, _, _, earlier = self._outputs(params, batch)
        return self.temporal_loss(now, prev, batch, out_flow=earlier)

    def _adam(self, objective) -> tuple[Tensor, dict[str, Tensor]]:
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms = objective(None)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), {k: v.detach() for k, v in terms.items()}

    def bilevel_gradient(self, batch: AdaptBatch, second_order: bool
                         ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        """Gradient of the upper-level loss with respect to the ORIGINAL weights
        (`bilevel.bilevel_gradient`)."""
        return bilevel_gradient(self, batch, second_order)

    def _bilevel(self, batch: AdaptBatch, second_order: bool) -> tuple[Tensor, dict]:
        grads, upper, terms = self.bilevel_gradient(batch, second_order)
        self.optimizer.zero_grad(set_to_none=True)
        for n, p in self.params().items():
            p.grad = grads[n]
        self.optimizer.step()
        return upper, terms

    def update_teacher(self) -> None:
        d = self.cfg.teacher.decay
        self._teacher_cache = None
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters()):
                t.mul_(d).add_(s.detach(), alpha=1.0 - d)


def _replay_loss(body: BodyModel, out: RegressorOutput, data: dict[str, Tensor]) -> Tensor:
    """Supervised loss on labelled source crops (BOA's L_S): 3D points and rotations."""
    pred = body.points_rotmat(out.rotmat, out.betas)
    gt = data["points3d"]
    l3d = ((pred - pred[:, :1]) - (gt - gt[:, :1])).pow(2).sum(-1).mean()
    return l3d + (out.rotmat - data["rotmat"]).pow(2).mean()
