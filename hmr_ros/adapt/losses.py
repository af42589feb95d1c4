"""Losses for online adaptation (BOA's L_F and L_T) and for pretraining's 2D term.

Projection uses the real intrinsics: the crop camera [s, tx, ty] becomes a camera-frame
translation for the crop's box (`geometry.crop_cam_to_translation`) and the body's points go
through K, then into normalised crop coordinates ([-1, 1] across the box). 2D keypoints are
compared there, so errors are relative to the person's size in the image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import geometry as G
from ..geometry import crop_cam_to_translation, matrix_to_axis_angle, perspective_project

# Below this crop-camera scale the depth 2 f / (size s) explodes; early or diverging
# predictions are clamped here for projection (the guard catches real divergence).
MIN_CAM_SCALE = 0.05
MIN_DEPTH = 0.1  # m


def _clamp_scale(cam: Tensor) -> Tensor:
    """(B, 3) crop cameras with the scale clamped to MIN_CAM_SCALE from below."""
    return torch.cat([cam[:, :1].clamp(min=MIN_CAM_SCALE), cam[:, 1:]], dim=1)


def camera_translation(cam: Tensor, box: Tensor, K: Tensor) -> Tensor:
    """(B, 3) crop cameras, (B, 3) boxes, (B, 3, 3) or (3, 3) K -> (B, 3) translations."""
    return crop_cam_to_translation(_clamp_scale(cam), box, K)


def project_pixels(points: Tensor, transl: Tensor, K: Tensor) -> Tensor:
    """Model-frame points (B, N, 3) + translation (B, 3) through K (B, 3, 3) -> (B, N, 2)."""
    return perspective_project(points + transl[:, None], K, MIN_DEPTH)


def to_crop(uv: Tensor, box: Tensor) -> Tensor:
    """Pixels (B, N, 2) -> normalised crop coordinates of boxes (B, 3)."""
    return (uv - box[:, None, :2]) / (box[:, None, 2:3] / 2.0)


def project_to_crop(points: Tensor, cam: Tensor, box: Tensor, K: Tensor) -> Tensor:
    """Model-frame points (B, N, 3) seen by the crop camera -> normalised crop coords."""
    return G.project_to_crop(points, _clamp_scale(cam), box, K, MIN_DEPTH)


def keypoint_loss(pred: Tensor, target: Tensor, conf: Tensor) -> Tensor:
    """Confidence-weighted squared 2D error, SPIN's form: mean over batch, joints and x/y.

    pred, target (B, J, 2) normalised crop coords; conf (B, J) in [0, 1].
    """
    return (conf[..., None] * (pred - target) ** 2).mean()


def shape_prior(betas: Tensor) -> Tensor:
    """(B, 10) -> squared norm of the betas, batch mean."""
    return betas.pow(2).sum(-1).mean()


def pose_prior(prior: torch.nn.Module, rotmat: Tensor) -> Tensor:
    """GMM prior on the 23 body joints of rotmat (B, 24, 3, 3), batch mean."""
    b = rotmat.shape[0]
    return prior(matrix_to_axis_angle(rotmat[:, 1:]).reshape(b, 69)).mean()


def motion_loss(uv_now: Tensor, uv_prev: Tensor, kp_now: Tensor, kp_prev: Tensor,
                conf: Tensor, box: Tensor) -> Tensor:
    """BOA's temporal term: the 2D displacement of projected joints between frame t-tau and t
    must match that of the detected keypoints.

    uv_*, kp_* (B, J, 2) image pixels; conf (B, J) (both frames' confidences combined); box
    (B, 3) the current crop, whose half size normalises the displacement.
    """
    scale = box[:, None, 2:3] / 2.0
    diff = ((uv_now - uv_prev) - (kp_now - kp_prev)) / scale
    return (conf[..., None] * diff ** 2).mean()


def consistency_loss(student_points: Tensor, teacher_points: Tensor) -> Tensor:
    """Mean-teacher term: squared distance of root-centred 3D points (B, N, 3), metres."""
    s = student_points - student_points[:, :1]
    t = teacher_points - teacher_points[:, :1]
    return (s - t).pow(2).sum(-1).mean()


# Below this fraction of the crop's size (about 1 px for a 200 px person) the mean flow norm
# stops normalising: a person standing still has almost no flow, and dividing by it would
# turn the estimator's noise into a large loss.
FLOW_NORM_FLOOR = 0.005


def sample_field(field: Tensor, uv: Tensor, box: Tensor) -> Tensor:
    """Bilinear samples of a per-crop field (B, C, R, R) at image pixels uv (B, N, 2) of the
    crop box (B, 3) -> (B, N, C); zero outside the crop. The crop grid's pixel centres sit at
    grid_sample's align_corners=False positions of the normalised crop coordinates."""
    grid = to_crop(uv, box)[:, :, None, :]  # (B, N, 1, 2), x then y
    out = torch.nn.functional.grid_sample(field, grid.to(field.dtype), mode="bilinear",
                                          padding_mode="zeros", align_corners=False)
    return out[..., 0].transpose(1, 2)


def _distance(x: Tensor) -> Tensor:
    """Euclidean norm over the last axis with a gradient of 0 (not NaN) at the origin."""
    sq = x.pow(2).sum(-1)
    return torch.where(sq > 0, sq.clamp(min=1e-20).sqrt(), torch.zeros_like(sq))


def _flow_direction(disp: Tensor, flow: Tensor, visible: Tensor, box: Tensor) -> Tensor:
    """One direction of the flow term, per sample (B,): mean over visible vertices of the
    distance between predicted displacements and sampled flows (B, V, 2), divided by the
    mean flow norm of the visible vertices (floored at FLOW_NORM_FLOOR of the crop size).

    The predicted displacement is clipped (its length, not its direction) at the largest
    flow norm over the visible vertices: a jittering prediction moves vertices by far more
    than the image does (off by 15-30 px per frame where the true motion is about 4 px, for
    our frozen regressor: `hmr-ros bench flow`), and such outliers would otherwise dominate.
    Clipping the displacement rather than the error keeps a gradient on every vertex (a
    clipped error has none).
    """
    norm = _distance(flow)  # (B, V)
    vis = visible.to(disp.dtype)
    count = vis.sum(-1).clamp(min=1.0)
    floor = FLOW_NORM_FLOOR * box[:, 2]
    mean_norm = torch.maximum((norm * vis).sum(-1) / count, floor)
    clip = torch.maximum((norm * vis).amax(-1), floor)
    length = _distance(disp)
    scale = torch.where(length > clip[:, None], clip[:, None] / length.clamp(min=1e-12),
                        torch.ones_like(length))
    err = _distance(disp * scale[..., None] - flow)
    return (err * vis).sum(-1) / count / mean_norm


def flow_loss(uv_a: Tensor, uv_b: Tensor, forward: Tensor, backward: Tensor, box_a: Tensor,
              box_b: Tensor, visible: Tensor, weight: Tensor) -> Tensor:
    """Motion-cues term: the image flow at the projected mesh vertices must equal their
    predicted displacement between consecutive frames a and b, both directions averaged.

    uv_a, uv_b (B, V, 2) projected vertices in image pixels (frames a, b); forward (B, 2, R, R)
    image motion a -> b on crop a's grid (box_a (B, 3)); backward (B, 2, R, R) b -> a on crop
    b's grid (box_b); visible (B, V) bool, the vertices visible in BOTH frames (detached);
    weight (B,) 1 for pairs that have flow, 0 otherwise. The flow is sampled at detached
    positions (it is data; its spatial gradient is noise), so the gradient reaches the bodies
    through their displacement only. Scale-free: divided by the mean flow norm.
    """
    disp = uv_b - uv_a
    f = sample_field(forward, uv_a.detach(), box_a)
    b = sample_field(backward, uv_b.detach(), box_b)
    per = 0.5 * (_flow_direction(disp, f, visible, box_a)
                 + _flow_direction(-disp, b, visible, box_b))
    return (weight * per).sum() / weight.sum().clamp(min=1.0)


def anchor_loss(rotmat: Tensor, betas: Tensor, rotmat0: Tensor, betas0: Tensor) -> Tensor:
    """Source-free anchor: pose and shape stay near the frozen (source) model's estimate of
    the same frames. rotmat, rotmat0 (B, 24, 3, 3); betas, betas0 (B, 10); batch mean of the
    mean squared rotation-matrix difference per joint plus that of the betas."""
    rot = (rotmat - rotmat0).pow(2).sum((-1, -2)).mean(-1)
    return (rot + (betas - betas0).pow(2).mean(-1)).mean()
