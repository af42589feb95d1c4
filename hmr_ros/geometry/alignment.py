"""Alignment: the least-squares similarity transform (Umeyama) and Procrustes alignment."""

from __future__ import annotations

import torch
from torch import Tensor


def similarity_transform(
    source: Tensor, target: Tensor, weights: Tensor | None = None, eps: float = 1e-12
) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares similarity (scale, proper rotation, translation) from source to target.

    Umeyama (1991): minimises sum_i w_i |scale * R @ source_i + t - target_i|^2 over scale > 0,
    R in SO(3) and t. The sign correction on the smallest singular direction keeps det R = +1
    even when the best orthogonal map is a reflection. `weights` (e.g. a visibility mask) makes
    missing points not count; a batch element needs at least 3 non-collinear weighted points for
    a unique R. Differentiable through the SVD, but its gradient is ill-conditioned when
    singular values repeat (symmetric point sets); intended for evaluation.

    source, target: (..., N, 3), weights: (..., N) or None
    -> scale (...), R (..., 3, 3), t (..., 3)
    """
    if weights is None:
        weights = torch.ones_like(source[..., 0])
    w = weights.to(source.dtype)
    w = (w / w.sum(-1, keepdim=True).clamp(min=eps))[..., None]
    mu_s = (w * source).sum(-2)
    mu_t = (w * target).sum(-2)
    xs = source - mu_s[..., None, :]
    xt = target - mu_t[..., None, :]
    var_s = (w * xs * xs).sum((-2, -1))
    cov = (w * xt).transpose(-1, -2) @ xs
    u, sv, vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    # det can be exactly 0 only for degenerate input; any sign is then as good as the other.
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.cat((torch.ones_like(sv[..., :2]), sign[..., None]), dim=-1)
    r = (u * d[..., None, :]) @ vh
    scale = (sv * d).sum(-1) / var_s.clamp(min=eps)
    t = mu_t - scale[..., None] * (r @ mu_s[..., None]).squeeze(-1)
    return scale, r, t


def procrustes_align(source: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Source aligned onto target by the best similarity transform (see `similarity_transform`).

    This is the alignment of PA-MPJPE. Weighted-out points are still transformed (they just do
    not influence the fit).

    source, target: (..., N, 3), weights: (..., N) or None -> (..., N, 3)
    """
    scale, r, t = similarity_transform(source, target, weights)
    return scale[..., None, None] * source @ r.transpose(-1, -2) + t[..., None, :]
