"""TF frames of an estimated body (plain numpy: REP-155 body frame and joint frames) and
their geometry_msgs/TransformStamped.

REP-155 (human body frames): the body frame origin is the mid-point of the two hip joints; x
points forward out of the front of the body, z up towards the head, y to the person's left
(right-handed). SMPL's own model frame has y up, the body facing +z and the person's left on
+x, so the body frame's axes in SMPL model coordinates are the columns of `SMPL_TO_BODY`:
x_body = z_smpl, y_body = x_smpl, z_body = y_smpl. Posed by the pelvis rotation
(`global_orient`, camera frame), that is the orientation of `body_<id>` in the camera frame.

Joint frames `<joint>_<id>` are children of `body_<id>`: their origin is the SMPL joint and
their axes are the joint's accumulated SMPL rotation with the same axis convention, so in the
rest pose every joint frame is parallel to the body frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..body.joints import SMPL_JOINT_NAMES, SMPL_PARENTS
from ..data.frame import PersonEstimate
from ..geometry import axis_angle_to_matrix, matrix_to_quaternion
from .factory import ConversionError, MessageFactory, make_header, vector3
from .hri import hri_id

#: Columns: the body frame's x (forward), y (left), z (up) in SMPL model coordinates.
SMPL_TO_BODY = np.array([[0.0, 1.0, 0.0],
                         [0.0, 0.0, 1.0],
                         [1.0, 0.0, 0.0]])

LEFT_HIP, RIGHT_HIP = SMPL_JOINT_NAMES.index("left_hip"), SMPL_JOINT_NAMES.index("right_hip")


@dataclass(frozen=True)
class FramePose:
    """One TF frame: `child` relative to `parent`, translation (3,) metres and rotation (3, 3)
    (columns: the child's axes in parent coordinates)."""

    parent: str
    child: str
    translation: np.ndarray
    rotation: np.ndarray

    @property
    def quaternion_xyzw(self) -> np.ndarray:
        """(x, y, z, w), w >= 0, as geometry_msgs/Quaternion wants it."""
        return quaternions_xyzw(self.rotation[None])[0]

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous transform parent <- child."""
        out = np.eye(4)
        out[:3, :3] = self.rotation
        out[:3, 3] = self.translation
        return out


def quaternions_xyzw(rotations: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations -> (N, 4) unit quaternions (x, y, z, w) with w >= 0, in one batch."""
    r = torch.as_tensor(np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3))
    q = matrix_to_quaternion(r).numpy()
    return np.concatenate([q[:, 1:], q[:, :1]], axis=1)


def global_rotations(full_pose: np.ndarray) -> np.ndarray:
    """(24, 3) SMPL axis-angle (root first, parent-relative) -> (24, 3, 3) accumulated
    rotations in the frame of the root's parent (the camera frame for SMPL estimates)."""
    pose = np.asarray(full_pose, dtype=np.float64).reshape(24, 3)
    local = axis_angle_to_matrix(torch.from_numpy(pose)).numpy()
    out = np.empty_like(local)
    for k, parent in enumerate(SMPL_PARENTS):
        out[k] = local[k] if parent < 0 else out[parent] @ local[k]
    return out


def _orthonormal(r: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(r)
    m = u @ vt
    if np.linalg.det(m) < 0:
        u[:, -1] = -u[:, -1]
        m = u @ vt
    return m


def _rotations(pose: np.ndarray) -> np.ndarray:
    """(24, 3, 3) accumulated rotations as given, or from (24, 3) axis-angle."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape == (24, 3, 3):
        return pose
    return global_rotations(pose)


def body_frame(pose: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and rotation (3, 3) of the REP-155 body frame in the camera frame. `pose`:
    (24, 3, 3) accumulated joint rotations (`PersonEstimate.rotations`) or (24, 3)
    parent-relative axis-angle."""
    joints = np.asarray(joints, dtype=np.float64).reshape(24, 3)
    if not np.all(np.isfinite(joints)):
        raise ValueError("joints are not finite")
    origin = 0.5 * (joints[LEFT_HIP] + joints[RIGHT_HIP])
    rot = _orthonormal(_rotations(pose)[0] @ SMPL_TO_BODY)
    return origin, rot


def body_frames(pose: np.ndarray, joints: np.ndarray, body_id: int | str, camera_frame: str,
                prefix: str = "", with_joints: bool = True) -> list[FramePose]:
    """`body_<id>` under `camera_frame`, then `<joint>_<id>` under `body_<id>` for the 24 SMPL
    joints (in SMPL order). `pose` as in `body_frame`; `prefix` is prepended to every child
    frame name."""
    if not camera_frame:
        raise ValueError("camera_frame must not be empty")
    joints = np.asarray(joints, dtype=np.float64).reshape(24, 3)
    g = _rotations(pose)
    if not np.all(np.isfinite(g)):
        raise ValueError("joint rotations are not finite")
    origin, rot = body_frame(g, joints)
    body = f"{prefix}body_{body_id}"
    out = [FramePose(camera_frame, body, origin, rot)]
    if not with_joints:
        return out
    inv = rot.T
    for k, name in enumerate(SMPL_JOINT_NAMES):
        out.append(FramePose(body, f"{prefix}{name}_{body_id}", inv @ (joints[k] - origin),
                             _orthonormal(inv @ g[k] @ SMPL_TO_BODY)))
    return out


# ------------------------------------------------------------------------ messages


def _quaternion(factory: MessageFactory, q_xyzw: np.ndarray) -> Any:
    return factory.new("geometry_msgs/msg/Quaternion", x=float(q_xyzw[0]), y=float(q_xyzw[1]),
                       z=float(q_xyzw[2]), w=float(q_xyzw[3]))


def frame_poses(people: Sequence[PersonEstimate], camera_frame: str, prefix: str = "",
                with_joints: bool = True, names: Callable[[int], str] = hri_id
                ) -> list[FramePose]:
    """REP-155 `body_<id>` frames (mid-hip, x forward, z up) under `camera_frame` and, with
    `with_joints`, the 24 joint frames `<joint>_<id>` under each body; `<id>` is the body's
    REP-155 id, `names(track)` (default `b<track>`, as on /humans/bodies/tracked)."""
    out = []
    for p in people:
        try:
            pose = p.rotations if p.rotations is not None else p.params.full_pose()
            out += body_frames(pose, p.joints, names(p.id), camera_frame, prefix, with_joints)
        except ValueError as err:
            raise ConversionError(f"body {p.id}: {err}") from None
    return out


def transforms_to_msgs(factory: MessageFactory, people: Sequence[PersonEstimate],
                       stamp_ns: int, camera_frame: str, prefix: str = "",
                       with_joints: bool = True, names: Callable[[int], str] = hri_id
                       ) -> list[Any]:
    """geometry_msgs/TransformStamped for every frame of `frame_poses`, all stamped `stamp_ns`
    (one list, meant for ONE sendTransform call)."""
    poses = frame_poses(people, camera_frame, prefix, with_joints, names)
    if not poses:
        return []
    quats = quaternions_xyzw(np.stack([f.rotation for f in poses]))
    out = []
    for f, q in zip(poses, quats):
        out.append(factory.new(
            "geometry_msgs/msg/TransformStamped",
            header=make_header(factory, stamp_ns, f.parent), child_frame_id=f.child,
            transform=factory.new("geometry_msgs/msg/Transform",
                                  translation=vector3(factory, f.translation),
                                  rotation=_quaternion(factory, q))))
    return out


