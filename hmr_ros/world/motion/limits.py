"""The angle parameters of a motion: names, anatomical limits, the per-joint axis table, and
their conversion to SMPL axis-angle (`params_to_pose`).

Motions are written in *anatomical angle parameters* (`PARAM_NAMES`): hip flexion, knee
flexion, shoulder abduction, spine lateral bend, ... in radians, with the sign chosen so that
the named motion is positive on both body sides.

Each SMPL joint's rotation is a product of rotations about the rest-pose (world-aligned) axes,
one per parameter, in the order listed in `_MIDLINE_AXES` / `_LIMB_AXES`. SMPL's conventions
(+y up, +x towards the body's left, +z forward) make the right side the mirror image of the
left: mirroring through the x = 0 plane keeps rotations about x and negates those about y and
z, so one table of axes and signs serves both sides.
"""

from __future__ import annotations

import math

import numpy as np

from ...body.joints import SMPL_JOINT_NAMES
from ...geometry import axis_quaternion_np, quaternion_multiply_np, quaternion_to_axis_angle_np

_SIDES = ("left", "right")
_SPINE = ("spine1", "spine2", "spine3", "neck", "head")

# Anatomical sign conventions (positive direction of each parameter):
#   root_pitch: pelvis/torso leans forward; root_roll: leans to the body's left;
#   root_twist: pelvis yaws to the body's left relative to the heading.
#   <spine>_flex: bends forward; _lat: bends to the body's left; _rot: turns to the left.
#   hip_flex: thigh forward; hip_abd: thigh outward; hip_rot: internal rotation.
#   knee_flex: shank backward. ankle_flex: dorsiflexion (toes up).
#   collar_elev: shrug up; collar_protract: shoulder girdle forward.
#   shoulder_abd: 0 = arm hanging along the body, pi/2 = T-pose, pi = overhead (sideways);
#   shoulder_flex: swings the (abducted) arm forward about the body's left-right axis;
#   shoulder_rot: external rotation of the upper arm about its own axis.
#   elbow_flex: forearm towards the upper arm. wrist_flex: palm-ward bend.
_LIMITS_ANATOMICAL: dict[str, tuple[float, float]] = {
    "root_pitch": (-0.35, 1.0),
    "root_roll": (-0.2, 0.2),
    "root_twist": (-0.35, 0.35),
    "spine1_flex": (-0.25, 0.45), "spine1_lat": (-0.2, 0.2), "spine1_rot": (-0.3, 0.3),
    "spine2_flex": (-0.25, 0.45), "spine2_lat": (-0.2, 0.2), "spine2_rot": (-0.3, 0.3),
    "spine3_flex": (-0.25, 0.45), "spine3_lat": (-0.2, 0.2), "spine3_rot": (-0.3, 0.3),
    "neck_flex": (-0.4, 0.5), "neck_lat": (-0.3, 0.3), "neck_rot": (-0.6, 0.6),
    "head_flex": (-0.4, 0.4), "head_lat": (-0.25, 0.25), "head_rot": (-0.6, 0.6),
    "hip_flex": (-0.45, 2.2), "hip_abd": (-0.35, 0.7), "hip_rot": (-0.6, 0.6),
    "knee_flex": (0.0, 2.4),  # no hyper-extension
    "ankle_flex": (-0.8, 0.6),
    "collar_elev": (-0.15, 0.35), "collar_protract": (-0.2, 0.3),
    "shoulder_flex": (-0.9, 3.0), "shoulder_abd": (0.0, 2.9), "shoulder_rot": (-1.3, 1.6),
    "elbow_flex": (0.0, 2.5),  # bends one way only
    "wrist_flex": (-0.9, 1.0),
}

# (joint, [(parameter suffix, axis, sign on the LEFT side / midline, offset)]) in composition
# order: R = R_1 @ R_2 @ ..., each R_i = rotation about `axis` by sign * (value + offset).
# The shoulder uses x-z-x (flex, abd, rot) so that flex swings the arm forward in the sagittal
# plane whatever its abduction, and rot twists about the upper arm's own (rest) axis; the -pi/2
# offset makes abd = 0 the arm hanging down, so all-zero parameters are a natural standing pose.
_X, _Y, _Z = 0, 1, 2
_HALF_PI = 0.5 * math.pi
_AxisSpec = tuple[str, int, float, float]
_MIDLINE_AXES: list[_AxisSpec] = [("flex", _X, 1.0, 0.0), ("lat", _Z, -1.0, 0.0),
                                  ("rot", _Y, 1.0, 0.0)]
_LIMB_AXES: dict[str, list[_AxisSpec]] = {
    "hip": [("flex", _X, -1.0, 0.0), ("abd", _Z, 1.0, 0.0), ("rot", _Y, -1.0, 0.0)],
    "knee": [("flex", _X, 1.0, 0.0)],
    "ankle": [("flex", _X, -1.0, 0.0)],
    "collar": [("elev", _Z, 1.0, 0.0), ("protract", _Y, -1.0, 0.0)],
    "shoulder": [("flex", _X, -1.0, 0.0), ("abd", _Z, 1.0, -_HALF_PI), ("rot", _X, -1.0, 0.0)],
    "elbow": [("flex", _Y, -1.0, 0.0)],
    "wrist": [("flex", _Z, -1.0, 0.0)],
}


def _build_tables() -> tuple[tuple[str, ...], dict[str, tuple[float, float]],
                             list[list[tuple[int, int, float, float]]]]:
    names: list[str] = ["root_pitch", "root_roll", "root_twist"]
    limits: dict[str, tuple[float, float]] = {n: _LIMITS_ANATOMICAL[n] for n in names}
    axes: dict[str, list[tuple[str, int, float, float]]] = {}
    for j in _SPINE:
        axes[j] = [(f"{j}_{s}", a, g, o) for s, a, g, o in _MIDLINE_AXES]
    for side in _SIDES:
        mirror = side == "right"
        for part, spec in _LIMB_AXES.items():
            # Mirroring through x = 0 negates rotations about y and z, offsets included (the
            # right arm hangs down by +pi/2 about z where the left one needs -pi/2).
            axes[f"{side}_{part}"] = [
                (f"{side}_{part}_{s}", a, -g if (mirror and a != _X) else g, o)
                for s, a, g, o in spec
            ]
    for j in SMPL_JOINT_NAMES[1:]:
        for pname, *_ in axes.get(j, []):
            names.append(pname)
            key = pname if pname.split("_")[0] in _SPINE else pname.split("_", 1)[1]
            limits[pname] = _LIMITS_ANATOMICAL[key]
    index = {n: i for i, n in enumerate(names)}
    # Per body joint (SMPL order without the pelvis): (param index, axis, sign, offset).
    table = [[(index[p], a, g, o) for p, a, g, o in axes.get(j, [])]
             for j in SMPL_JOINT_NAMES[1:]]
    return tuple(names), limits, table


PARAM_NAMES, JOINT_LIMITS, _BODY_AXES = _build_tables()
"""`PARAM_NAMES`: the P angle parameters of a clip, in column order. `JOINT_LIMITS`: parameter
name -> (low, high) in radians, the same anatomical range on both sides. Joints absent from the
table (feet/toes, hands) stay at SMPL's rest rotation."""
_P = {n: i for i, n in enumerate(PARAM_NAMES)}
_LO = np.array([JOINT_LIMITS[n][0] for n in PARAM_NAMES])
_HI = np.array([JOINT_LIMITS[n][1] for n in PARAM_NAMES])
NUM_PARAMS = len(PARAM_NAMES)


# ---------------------------------------------------------------------------------------------
# Parameters -> SMPL axis-angle (numpy, float64; quaternions are (w, x, y, z))
# ---------------------------------------------------------------------------------------------


def params_to_pose(params: np.ndarray, heading: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert angle parameters and heading to SMPL axis-angle.

    params: (T, P) radians in `PARAM_NAMES` order; heading: (T,) yaw about world +y in radians
    (0 = facing world +z). Returns global_orient (T, 3) and body_pose (T, 23, 3), float64.
    The global orientation is R_y(heading) R_y(twist) R_x(pitch) R_z(-roll), i.e. the heading
    turns the whole body and the pelvis lean is applied in the body frame.
    """
    params = np.asarray(params, dtype=np.float64)
    heading = np.asarray(heading, dtype=np.float64)
    t = params.shape[0]
    g = axis_quaternion_np(_Y, heading + params[:, _P["root_twist"]])
    g = quaternion_multiply_np(g, axis_quaternion_np(_X, params[:, _P["root_pitch"]]))
    g = quaternion_multiply_np(g, axis_quaternion_np(_Z, -params[:, _P["root_roll"]]))
    body = np.zeros((t, 23, 4))
    body[..., 0] = 1.0
    for j, spec in enumerate(_BODY_AXES):
        for i, (pi, axis, sign, offset) in enumerate(spec):
            q = axis_quaternion_np(axis, sign * (params[:, pi] + offset))
            body[:, j] = q if i == 0 else quaternion_multiply_np(body[:, j], q)
    return quaternion_to_axis_angle_np(g), quaternion_to_axis_angle_np(body)
