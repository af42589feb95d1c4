"""Losses for online adaptation (BOA's L_F and L_T) and for pretraining's 2D term.

Projection uses the real intrinsics: the crop camera [s, tx, ty] becomes a camera-frame
translation for the crop's box (`geometry.crop_cam_to_translation`) and the body's points go
through K, then into normalised crop coordinates ([-1, 1] across the box). 2D keypoints are
compared there, so errors are relative to the person's size in the image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry import crop_cam_to_translation, matrix_to_axis_angle

# Below this crop-camera scale the depth 2 f / (size s) explodes; early or diverging
# predictions are clamped here for projection (the guard catches real divergence).
MIN_CAM_SCALE = 0.05
MIN_DEPTH = 0.1  # m


def camera_translation(cam: Tensor, box: Tensor, K: Tensor) -> Tensor:
    """(B, 3) crop cameras, (B, 3) boxes, (B, 3, 3) or (3, 3) K -> (B, 3) translations."""
    cam = torch.cat([cam[:, :1].clamp(min=MIN_CAM_SCALE), cam[:, 1:]], dim=1)
    return crop_cam_to_translation(cam, box, K)


def project_pixels(points: Tensor, transl: Tensor, K: Tensor) -> Tensor:
    """Model-frame points (B, N, 3) + translation (B, 3) through K (B, 3, 3) -> (B, N, 2)."""
    p = points + transl[:, None]
    z = p[..., 2].clamp(min=MIN_DEPTH)
    K = K.expand(points.shape[0], 3, 3) if K.dim() == 2 else K
    u = K[:, None, 0, 0] * p[..., 0] / z + K[:, None, 0, 1] * p[..., 1] / z + K[:, None, 0, 2]
    v = K[:, None, 1, 1] * p[..., 1] / z + K[:, None, 1, 2]
    return torch.stack([u, v], dim=-1)


def to_crop(uv: Tensor, box: Tensor) -> Tensor:
    """Pixels (B, N, 2) -> normalised crop coordinates of boxes (B, 3)."""
    return (uv - box[:, None, :2]) / (box[:, None, 2:3] / 2.0)


def project_to_crop(points: Tensor, cam: Tensor, box: Tensor, K: Tensor) -> Tensor:
    """Model-frame points (B, N, 3) seen by the crop camera -> normalised crop coords."""
    return to_crop(project_pixels(points, camera_translation(cam, box, K), K), box)


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
