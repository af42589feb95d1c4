"""Posture of one SMPL body: standing, sitting, crouching, laying or other (hri_msgs/BodyPosture).

`classify_posture` reads the 24 SMPL joints of one body in the CAMERA frame (x right, y down,
z forward, metres; `PersonEstimate.joints`), measures a few angles and heights relative to the
world's "up" direction, and applies the rule below. The codes mirror ROS4HRI's
`hri_msgs/BodyPosture` (OTHER = 0, STANDING = 1, SITTING = 2, CROUCHING = 3, LAYING = 4), so a
node can copy `Posture.code` into the message; nothing here imports ROS.

Up and the floor
----------------
`up` is the world's up direction expressed in the camera frame. Without it the camera is
assumed roughly level (no pitch, no roll): up = -y of the camera. A camera pitched or rolled by
t degrees then turns every measured inclination by up to t, so pass the real `up` (e.g. from TF
or an IMU) when the camera is tilted by more than ~10 deg. `floor_height` is the floor's
coordinate along `up` (the dot product of a floor point with `up`), when the caller knows it;
otherwise the floor is taken at the lowest ankle or foot joint, which puts it a few centimetres
above the real floor (SMPL's foot joints are inside the foot), equally for every posture.

Measured quantities (all in the `Posture`)
------------------------------------------
- torso inclination: angle between pelvis -> neck and up (0 upright, 90 horizontal);
- hip flexion, per side: angle between the thigh (hip -> knee) and the downward torso
  (neck -> pelvis); 0 standing straight, ~90 with the thigh horizontal under an upright torso;
- knee flexion, per side: angle between thigh and shank (knee -> ankle); 0 for a straight leg;
- pelvis height: pelvis over the floor along up;
- trunk offset: horizontal distance (across up) from the ankles' midpoint to the trunk's centre
  (midpoint of pelvis and neck). A body that nothing supports keeps its centre of mass over
  its feet, and the trunk carries about half of that mass, so the offset is small standing or
  squatting and large sitting (the seat carries the pelvis, ~a thigh length behind the feet).
Lengths enter the rule in leg lengths (the mean over both sides of the thigh + shank bone
lengths, which no pose changes), so the thresholds hold for tall and short bodies alike. A
standing SMPL body has its pelvis ~1.18 leg lengths over its lowest foot joint (the pelvis
joint sits ~9 cm above the hip joints).

The rule, first match wins (thresholds in `POSTURE_THRESHOLDS`)
----------------------------------------------------------------
1. Any non-finite joint, `up` or `floor_height`, or a degenerate body (zero-length torso or
   legs, zero `up`) -> OTHER: an estimate gone wrong must not become a posture.
2. LAYING: torso inclination > 55 deg and pelvis height < 0.9 leg lengths. Lying flat puts the
   torso at ~90 deg and the pelvis at about the height of the feet (0.1-0.45 leg lengths over the
   floor; more on a bed when `floor_height` is the room's); 55 deg leaves room for a raised
   head end (a body propped up at 70 deg on straight legs: pelvis <= 0.74). The height keeps a
   person standing bent forward at the hips (torso horizontal, pelvis still ~1.1 leg lengths
   up) out of LAYING.
3. CROUCHING: both knees flexed > 80 deg, pelvis height < 0.9 leg lengths and trunk offset
   < 0.18 leg lengths: legs folded, pelvis dropped, and balanced over the feet. The trunk
   offset is what separates crouching from sitting: on the synthetic bodies (16 clips of
   each) the knee angles (sitting 75-101 deg, squatting 96-121 deg) and pelvis heights (both
   0.60-0.79) of the two overlap, the offsets do not (squatting <= 0.12, sitting >= 0.25;
   0.18 is half way). 80 deg rather than a deeper knee angle because the motion library's
   squats stop at thighs ~70-85 deg from vertical (knees >= 96 deg).
4. SITTING: both hips flexed > 60 deg and both knees flexed > 60 deg (and not crouching):
   thighs far forward of the torso and shins folded down, as on a chair or a bench (the
   synthetic sits: hips 81-108 deg, knees 75-101 deg).
5. STANDING: torso inclination < 35 deg, the straighter knee < 40 deg, the straighter hip
   flexed < 35 deg and pelvis height > 0.95 leg lengths. Only the stance leg has to be
   straight, so walking and turning on the spot (the swing knee bends to ~70 deg) count as
   standing, as they do for BodyPosture; the torso may lean a little (reaching, walking).
   The synthetic idle, walk, turn, reach and wave clips: torso <= 11 deg, straighter knee
   <= 32 deg, straighter hip <= 23 deg, pelvis >= 1.11 leg lengths.
6. OTHER: everything in between (half squats, kneeling, the middle of sitting down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .joints import SMPL_JOINT_NAMES

OTHER, STANDING, SITTING, CROUCHING, LAYING = 0, 1, 2, 3, 4
POSTURE_NAMES: dict[int, str] = {
    OTHER: "other", STANDING: "standing", SITTING: "sitting", CROUCHING: "crouching",
    LAYING: "laying",
}

# Degrees and fractions of the leg length; the module docstring says why each is where it is.
POSTURE_THRESHOLDS: dict[str, float] = {
    "laying_torso_deg": 55.0,
    "laying_max_height": 0.9,
    "crouch_knee_deg": 80.0,
    "crouch_max_height": 0.9,
    "crouch_max_offset": 0.18,
    "sit_hip_deg": 60.0,
    "sit_knee_deg": 60.0,
    "stand_torso_deg": 35.0,
    "stand_knee_deg": 40.0,
    "stand_hip_deg": 35.0,
    "stand_min_height": 0.95,
}

_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
_FLOOR_JOINTS = [_J["left_ankle"], _J["right_ankle"], _J["left_foot"], _J["right_foot"]]
_LEVEL_UP = np.array([0.0, -1.0, 0.0])  # camera frame: y points down
_NAN = float("nan")
_NAN2 = (_NAN, _NAN)


@dataclass(frozen=True)
class Posture:
    """A body's posture and the quantities the rule used (degrees, metres; NaN if unmeasured).

    code: one of OTHER, STANDING, SITTING, CROUCHING, LAYING (hri_msgs/BodyPosture values);
    name: `POSTURE_NAMES[code]`. Per-side values are (left, right).
    """

    code: int
    name: str
    torso_inclination_deg: float = _NAN
    hip_flexion_deg: tuple[float, float] = _NAN2
    knee_flexion_deg: tuple[float, float] = _NAN2
    pelvis_height_m: float = _NAN
    trunk_offset_m: float = _NAN
    leg_length_m: float = _NAN

    @property
    def pelvis_height_ratio(self) -> float:
        """Pelvis height over the floor in leg lengths."""
        return self.pelvis_height_m / self.leg_length_m

    @property
    def trunk_offset_ratio(self) -> float:
        """Trunk centre's horizontal distance from the feet in leg lengths."""
        return self.trunk_offset_m / self.leg_length_m


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two non-zero 3-vectors (3,), degrees in [0, 180]."""
    # Unit vectors first: the dot product of two long vectors could overflow.
    c = np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b))
    return math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))  # NaN stays NaN


def _as_array(x: object, what: str, shape: tuple[int, ...]) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, maybe on a GPU or with a graph
        x = x.detach().cpu().numpy()  # type: ignore[attr-defined]
    a = np.asarray(x, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {a.shape}")
    return a


def classify_posture(joints: object, up: object = None,
                     floor_height: float | None = None) -> Posture:
    """Classify one body's posture from its SMPL joints.

    joints: (24, 3) SMPL joints (`SMPL_JOINT_NAMES` order) in metres in the camera frame, a
        numpy array or a torch tensor; up: (3,) the world's up direction in the camera frame
        (any length; default -y, i.e. a level camera); floor_height: the floor's coordinate
        along the unit `up` in the same frame, or None to use the lowest ankle or foot joint.
    Returns a `Posture`. Raises ValueError only for a wrong shape; bad numbers give OTHER.
    """
    j = _as_array(joints, "joints", (24, 3))
    u = _LEVEL_UP if up is None else _as_array(up, "up", (3,))
    other = Posture(OTHER, POSTURE_NAMES[OTHER])
    if floor_height is not None:
        try:
            floor = float(floor_height)
        except (TypeError, ValueError):
            return other
        if not math.isfinite(floor):
            return other
    if not (np.isfinite(j).all() and np.isfinite(u).all()):
        return other
    # Finite but huge coordinates overflow the norms and products: those give OTHER too, so
    # numpy's warnings about them are expected here and silenced.
    with np.errstate(over="ignore", invalid="ignore"):
        norm_u = float(np.linalg.norm(u))
        if not (math.isfinite(norm_u) and norm_u > 1e-9):
            return other
        u = u / norm_u
        pelvis, neck = j[_J["pelvis"]], j[_J["neck"]]
        torso = neck - pelvis
        hips = (j[_J["left_hip"]], j[_J["right_hip"]])
        knees = (j[_J["left_knee"]], j[_J["right_knee"]])
        ankles = (j[_J["left_ankle"]], j[_J["right_ankle"]])
        thighs = [k - h for h, k in zip(hips, knees)]
        shanks = [a - k for k, a in zip(knees, ankles)]
        lengths = [float(np.linalg.norm(v)) for v in (torso, *thighs, *shanks)]
        if floor_height is None:
            floor = float(np.min(j[_FLOOR_JOINTS] @ u))
        height = float(pelvis @ u) - floor
        trunk = 0.5 * (pelvis + neck) - 0.5 * (ankles[0] + ankles[1])
        offset = float(np.linalg.norm(trunk - (trunk @ u) * u))
        if not all(math.isfinite(n) and n > 1e-6 for n in lengths):
            return other
        leg = 0.5 * sum(lengths[1:])
        torso_deg = _angle_deg(torso, u)
        hip = (_angle_deg(thighs[0], -torso), _angle_deg(thighs[1], -torso))
        knee = (_angle_deg(thighs[0], shanks[0]), _angle_deg(thighs[1], shanks[1]))
        ratios = (height / leg, offset / leg)
    if not all(math.isfinite(v) for v in (torso_deg, *hip, *knee, *ratios)):
        return other
    code = _rule(torso_deg, hip, knee, *ratios)
    return Posture(code, POSTURE_NAMES[code], torso_deg, hip, knee, height, offset, leg)


def _rule(torso: float, hip: tuple[float, float], knee: tuple[float, float], height: float,
          offset: float) -> int:
    """The module docstring's rule on measured angles (deg), pelvis height and trunk offset
    (leg lengths)."""
    t = POSTURE_THRESHOLDS
    if torso > t["laying_torso_deg"] and height < t["laying_max_height"]:
        return LAYING
    if (min(knee) > t["crouch_knee_deg"] and height < t["crouch_max_height"]
            and offset < t["crouch_max_offset"]):
        return CROUCHING
    if min(hip) > t["sit_hip_deg"] and min(knee) > t["sit_knee_deg"]:
        return SITTING
    if (torso < t["stand_torso_deg"] and min(knee) < t["stand_knee_deg"]
            and min(hip) < t["stand_hip_deg"] and height > t["stand_min_height"]):
        return STANDING
    return OTHER
