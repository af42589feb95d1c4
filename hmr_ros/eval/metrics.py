"""Error metrics for human mesh recovery, per sample, in MILLIMETRES.

Inputs are positions in metres, given as numpy arrays or torch tensors (any float dtype, any
device; tensors are detached and copied to the CPU). Every metric is computed in float64 and
returns a numpy float64 array with one value per sample (per frame for `accel_error`), scaled to
millimetres (pixels for `pck_2d`, fractions for the PCKs). A sample whose value is undefined
(all its joints masked, a masked root joint, too few joints for Procrustes, a frame triplet
with a masked frame) is NaN, so shapes never depend on masks; `summarize` and `MetricReport`
ignore NaN when they average.

Masks are boolean-like, True (non-zero) = valid. Masked joints never influence a result: they
are left out of means and fits, and NaN coordinates there are harmless.

Root alignment (`root`): None compares positions as given; an int subtracts that joint of each
side from that side (e.g. 0, the pelvis of SMPL24 and H36M17); a sequence of ints subtracts the
mean of those joints (e.g. (2, 3), the two hips of LSP14, as SPIN and VIBE do for 14 joints).

Shapes: B samples, J joints, V vertices, T frames.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hmr_ros.geometry import procrustes_align

ArrayLike = np.ndarray | torch.Tensor
Root = int | Sequence[int] | None

MM_PER_M = 1000.0

__all__ = [
    "MM_PER_M",
    "MetricReport",
    "accel_error",
    "mpjpe",
    "pa_mpjpe",
    "pck",
    "pck_2d",
    "pve",
    "summarize",
]


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def _to_numpy(x: object, name: str) -> np.ndarray:
    """Any array-like (numpy, torch, nested lists) as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a numeric array or tensor, got {type(x).__name__}"
        ) from exc


def _points(x: object, name: str, dim: int, leading: str) -> np.ndarray:
    """A (N0, N1, dim) point array; `leading` names the first two axes for messages."""
    a = _to_numpy(x, name)
    if a.ndim != 3 or a.shape[-1] != dim:
        raise ValueError(
            f"{name} must have shape ({leading}, {dim}), got {tuple(a.shape)}"
            + (f"; for one sample use {name}[None]" if a.ndim == 2 and a.shape[-1] == dim else "")
        )
    return a


def _pair(
    pred: object, gt: object, dim: int = 3, leading: str = "B, J", names: str = "pred/gt"
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and ground truth of the same (N0, N1, dim) shape."""
    pred_name, gt_name = names.split("/")
    p = _points(pred, pred_name, dim, leading)
    g = _points(gt, gt_name, dim, leading)
    if p.shape != g.shape:
        raise ValueError(
            f"{pred_name} and {gt_name} must have the same shape, "
            f"got {tuple(p.shape)} and {tuple(g.shape)}"
        )
    return p, g


def _mask(mask: object | None, shape: tuple[int, ...], name: str, dims: str) -> np.ndarray:
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


def _root_indices(root: object, num_joints: int) -> np.ndarray | None:
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


def _root_align(points: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    """Points minus the mean of the root joints. points: (..., J, 3) -> (..., J, 3)"""
    if idx is None:
        return points
    return points - points[..., idx, :].mean(axis=-2, keepdims=True)


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the valid entries; NaN where none is valid.

    values, valid: (B, N) -> (B,)
    """
    count = valid.sum(axis=-1)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _check_threshold(threshold: object, batch: int, name: str) -> np.ndarray:
    """A non-negative threshold, scalar or per sample, as (B,) or () float64."""
    t = _to_numpy(threshold, name)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch):
        raise ValueError(f"{name} must be a scalar or have shape (B,) = ({batch},), got {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {t}")
    return t


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def mpjpe(
    pred: ArrayLike, gt: ArrayLike, root: Root = None, mask: ArrayLike | None = None
) -> np.ndarray:
    """Mean per-joint position error (MPJPE), millimetres.

    Mean over the valid joints of |pred_j - gt_j| after subtracting each side's root (see the
    module docstring; `root=None` means no alignment). A sample with no valid joint, or with a
    masked root joint (its root-relative error is undefined), is NaN.

    pred, gt: (B, J, 3) metres; root: None | int | sequence of ints; mask: (B, J) or None
    -> (B,) float64 mm
    """
    p, g = _pair(pred, gt)
    batch, joints = p.shape[:2]
    m = _mask(mask, (batch, joints), "mask", "B, J")
    idx = _root_indices(root, joints)
    err = np.linalg.norm(_root_align(p, idx) - _root_align(g, idx), axis=-1) * MM_PER_M
    out = _masked_mean(err, m)
    if idx is not None:
        out[~m[:, idx].all(axis=-1)] = np.nan
    return out


def pa_mpjpe(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """Procrustes-aligned MPJPE (PA-MPJPE, "reconstruction error"), millimetres.

    pred is mapped onto gt by the least-squares similarity transform (scale, rotation,
    translation; `hmr_ros.geometry.procrustes_align`) fitted on the valid joints only, then the
    MPJPE over the valid joints is taken. Root alignment is implied (the translation is fitted).
    A sample with fewer than 3 valid joints (no unique rotation) is NaN.

    pred, gt: (B, J, 3) metres; mask: (B, J) or None -> (B,) float64 mm
    """
    p, g = _pair(pred, gt)
    batch, joints = p.shape[:2]
    m = _mask(mask, (batch, joints), "mask", "B, J")
    # Zero the masked joints: weight 0 times NaN would still poison the fit.
    p = np.where(m[..., None], p, 0.0)
    g = np.where(m[..., None], g, 0.0)
    aligned = procrustes_align(
        torch.from_numpy(p), torch.from_numpy(g), torch.from_numpy(m.astype(np.float64))
    ).numpy()
    err = np.linalg.norm(aligned - g, axis=-1) * MM_PER_M
    out = _masked_mean(err, m)
    out[m.sum(axis=-1) < 3] = np.nan
    return out


def pve(
    pred_vertices: ArrayLike,
    gt_vertices: ArrayLike,
    pred_root: ArrayLike | None = None,
    gt_root: ArrayLike | None = None,
) -> np.ndarray:
    """Per-vertex error (PVE, also "MPVPE" / "V2V"), millimetres.

    Mean over vertices of |pred_v - gt_v|. As in the literature (SPIN, VIBE on 3DPW), the
    meshes are usually compared root-relative: pass each side's root position, typically its
    pelvis joint (`pred_root = pred_joints[:, 0]`, `gt_root = gt_joints[:, 0]`), and it is
    subtracted from that side's vertices. Give both roots or neither.

    pred_vertices, gt_vertices: (B, V, 3) metres; pred_root, gt_root: (B, 3) metres or None
    -> (B,) float64 mm
    """
    p, g = _pair(pred_vertices, gt_vertices, leading="B, V", names="pred_vertices/gt_vertices")
    if (pred_root is None) != (gt_root is None):
        raise ValueError("pve: give both pred_root and gt_root, or neither")
    if pred_root is not None:
        batch = p.shape[0]
        roots = []
        for value, name in ((pred_root, "pred_root"), (gt_root, "gt_root")):
            r = _to_numpy(value, name)
            if r.shape != (batch, 3):
                raise ValueError(f"{name} must have shape (B, 3) = ({batch}, 3), got {r.shape}")
            roots.append(r)
        p = p - roots[0][:, None, :]
        g = g - roots[1][:, None, :]
    return np.linalg.norm(p - g, axis=-1).mean(axis=-1) * MM_PER_M


def accel_error(
    pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, root: Root = 0
) -> np.ndarray:
    """Acceleration error (ACCEL) of a joint trajectory, millimetres per frame^2.

    As in HMMR/VIBE: the second finite difference a[t] = x[t+1] - 2 x[t] + x[t-1] of the
    (root-aligned, by joint 0 unless `root` says otherwise; None for none) joints of each side,
    then the mean over joints of |a_pred - a_gt|. Output i belongs to the triplet centred on
    frame i + 1, so the result has T - 2 entries (none when T < 3). A triplet containing a
    masked frame is NaN (shapes stay fixed; aggregate with `summarize`/`MetricReport`, which
    ignore NaN, to get the literature's mean over valid triplets). Depends on the frame rate:
    compare numbers at the same rate.

    pred, gt: (T, J, 3) metres; mask: (T,) or None; root: None | int | sequence of ints
    -> (max(T - 2, 0),) float64 mm / frame^2
    """
    p, g = _pair(pred, gt, leading="T, J")
    frames, joints = p.shape[:2]
    m = _mask(mask, (frames,), "mask", "T")
    idx = _root_indices(root, joints)
    if frames < 3:
        return np.empty(0)
    p = _root_align(p, idx)
    g = _root_align(g, idx)
    acc_p = p[2:] - 2.0 * p[1:-1] + p[:-2]
    acc_g = g[2:] - 2.0 * g[1:-1] + g[:-2]
    out = np.linalg.norm(acc_p - acc_g, axis=-1).mean(axis=-1) * MM_PER_M
    out[~(m[:-2] & m[1:-1] & m[2:])] = np.nan
    return out


def pck(
    pred: ArrayLike,
    gt: ArrayLike,
    threshold_mm: float = 150.0,
    root: Root = 0,
    mask: ArrayLike | None = None,
) -> np.ndarray:
    """3D percentage of correct keypoints (3DPCK), as a fraction in [0, 1].

    The fraction of valid joints whose error after root alignment (joint 0 by default; see the
    module docstring) is <= `threshold_mm` (150 mm is the MPI-INF-3DHP convention). NaN for a
    sample with no valid joint or a masked root joint.

    pred, gt: (B, J, 3) metres; threshold_mm: scalar or (B,); root: None | int | sequence;
    mask: (B, J) or None -> (B,) float64
    """
    p, g = _pair(pred, gt)
    batch, joints = p.shape[:2]
    m = _mask(mask, (batch, joints), "mask", "B, J")
    thr = _check_threshold(threshold_mm, batch, "threshold_mm")
    idx = _root_indices(root, joints)
    err = np.linalg.norm(_root_align(p, idx) - _root_align(g, idx), axis=-1) * MM_PER_M
    hit = (err <= np.reshape(thr, (-1, 1))).astype(np.float64)
    out = _masked_mean(hit, m)
    if idx is not None:
        out[~m[:, idx].all(axis=-1)] = np.nan
    return out


def pck_2d(
    pred: ArrayLike,
    gt: ArrayLike,
    threshold_px: float | ArrayLike,
    visible: ArrayLike | None = None,
) -> np.ndarray:
    """2D percentage of correct keypoints, as a fraction in [0, 1].

    The fraction of visible joints whose pixel distance is <= `threshold_px`; pass a per-sample
    threshold for normalised variants (e.g. PCKh: 0.5 x head size). No alignment. NaN for a
    sample with no visible joint.

    pred, gt: (B, J, 2) pixels; threshold_px: scalar or (B,); visible: (B, J) or None
    -> (B,) float64
    """
    p, g = _pair(pred, gt, dim=2)
    batch, joints = p.shape[:2]
    v = _mask(visible, (batch, joints), "visible", "B, J")
    thr = _check_threshold(threshold_px, batch, "threshold_px")
    err = np.linalg.norm(p - g, axis=-1)
    return _masked_mean((err <= np.reshape(thr, (-1, 1))).astype(np.float64), v)


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _values(values: object, name: str) -> np.ndarray:
    """Per-sample values (scalar or any shape) as a flat float64 copy."""
    return np.array(_to_numpy(values, name), dtype=np.float64).reshape(-1)


def summarize(per_sample: Mapping[str, ArrayLike]) -> dict[str, float]:
    """Mean of each metric's per-sample values, ignoring NaN (NaN if all are NaN or empty).

    per_sample: {name: (N,) or any shape} -> {name: float}
    """
    return {name: _nanmean(_values(v, name)) for name, v in per_sample.items()}


@dataclass(frozen=True, eq=False)
class MetricReport:
    """Per-sample metric values accumulated over a stream (frames, batches, sequences).

    The instance is frozen (its attributes cannot be rebound) but accumulates: `add` appends
    values under a name. NaN values (undefined samples) are kept and counted in `to_dict`'s
    "total" but ignored by every mean. Names keep their first-insertion order.

        report = MetricReport()
        report.add("mpjpe_mm", mpjpe(pred, gt, root=0))
        report.add("accel_mm", accel_error(pred_seq, gt_seq))
        report.means()  # {"mpjpe_mm": ..., "accel_mm": ...}
    """

    _chunks: dict[str, list[np.ndarray]] = field(default_factory=dict, init=False, repr=False)

    def add(self, name: str, values: ArrayLike | float) -> None:
        """Append per-sample values (a scalar or an array of any shape, flattened)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        self._chunks.setdefault(name, []).append(_values(values, name))

    def add_all(self, per_sample: Mapping[str, ArrayLike | float]) -> None:
        """`add` each entry of a {name: values} mapping."""
        for name, values in per_sample.items():
            self.add(name, values)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._chunks)

    def values(self, name: str) -> np.ndarray:
        """All values added under `name`, in order, NaN included. -> (N,) float64"""
        if name not in self._chunks:
            raise KeyError(f"no metric {name!r} in this report (have {list(self._chunks)})")
        return np.concatenate(self._chunks[name])

    def counts(self) -> dict[str, int]:
        """Number of valid (non-NaN) values per metric."""
        return {n: int((~np.isnan(self.values(n))).sum()) for n in self._chunks}

    def means(self) -> dict[str, float]:
        """Mean of each metric over all its non-NaN values (NaN if there are none)."""
        return {n: _nanmean(self.values(n)) for n in self._chunks}

    def to_dict(self) -> dict[str, dict[str, float | int | None]]:
        """JSON-ready summary: {name: {"mean": float | None, "count": valid, "total": all}}.

        "mean" is None when no value is valid (strict JSON has no NaN).
        """
        out: dict[str, dict[str, float | int | None]] = {}
        for n in self._chunks:
            v = self.values(n)
            mean = _nanmean(v)
            out[n] = {
                "mean": None if math.isnan(mean) else mean,
                "count": int((~np.isnan(v)).sum()),
                "total": int(v.size),
            }
        return out
