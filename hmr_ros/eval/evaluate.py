"""Evaluate estimates against ground truth, frame by frame and per track.

Metrics (mm): MPJPE after aligning the mid-hip point and PA-MPJPE on the LSP-14 joints (the
subset BOA and SPIN report), PVE on the vertices after aligning the pelvis joint, ACCEL on
the LSP-14 joints of each track, and the share of ground-truth people with an estimate.
Ground truth and predictions go through the same body model, so approximate joint mappings
cannot bias the comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..body import BodyModel, BodyOutput, map_points
from ..data.frame import BodyParams, Frame, FrameResult, PersonEstimate
from .metrics import MetricReport, accel_error, mpjpe, pa_mpjpe, pve

JOINT_SET = "lsp14"
HIPS = (2, 3)  # right_hip, left_hip in LSP-14


@dataclass(frozen=True)
class Truth:
    """Ground-truth geometry of one person: points (46, 3) and vertices (V, 3), camera frame."""

    points: np.ndarray
    vertices: np.ndarray


def pose_bodies(body: BodyModel, params: dict[int, BodyParams]
                ) -> tuple[list[int], BodyOutput | None]:
    """Everyone's SMPL parameters through the body model in one batch: (sorted ids, output)."""
    if not params:
        return [], None
    ids = sorted(params)
    pose = torch.from_numpy(np.stack([params[i].full_pose() for i in ids]).astype(np.float32))
    betas = torch.from_numpy(np.stack([params[i].betas for i in ids]).astype(np.float32))
    transl = torch.from_numpy(np.stack([params[i].transl for i in ids]).astype(np.float32))
    with torch.inference_mode():
        out = body.forward_axis_angle(pose.reshape(len(ids), 72), betas, transl)
    return ids, out


def truth_from_params(body: BodyModel, params: dict[int, BodyParams]) -> dict[int, Truth]:
    ids, out = pose_bodies(body, params)
    return {i: Truth(out.points[k].numpy(), out.vertices[k].numpy())
            for k, i in enumerate(ids)}


@dataclass
class StreamEvaluator:
    """Accumulates per-frame errors and per-track joint sequences over a stream."""

    body: BodyModel
    report: MetricReport = field(default_factory=MetricReport)
    tracks: dict[tuple[int, int], list[tuple[int, np.ndarray | None, np.ndarray]]] = field(
        default_factory=dict)
    people: int = 0
    found: int = 0

    def add(self, frame: Frame, result: FrameResult, stream: int = 0) -> dict[str, float]:
        """Score one frame; returns that frame's mean errors (empty dict if no truth).

        `stream` keeps tracks of different streams apart (ids and frame indices restart in
        each), so ACCEL never differences frames of two streams."""
        truth = truth_from_params(self.body, frame.ground_truth)
        by_id: dict[int, PersonEstimate] = {p.id: p for p in result.people}
        frame_vals: dict[str, list[float]] = {"mpjpe": [], "pa_mpjpe": [], "pve": []}
        for pid, gt in truth.items():
            self.people += 1
            est = by_id.get(pid)
            gt_j = map_points(torch.from_numpy(gt.points), JOINT_SET).numpy()
            if est is None:
                self.tracks.setdefault((stream, pid), []).append((frame.index, None, gt_j))
                continue
            self.found += 1
            pr_j = map_points(torch.from_numpy(est.points), JOINT_SET).numpy()
            vals = {
                "mpjpe": float(mpjpe(pr_j[None], gt_j[None], root=HIPS)[0]),
                "pa_mpjpe": float(pa_mpjpe(pr_j[None], gt_j[None])[0]),
            }
            if est.vertices is not None:
                vals["pve"] = float(pve(est.vertices[None], gt.vertices[None],
                                        pred_root=est.points[None, 0],
                                        gt_root=gt.points[None, 0])[0])
            for k, v in vals.items():
                self.report.add(k, v)
                frame_vals[k].append(v)
            self.tracks.setdefault((stream, pid), []).append((frame.index, pr_j, gt_j))
        return {k: float(np.mean(v)) for k, v in frame_vals.items() if v}

    def accel(self) -> np.ndarray:
        """ACCEL (mm/frame^2) over every track's consecutive frames with an estimate."""
        out = []
        for seq in self.tracks.values():
            seq = sorted(seq, key=lambda s: s[0])
            if len(seq) < 3:
                continue
            gt = np.stack([s[2] for s in seq])
            ok = np.array([s[1] is not None for s in seq])
            consecutive = np.r_[True, np.diff([s[0] for s in seq]) == 1]
            pred = np.stack([s[1] if s[1] is not None else s[2] for s in seq])
            # A gap in frame indices breaks the triplets around it.
            mask = ok & consecutive & np.r_[consecutive[1:], True]
            out.append(accel_error(pred, gt, mask=mask, root=HIPS))
        return np.concatenate(out) if out else np.zeros(0)

    def summary(self) -> dict[str, float]:
        means = self.report.means()
        for key in ("mpjpe", "pa_mpjpe"):  # present (NaN, null in JSON) when nothing scored
            means.setdefault(key, float("nan"))
        acc = self.accel()
        means["accel"] = float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")
        means["detected"] = self.found / self.people if self.people else float("nan")
        means["people_frames"] = float(self.people)
        return means


def evaluate(pipeline, frames: Iterable[Frame], on_frame=None) -> dict[str, float]:
    """Run `pipeline` over frames with ground truth; returns the summary metrics."""
    ev = StreamEvaluator(pipeline.body)
    for frame in frames:
        result = pipeline.process(frame)
        vals = ev.add(frame, result)
        if on_frame is not None:
            on_frame(frame, result, vals)
    return ev.summary()
