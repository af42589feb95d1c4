"""Rotations, cameras and alignment: batch, differentiable, torch (plus float64 numpy
quaternion helpers for code that must reproduce its output bit for bit).

Conventions used across the package:
- Camera frame: x right, y down, z forward (ROS optical frame), metres.
- Rotation matrices act on column vectors: p' = R @ p.
- 6D rotations follow SPIN's interleaved layout (see `rot6d_to_matrix`).

One module per concept: `rotations.py` (6D, axis-angle, quaternions, matrices),
`quaternions_np.py` (the numpy quaternions of the synthetic motions), `cameras.py` (crop
camera <-> translation, the pinhole projection, crop coordinates), `alignment.py`
(similarity transform, Procrustes). Import the names from here.
"""

from .alignment import procrustes_align, similarity_transform
from .cameras import (
    crop_cam_to_translation,
    crop_to_image,
    image_to_crop,
    perspective_project,
    project_to_crop,
    translation_to_crop_cam,
    weak_perspective_project,
)
from .quaternions_np import axis_quaternion_np, quaternion_multiply_np, quaternion_to_axis_angle_np
from .rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rot6d_to_matrix,
)

__all__ = [
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "axis_quaternion_np",
    "crop_cam_to_translation",
    "crop_to_image",
    "image_to_crop",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rot6d",
    "perspective_project",
    "procrustes_align",
    "project_to_crop",
    "quaternion_multiply_np",
    "quaternion_to_axis_angle",
    "quaternion_to_axis_angle_np",
    "quaternion_to_matrix",
    "rot6d_to_matrix",
    "similarity_transform",
    "translation_to_crop_cam",
    "weak_perspective_project",
]
