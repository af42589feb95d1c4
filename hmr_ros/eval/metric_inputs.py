"""The metrics' input handling: arrays or tensors to float64 numpy, shape checks with clear
messages, validity masks, root joints and masked means (see `metrics.py` for the conventions).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
Root = int | Sequence[int] | None


def to_float64(x: object, name: str) -> np.ndarray:
    """Any array-like (numpy, torch, nested lists) as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a numeric array or tensor, got {type(x).__name__}"
        ) from exc


def point_array(x: object, name: str, dim: int, leading: str) -> np.ndarray:
    """A (N0, N1, dim) point array; `leading` names the first two axes for messages."""
    a = to_float64(x, name)
    if a.ndim != 3 or a.shape[-1] != dim:
        raise ValueError(
            f"{name} must have shape ({leading}, {dim}), got {tuple(a.shape)}"
            + (f"; for one sample use {name}[None]" if a.ndim == 2 and a.shape[-1] == dim else "")
        )
    return a


def point_pair(
    pred: object, gt: object, dim: int = 3, leading: str = "B, J", names: str = "pred/gt"
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and ground truth of the same (N0, N1, dim) shape."""
    pred_name, gt_name = names.split("/")
    p = point_array(pred, pred_name, dim, leading)
    g = point_array(gt, gt_name, dim, leading)
    if p.shape != g.shape:
        raise ValueError(
            f"{pred_name} and {gt_name} must have the same shape, "
            f"got {tuple(p.shape)} and {tuple(g.shape)}"
        )
    return p, g


def valid_mask(mask: object | None, shape: tuple[int, ...], name: str, dims: str) -> np.ndarray:
    """A boolean validity mask of exactly `shape` (all True for None)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"{name} must have shape ({dims}) = {shape}, got {tuple(m.shape)}")
    if m.dtype == bool:
        return m.copy()
    if not (np.issubdtype(m.dtype, np.number)):
        raise ValueError(f"{name} must be boolean or numeric, got dtype {m.dtype}")
    return m != 0


def root_indices(root: object, num_joints: int) -> np.ndarray | None:
    """None, or the validated joint indices (at least one) to align by."""
    if root is None:
        return None
    if isinstance(root, torch.Tensor):
        root = root.detach().cpu().numpy()
    if isinstance(root, (bool, np.bool_)):
        raise ValueError(f"root must be None, an int or a sequence of ints, got {root!r}")
    if isinstance(root, numbers.Integral):
        idx = np.array([int(root)])
    else:
        idx = np.asarray(root)
        if idx.ndim == 0:
            idx = idx[None]
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"root must be None, an int or a non-empty sequence of ints, got {root!r}"
            )
    if ((idx < 0) | (idx >= num_joints)).any():
        raise ValueError(f"root joint(s) {idx.tolist()} out of range for {num_joints} joints")
    return idx.astype(np.int64)


def root_align(points: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    """Points minus the mean of the root joints. points: (..., J, 3) -> (..., J, 3)"""
    if idx is None:
        return points
    return points - points[..., idx, :].mean(axis=-2, keepdims=True)


def masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the valid entries; NaN where none is valid.

    values, valid: (B, N) -> (B,)
    """
    count = valid.sum(axis=-1)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def check_threshold(threshold: object, batch: int, name: str) -> np.ndarray:
    """A non-negative threshold, scalar or per sample, as (B,) or () float64."""
    t = to_float64(threshold, name)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch):
        raise ValueError(f"{name} must be a scalar or have shape (B,) = ({batch},), got {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {t}")
    return t
