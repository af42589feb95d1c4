"""DualNet's pseudo-SMPL term: an auxiliary regressor f_u of the same architecture
predicts the body for the same crops, and the adapted network is pulled towards it.

The same term is the auxiliary part of the meta-training's inner (test-time) loss
(`hmr_ros/train_meta.py`) and, as the `dualnet` option of online adaptation
(`adapt.dualnet.weight`), part of L_F at test time: the start point was trained to improve
under exactly this loss. The weights inside the term are DualNet's public code's (0.5
vertices, 5 joints, 1 rotations, 0.001 shape); `adapt.dualnet.weight` scales the whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from ..body import BodyModel
from ..model.hmr import HMR, RegressorOutput


@dataclass(frozen=True)
class PseudoWeights:
    """The pseudo-SMPL terms' weights (DualNet's public code's values)."""

    vertices: float = 0.5  # root-centred mesh vertices (metres, squared)
    joints: float = 5.0  # root-centred 46 body points
    rot: float = 1.0  # rotation matrices
    betas: float = 1e-3


@dataclass(frozen=True)
class AuxTargets:
    """f_u's pseudo-SMPL prediction for a batch: rotmat (B, 24, 3, 3), betas (B, 10),
    points (B, 46, 3) and vertices (B, V, 3) root-centred (None when unused)."""

    rotmat: Tensor
    betas: Tensor
    points: Tensor
    vertices: Tensor | None

    def detach(self) -> AuxTargets:
        return AuxTargets(*(None if x is None else x.detach()
                            for x in (self.rotmat, self.betas, self.points, self.vertices)))


def centred(body: BodyModel, out: RegressorOutput, vertices: bool
            ) -> tuple[Tensor, Tensor | None]:
    """Root-centred (B, 46, 3) points and (B, V, 3) vertices (or None) of an output; the
    points-only body evaluation when the vertices are not wanted."""
    if not vertices:
        p = body.points_rotmat(out.rotmat, out.betas)
        return p - p[:, :1], None
    b = body.forward_rotmat(out.rotmat, out.betas)
    p = b.points
    return p - p[:, :1], b.vertices - p[:, :1]


def aux_targets(aux: HMR, body: BodyModel, images: Tensor, weights: PseudoWeights,
                params: dict[str, Tensor] | None = None, detach: bool = True) -> AuxTargets:
    """f_u's targets for images (B, 3, R, R), at `params` when given (functional call).
    Without dropout (eval mode), as they are made at test time: a dropout mask would make
    them noise that the step chases. Detached (constants of the loss) unless `detach` is
    False and gradients are on."""
    was = aux.training
    aux.eval()
    try:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
            out = aux(images) if params is None else functional_call(aux, params, (images,))
            points, verts = centred(body, out, weights.vertices > 0)
    finally:
        aux.train(was)
    t = AuxTargets(out.rotmat, out.betas, points, verts)
    return t.detach() if detach else t


def pseudo_smpl_loss(body: BodyModel, out: RegressorOutput, targets: AuxTargets,
                     weights: PseudoWeights, points: Tensor | None = None
                     ) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted pseudo-SMPL loss of `out` against f_u's `targets` and its terms.
    `points` (B, 46, 3), out's body points in the model frame, when the caller has them and
    no vertices are wanted (saves a body evaluation)."""
    want_verts = weights.vertices > 0 and targets.vertices is not None
    if points is not None and not want_verts:
        own, verts = points - points[:, :1], None
    else:
        own, verts = centred(body, out, want_verts)
    terms = {
        "aux_joints": (own - targets.points).pow(2).sum(-1).mean(),
        "aux_rot": F.mse_loss(out.rotmat, targets.rotmat),
        "aux_betas": F.mse_loss(out.betas, targets.betas),
    }
    total = (weights.joints * terms["aux_joints"] + weights.rot * terms["aux_rot"]
             + weights.betas * terms["aux_betas"])
    if verts is not None:
        terms["aux_vertices"] = (verts - targets.vertices).pow(2).sum(-1).mean()
        total = total + weights.vertices * terms["aux_vertices"]
    return total, terms
