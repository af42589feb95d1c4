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

The input handling lives in `metric_inputs.py`, the aggregation (`summarize`, `MetricReport`,
importable from here) in `metric_report.py`.
"""

from __future__ import annotations

import numpy as np
import torch

from hmr_ros.geometry import procrustes_align

from .metric_inputs import (
    ArrayLike,
    Root,
    check_threshold,
    masked_mean,
    point_pair,
    root_align,
    root_indices,
    to_float64,
    valid_mask,
)
from .metric_report import MetricReport, summarize

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
    p, g = point_pair(pred, gt)
    batch, joints = p.shape[:2]
    m = valid_mask(mask, (batch, joints), "mask", "B, J")
    idx = root_indices(root, joints)
    err = np.linalg.norm(root_align(p, idx) - root_align(g, idx), axis=-1) * MM_PER_M
    out = masked_mean(err, m)
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
    p, g = point_pair(pred, gt)
    batch, joints = p.shape[:2]
    m = valid_mask(mask, (batch, joints), "mask", "B, J")
    # Zero the masked joints: weight 0 times NaN would still poison the fit.
    p = np.where(m[..., None], p, 0.0)
    g = np.where(m[..., None], g, 0.0)
    aligned = procrustes_align(
        torch.from_numpy(p), torch.from_numpy(g), torch.from_numpy(m.astype(np.float64))
    ).numpy()
    err = np.linalg.norm(aligned - g, axis=-1) * MM_PER_M
    out = masked_mean(err, m)
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
    p, g = point_pair(pred_vertices, gt_vertices, leading="B, V",
                      names="pred_vertices/gt_vertices")
    if (pred_root is None) != (gt_root is None):
        raise ValueError("pve: give both pred_root and gt_root, or neither")
    if pred_root is not None:
        batch = p.shape[0]
        roots = []
        for value, name in ((pred_root, "pred_root"), (gt_root, "gt_root")):
            r = to_float64(value, name)
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
    p, g = point_pair(pred, gt, leading="T, J")
    frames, joints = p.shape[:2]
    m = valid_mask(mask, (frames,), "mask", "T")
    idx = root_indices(root, joints)
    if frames < 3:
        return np.empty(0)
    p = root_align(p, idx)
    g = root_align(g, idx)
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
    p, g = point_pair(pred, gt)
    batch, joints = p.shape[:2]
    m = valid_mask(mask, (batch, joints), "mask", "B, J")
    thr = check_threshold(threshold_mm, batch, "threshold_mm")
    idx = root_indices(root, joints)
    err = np.linalg.norm(root_align(p, idx) - root_align(g, idx), axis=-1) * MM_PER_M
    hit = (err <= np.reshape(thr, (-1, 1))).astype(np.float64)
    out = masked_mean(hit, m)
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
    p, g = point_pair(pred, gt, dim=2)
    batch, joints = p.shape[:2]
    v = valid_mask(visible, (batch, joints), "visible", "B, J")
    thr = check_threshold(threshold_px, batch, "threshold_px")
    err = np.linalg.norm(p - g, axis=-1)
    return masked_mean((err <= np.reshape(thr, (-1, 1))).astype(np.float64), v)
