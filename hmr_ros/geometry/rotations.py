"""Rotations in torch, batch and differentiable: SPIN's 6D layout, axis-angle, quaternions
(w, x, y, z) and matrices. Rotation matrices act on column vectors: p' = R @ p.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """SPIN's 6D rotation representation to rotation matrices.

    The 6 numbers are the first two COLUMNS a1, a2 of the matrix, stored interleaved row by row:
    `[a1x, a2x, a1y, a2y, a1z, a2z]` (a (3, 2) matrix flattened in row-major order). This is the
    layout of SPIN's and BOA's `decpose` output, so imported weights produce correct rotations.
    Gram-Schmidt makes the result orthonormal for any input with non-parallel columns.

    x: (..., 6) -> (..., 3, 3)
    """
    m = x.reshape(*x.shape[:-1], 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def matrix_to_rot6d(r: Tensor) -> Tensor:
    """Inverse of `rot6d_to_matrix`: the first two columns, interleaved.

    r: (..., 3, 3) -> (..., 6)
    """
    return r[..., :, :2].reshape(*r.shape[:-2], 6)


# Below this squared angle the closed forms of sin(t)/t and (1 - cos t)/t^2 lose their
# gradients to cancellation (error ~ eps / t^2), while the truncated series are exact to
# ~1e-18 there, so they take over.
_SMALL_ANGLE_SQ = 1e-3


def _sinc_and_versine(theta_sq: Tensor) -> tuple[Tensor, Tensor]:
    """sin(t)/t and (1 - cos t)/t^2 as functions of t^2, smooth through t = 0.

    theta_sq: (...) -> ((...), (...))
    """
    small = theta_sq < _SMALL_ANGLE_SQ
    # The unused branch must not see t = 0 either: torch.where propagates NaN gradients from it.
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    t = torch.sqrt(safe_sq)
    half_sin = torch.sin(0.5 * t)
    a_closed = torch.sin(t) / t
    # 2 sin^2(t/2) avoids the cancellation of 1 - cos t in float32.
    b_closed = 2.0 * half_sin * half_sin / safe_sq
    x = theta_sq
    a_series = 1.0 - x / 6.0 * (1.0 - x / 20.0 * (1.0 - x / 42.0))
    b_series = 0.5 - x / 24.0 * (1.0 - x / 30.0 * (1.0 - x / 56.0))
    return torch.where(small, a_series, a_closed), torch.where(small, b_series, b_closed)


def _skew(v: Tensor) -> Tensor:
    """Cross-product matrix [v]_x, so that [v]_x @ p = v x p.

    v: (..., 3) -> (..., 3, 3)
    """
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Axis-angle (rotation vector, angle = norm) to rotation matrices (Rodrigues).

    R = I + sin(t)/t [a]_x + (1 - cos t)/t^2 [a]_x^2 with t = |a|; the coefficients switch to
    their Taylor series near t = 0, so the map and its gradient are finite (and exact) at a = 0.

    aa: (..., 3) -> (..., 3, 3)
    """
    a, b = _sinc_and_versine((aa * aa).sum(-1))
    k = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Quaternions (w, x, y, z) to rotation matrices.

    The input need not be unit length: it is normalised implicitly (the zero quaternion is
    invalid). ROS messages store (x, y, z, w); reorder before calling.

    q: (..., 4) -> (..., 3, 3)
    """
    w, x, y, z = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    xx, yy, zz = s * x * x, s * y * y, s * z * z
    xy, xz, yz = s * x * y, s * x * z, s * y * z
    wx, wy, wz = s * w * x, s * w * y, s * w * z
    r = torch.stack(
        (
            1.0 - yy - zz, xy - wz, xz + wy,
            xy + wz, 1.0 - xx - zz, yz - wx,
            xz - wy, yz + wx, 1.0 - xx - yy,
        ),
        dim=-1,
    )  # fmt: skip
    return r.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(r: Tensor) -> Tensor:
    """Rotation matrices to unit quaternions (w, x, y, z) with w >= 0.

    Shepperd's method: each of w, x, y, z can be recovered from a square root of a diagonal
    combination and the others by division by it; the branch with the largest square is used.
    That square is always >= 1/4, so the result is accurate for every angle including pi, where
    the trace-only formula breaks down. Slightly non-orthonormal inputs are tolerated (the result
    is renormalised). At exactly w = 0 (angle pi) q and -q are both canonical; either may come
    back. ROS messages store (x, y, z, w); reorder after calling.

    r: (..., 3, 3) -> (..., 4)
    """
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2 for a proper rotation; they sum to 4, so the largest is >= 1.
    sq4 = torch.stack(
        (
            1.0 + r00 + r11 + r22,
            1.0 + r00 - r11 - r22,
            1.0 - r00 + r11 - r22,
            1.0 - r00 - r11 + r22,
        ),
        dim=-1,
    )
    # Clamping below the selected branch's minimum (1) keeps the discarded branches finite, so
    # their zero-weighted gradients cannot turn into NaN; the chosen branch is unaffected.
    two_q = torch.sqrt(sq4.clamp(min=0.1))
    d_wx, d_wy, d_wz = r21 - r12, r02 - r20, r10 - r01
    s_xy, s_xz, s_yz = r01 + r10, r02 + r20, r12 + r21
    # Row i: 4 q_i * (w, x, y, z); dividing by 2 * (2 q_i) gives the quaternion.
    cand = torch.stack(
        (
            torch.stack((sq4[..., 0], d_wx, d_wy, d_wz), dim=-1),
            torch.stack((d_wx, sq4[..., 1], s_xy, s_xz), dim=-1),
            torch.stack((d_wy, s_xy, sq4[..., 2], s_yz), dim=-1),
            torch.stack((d_wz, s_xz, s_yz, sq4[..., 3]), dim=-1),
        ),
        dim=-2,
    ) / (2.0 * two_q[..., None])
    best = sq4.argmax(dim=-1, keepdim=True)[..., None].expand(*sq4.shape[:-1], 1, 4)
    q = torch.gather(cand, -2, best).squeeze(-2)
    q = torch.where(q[..., :1] < 0, -q, q)
    return F.normalize(q, dim=-1)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """Quaternions (w, x, y, z) to axis-angle with angle in [0, pi].

    Uses angle = 2 atan2(|v|, w) (well conditioned everywhere, unlike acos(w) near 0 or asin near
    pi). q and -q give the same result. A series replaces atan(x)/x for small |v| / w, so the
    gradient is finite at the identity.

    q: (..., 4) -> (..., 3)
    """
    q = F.normalize(q, dim=-1)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    n_sq = (v * v).sum(-1)
    # Only reached when w ~ 1, so dividing by w is safe in the series branch.
    x_sq = n_sq / (w * w).clamp(min=0.25)
    small = x_sq < _SMALL_ANGLE_SQ
    safe_n = torch.sqrt(torch.where(small, torch.ones_like(n_sq), n_sq))
    closed = 2.0 * torch.atan2(safe_n, w) / safe_n
    atan_ratio = 1.0 - x_sq * (1.0 / 3.0 - x_sq * (1.0 / 5.0 - x_sq * (1.0 / 7.0 - x_sq / 9.0)))
    series = 2.0 * atan_ratio / w.clamp(min=0.5)
    return torch.where(small, series, closed)[..., None] * v


def axis_angle_to_quaternion(aa: Tensor) -> Tensor:
    """Axis-angle to unit quaternions (w, x, y, z); w >= 0 for angles <= pi.

    aa: (..., 3) -> (..., 4)
    """
    theta_sq = (aa * aa).sum(-1)
    # cos(t/2) and sin(t/2)/t written in terms of t^2 / 4, via the same smooth sinc.
    half_sinc, _ = _sinc_and_versine(0.25 * theta_sq)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    cos_half = torch.where(
        small,
        1.0 - theta_sq / 8.0 * (1.0 - theta_sq / 48.0 * (1.0 - theta_sq / 120.0)),
        torch.cos(0.5 * torch.sqrt(safe)),
    )
    return torch.cat((cos_half[..., None], 0.5 * half_sinc[..., None] * aa), dim=-1)


def matrix_to_axis_angle(r: Tensor) -> Tensor:
    """Rotation matrices to axis-angle (rotation vectors) with angle in [0, pi].

    Goes through `matrix_to_quaternion`, so it is accurate near 0 and near pi. At exactly pi the
    sign of the axis is arbitrary (both describe the same rotation).

    r: (..., 3, 3) -> (..., 3)
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(r))
