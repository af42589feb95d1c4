"""Rotations, cameras and alignment: batch, differentiable, torch.

Conventions used across the package:
- Camera frame: x right, y down, z forward (ROS optical frame), metres.
- Rotation matrices act on column vectors: p' = R @ p.
- 6D rotations follow SPIN's interleaved layout (see `rot6d_to_matrix`).
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
