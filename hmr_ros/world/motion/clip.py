"""Procedural, deterministic library of smooth, plausible SMPL motions with root trajectories.

A clip is a sequence of action segments (walk, turn, reach, wave, squat, sit, idle), each 2-5 s
long, cross-faded into one another. Everything random comes from one
`numpy.random.Generator(seed)`, so a seed fully determines a clip.

How a pose is made
------------------
Motions are written in *anatomical angle parameters* (`PARAM_NAMES`): hip flexion, knee
flexion, shoulder abduction, spine lateral bend, ... in radians, with the sign chosen so that
the named motion is positive on both body sides. Each segment is an analytic function of time
(and of the clip-wide gait phase) that returns these parameters. Segments are blended in
parameter space with C2 weights (`_smootherstep`), clipped to `JOINT_LIMITS`, and only then
converted to SMPL axis-angle (`params_to_pose`). Blending angles rather than rotation vectors
keeps every joint within its anatomical range and gives no pose or velocity jumps.

Each SMPL joint's rotation is a product of rotations about the rest-pose (world-aligned) axes,
one per parameter, in the order listed in `_JOINT_AXES`. SMPL's conventions (+y up, +x towards
the body's left, +z forward) make the right side the mirror image of the left: mirroring
through the x = 0 plane keeps rotations about x and negates those about y and z, so one table
of axes and signs serves both sides.

The root
--------
Segments also return a forward speed (m/s), a yaw rate (rad/s) and a small pelvis offset in the
body frame (weight shift sway, the pelvis moving back over planted feet when squatting or
sitting). The blended speed and yaw rate are integrated into the heading and the pelvis ground
position `root_xz`. The pelvis *height* is not part of a clip: the renderer puts the lowest
foot point on the ground, so the height follows from the legs.

Gait
----
Walking and turning share one gait phase per clip, integrated from the blended stride
frequency. A walk that fades into a turn therefore keeps its step rhythm instead of averaging
two unrelated gait cycles (which would straighten both legs half way through the fade).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ...body.joints import SMPL_JOINT_NAMES

__all__ = [
    "ACTIONS",
    "JOINT_LIMITS",
    "NUM_PARAMS",
    "PARAM_NAMES",
    "MotionClip",
    "clip_seed",
    "generate_library",
    "generate_motion",
    "params_to_pose",
]

ACTIONS: tuple[str, ...] = ("walk", "turn", "reach", "wave", "squat", "sit", "idle")

# ---------------------------------------------------------------------------------------------
# Parameters, limits and the joint table
# ---------------------------------------------------------------------------------------------

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
# Rotations (numpy, float64; quaternions are (w, x, y, z))
# ---------------------------------------------------------------------------------------------


def _quat_axis(axis: int, angle: np.ndarray) -> np.ndarray:
    q = np.zeros(angle.shape + (4,))
    q[..., 0] = np.cos(0.5 * angle)
    q[..., 1 + axis] = np.sin(0.5 * angle)
    return q


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack((aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw), axis=-1)


def _quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    # w >= 0 picks the rotation vector with angle <= pi.
    q = np.where(q[..., :1] < 0.0, -q, q)
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(s, q[..., 0])
    # Near zero angle/s -> 2/w; the guard only avoids 0/0, the series is exact to float64 there.
    scale = np.where(s > 1e-12, angle / np.maximum(s, 1e-300), 2.0 / q[..., 0])
    return v * scale[..., None]


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
    g = _quat_axis(_Y, heading + params[:, _P["root_twist"]])
    g = _quat_mul(g, _quat_axis(_X, params[:, _P["root_pitch"]]))
    g = _quat_mul(g, _quat_axis(_Z, -params[:, _P["root_roll"]]))
    body = np.zeros((t, 23, 4))
    body[..., 0] = 1.0
    for j, spec in enumerate(_BODY_AXES):
        for i, (pi, axis, sign, offset) in enumerate(spec):
            q = _quat_axis(axis, sign * (params[:, pi] + offset))
            body[:, j] = q if i == 0 else _quat_mul(body[:, j], q)
    return _quat_to_rotvec(g), _quat_to_rotvec(body)


# ---------------------------------------------------------------------------------------------
# The clip
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionClip:
    """A motion: SMPL pose and pelvis ground track per frame.

    name: identifier; fps: frames per second.
    body_pose: (T, 23, 3) float32 axis-angle of SMPL joints 1..23 (parent-relative).
    global_orient: (T, 3) float32 axis-angle of the pelvis in a y-up world frame: heading yaw
        about +y (0 = facing world +z) times a small pelvis lean.
    root_xz: (T, 2) float32 pelvis ground position (world x, z) in metres; the height is left
        to the renderer (lowest foot point on the ground).
    action: (T,) str label of the segment that dominates each frame (one of `ACTIONS`).
    heading: (T,) float32 heading yaw in radians (unwrapped), or None if not known.
    params: (T, P) float32 angle parameters (`PARAM_NAMES`, radians) the pose was made from,
        or None if not known.
    """

    name: str
    fps: float
    body_pose: np.ndarray
    global_orient: np.ndarray
    root_xz: np.ndarray
    action: np.ndarray
    heading: np.ndarray | None = None
    params: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.body_pose.shape[0])

    def slice(self, start: int, stop: int) -> MotionClip:
        """Frames [start, stop) as a new clip (arrays are copies)."""
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop].copy()

        return replace(self, body_pose=cut(self.body_pose), global_orient=cut(self.global_orient),
                       root_xz=cut(self.root_xz), action=cut(self.action),
                       heading=cut(self.heading), params=cut(self.params))

    def full_pose(self) -> np.ndarray:
        """SMPL's 24 axis-angle rotations per frame, (T, 24, 3): global_orient then body_pose."""
        return np.concatenate([self.global_orient[:, None], self.body_pose], axis=1)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

_TWO_PI = 2.0 * math.pi
_THIGH, _SHANK, _PELVIS_TO_HIP = 0.41, 0.40, 0.09  # metres, the bundled model's mean proportions


def _smootherstep(u: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero first and second derivative at both ends; max slope 1.875."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def _soft_clip(x: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float,
               margin: float = 0.05) -> np.ndarray:
    """Clip to [lo, hi] with C1 saturation over the last `margin` rad on each side.

    A hard clip would put a kink (a velocity jump) into any trajectory that touches a limit;
    this one is the identity inside [lo + m, hi - m] and approaches the limit exponentially
    with matching slope, so the result stays strictly inside and as smooth as the input.
    """
    x = np.asarray(x, dtype=np.float64)
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), x.shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), x.shape)
    m = np.minimum(margin, 0.25 * (hi - lo))
    top, bottom = hi - m, lo + m
    # Exponents are clamped at 0 so the branch np.where discards cannot overflow.
    upper = hi - m * np.exp(-np.maximum(x - top, 0.0) / m)
    lower = lo + m * np.exp(np.minimum(x - bottom, 0.0) / m)
    return np.where(x > top, upper, np.where(x < bottom, lower, x))


def _ramp(t: np.ndarray, t0: float, dur: float) -> np.ndarray:
    return _smootherstep((t - t0) / max(dur, 1e-6))


def _bell(t: np.ndarray, t0: float, dur: float) -> np.ndarray:
    """sin^2 pulse: 0 outside [t0, t0 + dur], 1 in the middle, C1 everywhere."""
    u = np.clip((t - t0) / max(dur, 1e-6), 0.0, 1.0)
    return np.sin(math.pi * u) ** 2


def _vm(phase: np.ndarray, centre: float, kappa: float) -> np.ndarray:
    """Periodic bump (von Mises shape) of height 1 at `centre` (fraction of a cycle)."""
    return np.exp(kappa * (np.cos(phase - _TWO_PI * centre) - 1.0))


class _Noise:
    """A few random sinusoids per channel: smooth, bounded by 1, deterministic in t."""

    def __init__(self, rng: np.random.Generator, channels: int, f_lo: float = 0.1,
                 f_hi: float = 0.5, k: int = 3) -> None:
        self.f = rng.uniform(f_lo, f_hi, (k, channels))
        self.ph = rng.uniform(0.0, _TWO_PI, (k, channels))
        a = rng.uniform(0.5, 1.0, (k, channels))
        self.a = a / a.sum(axis=0)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        s = np.sin(_TWO_PI * self.f * t[:, None, None] + self.ph)
        return (self.a * s).sum(axis=1)  # (T, channels)


@dataclass(frozen=True)
class _Style:
    """Per-person habits that persist across a clip's segments."""

    arm_abd: float
    arm_flex: float
    arm_rot: float
    elbow: float
    wrist: float
    slouch: float
    head_flex: float
    stance: float
    toe_out: float
    knee: float
    tempo: float
    amp: float
    arm_swing: float
    speed: float
    cadence: float


def _draw_style(rng: np.random.Generator) -> _Style:
    return _Style(
        arm_abd=rng.uniform(0.08, 0.22), arm_flex=rng.uniform(-0.05, 0.1),
        arm_rot=rng.uniform(-0.1, 0.3), elbow=rng.uniform(0.08, 0.3),
        wrist=rng.uniform(0.0, 0.2), slouch=rng.uniform(-0.05, 0.12),
        head_flex=rng.uniform(-0.1, 0.15), stance=rng.uniform(0.0, 0.08),
        toe_out=rng.uniform(0.0, 0.25), knee=rng.uniform(0.0, 0.08),
        tempo=rng.uniform(0.85, 1.15), amp=rng.uniform(0.8, 1.2),
        arm_swing=rng.uniform(0.6, 1.3), speed=rng.uniform(0.9, 1.1),
        cadence=rng.uniform(0.94, 1.06),
    )


def _neutral(style: _Style, n: int) -> np.ndarray:
    """Relaxed standing with this person's habits, (n, P)."""
    p = np.zeros(NUM_PARAMS)
    for j, w in (("spine1", 0.4), ("spine2", 0.3), ("spine3", 0.3)):
        p[_P[f"{j}_flex"]] = w * style.slouch
    p[_P["neck_flex"]] = 0.5 * style.head_flex
    p[_P["head_flex"]] = 0.5 * style.head_flex
    for s in _SIDES:
        p[_P[f"{s}_hip_abd"]] = style.stance
        p[_P[f"{s}_hip_rot"]] = -style.toe_out
        p[_P[f"{s}_knee_flex"]] = style.knee
        p[_P[f"{s}_hip_flex"]] = 0.5 * style.knee  # soft knees: keep the shank upright
        p[_P[f"{s}_ankle_flex"]] = 0.5 * style.knee
        p[_P[f"{s}_shoulder_abd"]] = style.arm_abd
        p[_P[f"{s}_shoulder_flex"]] = style.arm_flex
        p[_P[f"{s}_shoulder_rot"]] = style.arm_rot
        p[_P[f"{s}_elbow_flex"]] = style.elbow
        p[_P[f"{s}_wrist_flex"]] = style.wrist
    return np.tile(p, (n, 1))


def _col(p: np.ndarray, name: str) -> np.ndarray:
    return p[:, _P[name]]


def _add(p: np.ndarray, name: str, value: np.ndarray | float) -> None:
    p[:, _P[name]] += value


def _lean_pelvis(p: np.ndarray, pitch: np.ndarray | float) -> None:
    """Lean the pelvis forward by `pitch` while the thighs keep their world direction."""
    _add(p, "root_pitch", pitch)
    for s in _SIDES:
        _add(p, f"{s}_hip_flex", pitch)


def _spread(p: np.ndarray, kind: str, value: np.ndarray | float,
            joints: Sequence[str] = ("spine1", "spine2", "spine3")) -> None:
    """Share a trunk bend over several joints, as a real spine bends along its length."""
    for j in joints:
        _add(p, f"{j}_{kind}", np.asarray(value) / len(joints))


def _blend_towards(p: np.ndarray, target: dict[str, float], e: np.ndarray) -> None:
    """Move parameters towards target values by the envelope e (0 = unchanged, 1 = target)."""
    for name, v in target.items():
        i = _P[name]
        p[:, i] += e * (v - p[:, i])


def _feet_forward(p: np.ndarray) -> np.ndarray:
    """Forward offset (body frame, m) of the mean ankle from the pelvis, sagittal-plane estimate.

    Used so that squats and sits move the pelvis back over planted feet instead of sliding the
    feet forward (rotations about x of pelvis, thigh and shank add up along the chain).
    """
    pitch = _col(p, "root_pitch")
    out = -_PELVIS_TO_HIP * np.sin(pitch)
    for s in _SIDES:
        thigh = pitch - _col(p, f"{s}_hip_flex")
        shank = thigh + _col(p, f"{s}_knee_flex")
        out = out + 0.5 * (-_THIGH * np.sin(thigh) - _SHANK * np.sin(shank))
    return out


# A segment's outputs at local times t (s) and clip gait phases (rad).
_Channels = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Segment:
    """One action: analytic in time, so it can be evaluated a little before and after itself
    (the cross-fades need both neighbours on the same frames).

    freq(t) -> (T,) stride frequency in Hz (cycles of the full two-step gait);
    evaluate(t, phase) -> params (T, P), speed (T,) m/s, yaw_rate (T,) rad/s,
    offset (T, 2) pelvis offset in the body frame (left, forward) in metres.
    """

    action: str
    duration: float
    freq: Callable[[np.ndarray], np.ndarray]
    evaluate: Callable[[np.ndarray, np.ndarray], _Channels]


def _const(value: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: np.full(t.shape, value)


@dataclass(frozen=True)
class _Gait:
    reach: float  # m, the ankle travels from +reach to -reach (fore-aft, from the hip) in stance
    lift: float  # rad, extra thigh lift in swing (stepping on the spot lifts the knees)
    knee_stance: float  # loading-response knee flexion peak
    knee_swing: float  # swing knee flexion peak
    push: float  # plantarflexion at push-off
    arm_swing: float  # rad, shoulder flex amplitude
    twist: float  # pelvis yaw amplitude
    roll: float  # pelvic obliquity amplitude
    lean: float  # forward trunk lean


_STANCE = 0.6  # fraction of the gait cycle a foot is on the ground


def _foot_track(u: np.ndarray, reach: float) -> np.ndarray:
    """Fore-aft ankle position relative to the hip over one cycle (u in [0, 1), 0 = heel strike).

    Stance: straight back at constant speed, so the planted foot does not slide while the
    pelvis moves on uniformly. Swing: a cubic Hermite forward whose end velocities match the
    stance velocity, so the track is C1 (it overshoots a little and sets the foot down while
    moving back, as feet do in terminal swing).
    """
    v = -2.0 * reach / _STANCE
    s = np.clip((u - _STANCE) / (1.0 - _STANCE), 0.0, 1.0)
    m = v * (1.0 - _STANCE)
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    swing = -reach * h00 + m * h10 + reach * h01 + m * h11
    return np.where(u < _STANCE, reach + v * u, swing)


def _apply_gait(p: np.ndarray, phase: np.ndarray, g: _Gait) -> None:
    """Add a gait cycle at `phase` (rad, 0 = left heel strike) to the parameters in place.

    The knee follows the usual sagittal curve (a small flexion at loading, a large one in
    swing); the thigh angle is then solved so that the ankle follows `_foot_track`, and the
    ankle keeps the foot flat through mid-stance, plantarflexes at push-off (~60 % of the cycle)
    and stays near neutral in swing. The arms swing opposite to the legs and the thorax
    counter-rotates against the pelvis.
    """
    for s, off in (("left", 0.0), ("right", math.pi)):
        c = phase + off
        u = np.mod(c / _TWO_PI, 1.0)
        # The swing bump is wide (kappa 3): knees at walking speed turn at ~6 rad/s, and a
        # narrower bump would exceed that.
        knee = 0.05 + g.knee_stance * _vm(c, 0.13, 10.0) + g.knee_swing * _vm(c, 0.72, 3.0)
        # Hip-to-ankle fore-aft distance for thigh angle a (forward from vertical) and knee k is
        # Lt sin a + Ls sin(a - k) = r sin(a - d): invert for a.
        r = np.hypot(_THIGH + _SHANK * np.cos(knee), _SHANK * np.sin(knee))
        d = np.arctan2(_SHANK * np.sin(knee), _THIGH + _SHANK * np.cos(knee))
        z = _foot_track(u, g.reach)
        thigh = d + np.arcsin(np.clip(z / r, -0.95, 0.95)) + g.lift * _vm(c, 0.75, 3.0)
        # Flat foot needs dorsiflexion = forward tilt of the shank (knee - thigh). The foot
        # lands heel first near neutral, flattens over the loading response (u 0-0.18), rises
        # on the toes in late stance and swings near neutral. `w` wraps at u = 0.25, inside
        # the flat part, so the periodic weight is smooth.
        w = np.mod(u - 0.25, 1.0)
        flat = 1.0 - _smootherstep((w - 0.13) / 0.17) + _smootherstep((w - 0.75) / 0.18)
        ankle = flat * (knee - thigh) + (1.0 - flat) * 0.03 - g.push * _vm(c, 0.6, 6.0)
        _add(p, f"{s}_hip_flex", thigh)
        _add(p, f"{s}_knee_flex", knee)
        _add(p, f"{s}_ankle_flex", ankle)
        # Slight adduction in stance (the pelvis sits over the stance foot).
        _add(p, f"{s}_hip_abd", -0.04 * _vm(c, 0.3, 2.0))
        # The arm follows the opposite leg, with a small lag.
        c_opp = c + math.pi
        _add(p, f"{s}_shoulder_flex", g.arm_swing * np.cos(c_opp - _TWO_PI * 0.97))
        # Walkers carry their elbows bent (20-45 deg), more so as the arm swings forward.
        _add(p, f"{s}_elbow_flex", 0.3 + 0.6 * g.arm_swing
             * (1.0 + np.cos(c_opp - _TWO_PI * 0.97)))
    # Left hip forward at left heel strike: pelvis yawed to the right, thorax to the left.
    _add(p, "root_twist", -g.twist * np.cos(phase))
    _spread(p, "rot", 1.6 * g.twist * np.cos(phase))
    # The pelvis drops on the swing side: right swing (left stance) around phase 0.3.
    _add(p, "root_roll", -g.roll * np.sin(2.0 * phase - _TWO_PI * 0.1))
    _lean_pelvis(p, g.lean)
    _add(p, "root_pitch", 0.02 * np.cos(2.0 * phase))


def _walk_gait(style: _Style, speed: float, amp: float) -> tuple[float, _Gait]:
    """Stride frequency (Hz) and gait curves for a walking speed (m/s)."""
    freq = float(np.clip(style.cadence * (0.55 + 0.33 * speed), 0.75, 0.97))
    stride = speed / freq
    u = (speed - 0.8) / 0.6
    gait = _Gait(
        # The body travels _STANCE * stride over a planted foot; the ankle covers about 3/4 of
        # it, the roll from heel to toe and the pelvis rotation the rest.
        reach=0.75 * 0.5 * _STANCE * stride, lift=0.0, knee_stance=0.2 + 0.1 * u,
        knee_swing=float(np.clip(0.85 + 0.12 * u, 0.7, 1.0)), push=0.35,
        arm_swing=float(np.clip(0.22 * style.arm_swing * amp * (0.8 + 0.4 * u), 0.08, 0.45)),
        twist=0.06 * amp, roll=0.05 * amp, lean=0.04 + 0.04 * u,
    )
    return freq, gait


# ---------------------------------------------------------------------------------------------
# Actions. Each builder: (rng, style, duration, side, is_last) -> _Segment. Random draws all
# happen at build time; the returned closures are pure functions of time.
# ---------------------------------------------------------------------------------------------


def _idle_layer(rng: np.random.Generator, style: _Style) -> Callable[[np.ndarray], np.ndarray]:
    """Small head, trunk and arm motions every non-locomotion action carries underneath."""
    noise = _Noise(rng, 8, 0.08, 0.4)
    head_amp = rng.uniform(0.1, 0.3) * style.amp
    breath = rng.uniform(0.2, 0.3)

    def layer(t: np.ndarray) -> np.ndarray:
        p = _neutral(style, t.shape[0])
        n = noise(t)
        _add(p, "neck_rot", 0.5 * head_amp * n[:, 0])
        _add(p, "head_rot", 0.5 * head_amp * n[:, 0])
        _add(p, "head_flex", 0.08 * n[:, 1])
        _add(p, "head_lat", 0.05 * n[:, 2])
        _spread(p, "flex", 0.015 * np.sin(_TWO_PI * breath * t) + 0.03 * n[:, 3])
        _spread(p, "rot", 0.05 * n[:, 4])
        for k, s in enumerate(_SIDES):
            _add(p, f"{s}_shoulder_flex", 0.04 * n[:, 5 + k])
            _add(p, f"{s}_elbow_flex", 0.05 * (1.0 + n[:, 5 + k]))
        return p

    return layer


def _build_idle(rng: np.random.Generator, style: _Style, dur: float, side: str,
                is_last: bool) -> _Segment:
    layer = _idle_layer(rng, style)
    period = rng.uniform(3.0, 8.0) / style.tempo
    ph = rng.uniform(0.0, _TWO_PI)
    shift = rng.uniform(0.02, 0.06) * style.amp  # pelvis roll of the weight shift
    sway = rng.uniform(0.015, 0.04) * style.amp  # lateral pelvis travel
    relax = rng.uniform(0.08, 0.2)  # free-leg knee bend

    def evaluate(t: np.ndarray, phase: np.ndarray) -> _Channels:
        p = layer(t)
        w = np.sin(_TWO_PI * t / period + ph)  # > 0: weight on the left leg
        # Weight on the left: the right side of the pelvis drops (roll to the right), the trunk
        # leans back over the stance leg, the hips adduct/abduct so both feet stay put.
        roll = -shift * w
        _add(p, "root_roll", roll)
        _spread(p, "lat", -0.8 * roll)
        # The pelvis also slides over the stance foot (`offset` below); tilting both legs by
        # the same amount keeps the feet where they are.
        tilt = sway * w / (_THIGH + _SHANK)
        _add(p, "left_hip_abd", roll - tilt)
        _add(p, "right_hip_abd", -roll + tilt)
        # The unloaded leg relaxes its knee; squares of the load share hand over smoothly
        # (a max(0, .) switch would jerk the knee when the weight passes the middle).
        load_left = 0.5 * (1.0 + w)
        for s, free in (("left", (1.0 - load_left) ** 2), ("right", load_left**2)):
            _add(p, f"{s}_knee_flex", relax * free)
            _add(p, f"{s}_hip_flex", 0.5 * relax * free)
            _add(p, f"{s}_ankle_flex", 0.5 * relax * free)
        offset = np.stack([sway * w, np.zeros_like(w)], axis=1)
        z = np.zeros_like(t)
        return p, z, z, offset

    return _Segment("idle", dur, _const(0.9 * style.cadence), evaluate)


def _build_walk(rng: np.random.Generator, style: _Style, dur: float, side: str,
                is_last: bool) -> _Segment:
    speed = float(np.clip(rng.uniform(0.8, 1.4) * style.speed, 0.8, 1.4))
    freq, gait = _walk_gait(style, speed, style.amp * rng.uniform(0.9, 1.1))
    curve = rng.uniform(-0.15, 0.15)  # rad/s: paths are gently curved, not ruler-straight
    noise = _Noise(rng, 3, 0.1, 0.4)
    look = rng.uniform(0.05, 0.2)

    def evaluate(t: np.ndarray, phase: np.ndarray) -> _Channels:
        p = _neutral(style, t.shape[0])
        _apply_gait(p, phase, gait)
        n = noise(t)
        _add(p, "neck_rot", look * n[:, 0])
        _add(p, "head_flex", 0.05 * n[:, 1])
        speed_t = speed * (1.0 + 0.04 * n[:, 2])
        yaw = curve + 0.05 * n[:, 0]
        return p, speed_t, yaw, np.zeros((t.shape[0], 2))

    return _Segment("walk", dur, _const(freq), evaluate)


def _build_turn(rng: np.random.Generator, style: _Style, dur: float, side: str,
                is_last: bool) -> _Segment:
    stepping = rng.random() < 0.5  # turn on the spot, or a walking turn
    if stepping:
        speed = rng.uniform(0.0, 0.15)
        freq = float(np.clip(rng.uniform(0.8, 0.95) * style.cadence, 0.75, 0.97))
        gait = _Gait(reach=0.225 * speed / freq, lift=rng.uniform(0.25, 0.45),
                     knee_stance=0.1, knee_swing=rng.uniform(0.55, 0.85), push=0.2,
                     arm_swing=0.06, twist=0.03, roll=0.03, lean=0.05)
    else:
        speed = rng.uniform(0.5, 1.0)
        freq, gait = _walk_gait(style, speed, 0.7 * style.amp)
    sign = 1.0 if side == "left" else -1.0  # positive yaw turns towards the body's left
    t0 = rng.uniform(0.0, 0.3)
    span = max(dur - t0 - rng.uniform(0.0, 0.3), 1.2)
    angle = sign * min(rng.uniform(0.6, math.pi), 1.25 * span)
    anticipate = rng.uniform(0.2, 0.4)  # the head leads the turn
    # Guarded posture while turning: softer knees, arms a little out with bent elbows.
    soft = rng.uniform(0.12, 0.25)
    elbow = rng.uniform(0.2, 0.45)
    abd = rng.uniform(0.1, 0.25)

    def rate(t: np.ndarray) -> np.ndarray:
        u = np.clip((t - t0) / span, 0.0, 1.0)
        return angle / span * (1.0 - np.cos(_TWO_PI * u))

    def evaluate(t: np.ndarray, phase: np.ndarray) -> _Channels:
        p = _neutral(style, t.shape[0])
        _apply_gait(p, phase, gait)
        for s in _SIDES:
            _add(p, f"{s}_knee_flex", soft)
            _add(p, f"{s}_hip_flex", 0.5 * soft)
            _add(p, f"{s}_ankle_flex", 0.5 * soft)
            _add(p, f"{s}_elbow_flex", elbow)
            _add(p, f"{s}_shoulder_abd", abd)
        ahead = rate(t + anticipate)
        look = _soft_clip(0.3 * ahead, -0.5, 0.5)
        _add(p, "neck_rot", 0.5 * look)
        _add(p, "head_rot", 0.5 * look)
        _spread(p, "rot", _soft_clip(0.15 * ahead, -0.25, 0.25))
        lean = _soft_clip(0.04 * ahead * (0.3 + speed), -0.12, 0.12)  # into the turn
        _add(p, "root_roll", lean)
        return p, np.full(t.shape, speed), rate(t), np.zeros((t.shape[0], 2))

    return _Segment("turn", dur, _const(freq), evaluate)


def _arm_names(side: str) -> dict[str, str]:
    return {k: f"{side}_{k}" for k in ("shoulder_flex", "shoulder_abd", "shoulder_rot",
                                       "elbow_flex", "wrist_flex", "collar_elev",
                                       "collar_protract")}


# Reach directions: (shoulder_flex range, shoulder_abd range), radians.
_REACH_TARGETS = {
    "forward": ((1.3, 1.7), (0.1, 0.4)),
    "forward_low": ((0.9, 1.2), (0.1, 0.3)),
    "forward_up": ((1.9, 2.4), (0.2, 0.6)),
    "up": ((2.5, 2.9), (0.2, 0.5)),
    "side": ((0.0, 0.4), (1.3, 1.7)),
}
_MAX_RATE = 4.0  # rad/s, the fastest a deliberate arm or leg movement is made to go


def _move_time(rng: np.random.Generator, style: _Style, delta: float, lo: float,
               hi: float) -> float:
    """Duration of a smootherstep move of `delta` rad: random, but never faster than _MAX_RATE."""
    return max(rng.uniform(lo, hi) / style.tempo, 1.875 * abs(delta) / _MAX_RATE)


def _build_reach(rng: np.random.Generator, style: _Style, dur: float, side: str,
                 is_last: bool) -> _Segment:
    layer = _idle_layer(rng, style)
    kind = list(_REACH_TARGETS)[rng.integers(len(_REACH_TARGETS))]
    (f_lo, f_hi), (a_lo, a_hi) = _REACH_TARGETS[kind]
    both = rng.random() < 0.3
    sides = _SIDES if both else (side,)
    targets = {}
    for s in sides:
        n = _arm_names(s)
        targets[s] = {
            n["shoulder_flex"]: rng.uniform(f_lo, f_hi),
            n["shoulder_abd"]: rng.uniform(a_lo, a_hi),
            n["shoulder_rot"]: rng.uniform(-0.3, 0.4),
            n["elbow_flex"]: rng.uniform(0.05, 0.35),
            n["wrist_flex"]: rng.uniform(-0.4, 0.1),
            n["collar_protract"]: rng.uniform(0.05, 0.25) if kind.startswith("forward") else 0.0,
            n["collar_elev"]: rng.uniform(0.1, 0.3) if kind in ("up", "forward_up") else 0.05,
        }
    delta = max(v for tg in targets.values() for v in tg.values())
    t_out = _move_time(rng, style, delta, 0.6, 1.1)
    t_back = _move_time(rng, style, delta, 0.7, 1.2)
    start = rng.uniform(0.0, 0.3)
    hold = dur - start - t_out - t_back - 0.1
    returns = hold > 0.3 and rng.random() < 0.75  # otherwise the next segment lowers the arm
    lean_fwd = rng.uniform(0.05, 0.25) * (kind.startswith("forward") or kind == "up")
    lean_side = rng.uniform(0.03, 0.1) * (kind == "side") * (1.0 if side == "left" else -1.0)
    # One-armed forward reaches bring that shoulder forward: chest turns away from the arm.
    chest = 0.0 if both else rng.uniform(0.05, 0.2) * (-1.0 if side == "left" else 1.0)
    look_up = -rng.uniform(0.1, 0.3) if kind in ("up", "forward_up") else rng.uniform(0.0, 0.15)

    def evaluate(t: np.ndarray, phase: np.ndarray) -> _Channels:
        p = layer(t)
        e = _ramp(t, start, t_out)
        if returns:
            e = e - _ramp(t, start + t_out + hold, t_back)
        for tg in targets.values():
            _blend_towards(p, tg, e)
        _spread(p, "flex", lean_fwd * e)
        _spread(p, "lat", lean_side * e)
        _spread(p, "rot", chest * e)
        _add(p, "neck_flex", 0.5 * look_up * e)
        _add(p, "head_flex", 0.5 * look_up * e)
        z = np.zeros_like(t)
        return p, z, z, np.zeros((t.shape[0], 2))

    return _Segment("reach", dur, _const(0.9 * style.cadence), evaluate)


def _build_wave(rng: np.random.Generator, style: _Style, dur: float, side: str,
                is_last: bool) -> _Segment:
    layer = _idle_layer(rng, style)
    n = _arm_names(side)
    # Upper arm out to the side and externally rotated so that the bent forearm points up;
    # the wave itself is the elbow opening and closing (the forearm sweeps side to side).
    target = {
        n["shoulder_abd"]: rng.uniform(1.3, 2.1),
        n["shoulder_flex"]: rng.uniform(0.1, 0.6),
        n["shoulder_rot"]: rng.uniform(1.1, 1.5),
        n["elbow_flex"]: rng.uniform(1.0, 1.4),
        n["wrist_flex"]: rng.uniform(-0.3, 0.1),
        n["collar_elev"]: rng.uniform(0.05, 0.2),
    }
    freq = rng.uniform(1.2, 2.2) * style.tempo
    amp = min(rng.uniform(0.25, 0.45) * style.amp, 0.6 / freq)  # cap the forearm speed
    t_up = _move_time(rng, style, 2.0, 0.5, 0.9)
    t_down = _move_time(rng, style, 2.0, 0.6, 1.0)
    start = rng.uniform(0.0, 0.3)
    lowers = dur - start - t_up - t_down > 1.0 and rng.random() < 0.8
    wphase = rng.uniform(0.0, _TWO_PI)
    tilt = rng.uniform(0.03, 0.1) * (-1.0 if side == "left" else 1.0)  # trunk leans away

    def evaluate(t: np.ndarray, phase: np.ndarray) -> _Channels:
        p = layer(t)
        e = _ramp(t, start, t_up)
        if lowers:
            e = e - _ramp(t, dur - t_down - 0.1, t_down)
        _blend_towards(p, target, e)
        # The oscillation only runs while the arm is (nearly) up, fading in and out with it.
        osc = np.sin(_TWO_PI * freq * t + wphase) * e * e
        _add(p, n["elbow_flex"], amp * osc)
        _add(p, n["wrist_flex"], 0.3 * amp * osc)
        _spread(p, "lat", tilt * e)
        z = np.zeros_like(t)
        return p, z, z, np.zeros((t.shape[0], 2))

    return _Segment("wave", dur, _const(0.9 * style.cadence), evaluate)


def _legs_bent(p: np.ndarray, thigh: np.ndarray, shank: np.ndarray,
               pitch: np.ndarray) -> None:
    """Bend both legs with feet flat: thigh and shank world angles (rad, forward tilt of the
    thigh from vertical, forward tilt of the shank = knee ahead of the ankle) and pelvis pitch.

    Rotations about x add along the chain, so hip = thigh + pitch, knee = thigh + shank and a
    flat foot needs dorsiflexion = shank tilt.
    """
    _add(p, "root_pitch", pitch)
    for s in _SIDES:
        _add(p, f"{s}_hip_flex", thigh + pitch)
        _add(p, f"{s}_knee_flex", thigh + shank)
        _add(p, f"{s}_ankle_flex", shank)


def _build_squat(rng: np.random.Generator, style: _Style, dur: float, side: str,
                 is_last: bool) -> _Segment:
    layer = _idle_layer(rng, style)
    reps = 2 if dur >= 4.2 and rng.random() < 0.5 else 1
    rep = dur / reps
    # Thigh at least 1.2 rad from vertical: the pelvis drops by ~30 cm or more.
    thigh = rng.uniform(1.2, 1.5)
    shank = rng.uniform(0.4, 0.6)
    pitch = rng.uniform(0.3, 0.6)
    flex = rng.uniform(0.05, 0.2)
    arms_forward = rng.random() < 0.7
    arm_flex = rng.uniform(0.9, 1.5)
    times = []
    for _ in range(reps):
        down = min(_move_time(rng, style, thigh + shank, 0.8, 1.3), 0.4 * rep)
        up = min(_move_time(rng, style, thigh + shank, 0.8, 1.3), 0.4 * rep)
        slack = rep - down - up
        times.append((slack * rng.uniform(0.1, 0.3), down, slack * rng.uniform(0.2, 0.5), up))

    def evaluate(t: np.ndarray, phase: np.ndarray) -> _Channels:
        p = layer(t)
        e = np.zeros_like(t)
        for r, (lead, down, hold, up) in enumerate(times):
            t0 = r * rep + lead
            e = e + _ramp(t, t0, down) - _ramp(t, t0 + down + hold, up)
        _legs_bent(p, thigh * e, shank * e, pitch * e)
        _spread(p, "flex", flex * e)
        _add(p, "neck_flex", -0.5 * (pitch + flex) * e)  # eyes stay on the horizon
        if arms_forward:
            for s in _SIDES:
                _blend_towards(p, {f"{s}_shoulder_flex": arm_flex, f"{s}_elbow_flex": 0.2,
                                   f"{s}_shoulder_abd": 0.15}, e)
        offset = np.zeros((t.shape[0], 2))
        offset[:, 1] = -(_feet_forward(p) - _feet_forward(layer(t)))
        z = np.zeros_like(t)
        return p, z, z, offset

    return _Segment("squat", dur, _const(0.9 * style.cadence), evaluate)


def _build_sit(rng: np.random.Generator, style: _Style, dur: float, side: str,
               is_last: bool) -> _Segment:
    layer = _idle_layer(rng, style)
    thigh = rng.uniform(1.35, 1.6)  # thighs about horizontal on the seat
    shank = rng.uniform(-0.15, 0.25)  # feet a little ahead of or behind the knees
    seat_pitch = rng.uniform(-0.15, 0.1)  # upright or leaning back
    lean = rng.uniform(0.4, 0.65)  # extra forward lean while lowering / rising
    slouch = rng.uniform(0.05, 0.25)
    # Staying seated is only possible at the end of a clip: the next action needs the feet.
    stands = not is_last or rng.random() < 0.5
    down = min(_move_time(rng, style, thigh + shank, 1.0, 1.6), 0.4 * dur)
    up = min(_move_time(rng, style, thigh + shank, 1.0, 1.6), 0.4 * dur) if stands else 0.0
    slack = dur - down - up
    start = slack * rng.uniform(0.0, 0.15)
    hands = {}
    for s in _SIDES:  # hands resting on the thighs
        hands[f"{s}_shoulder_flex"] = rng.uniform(0.4, 0.8)
        hands[f"{s}_shoulder_abd"] = rng.uniform(0.15, 0.3)
        hands[f"{s}_elbow_flex"] = rng.uniform(0.9, 1.3)
        hands[f"{s}_shoulder_rot"] = rng.uniform(-0.2, 0.2)

    def evaluate(t: np.ndarray, phase: np.ndarray) -> _Channels:
        p = layer(t)
        e = _ramp(t, start, down)
        bump = _bell(t, start, down)
        if stands:
            t_up = dur - up - 0.1
            e = e - _ramp(t, t_up, up)
            bump = bump + _bell(t, t_up, up)
        _legs_bent(p, thigh * e, shank * e, seat_pitch * e + lean * bump)
        _spread(p, "flex", slouch * e)
        _add(p, "neck_flex", -0.5 * lean * bump)
        _blend_towards(p, hands, e)
        offset = np.zeros((t.shape[0], 2))
        offset[:, 1] = -(_feet_forward(p) - _feet_forward(layer(t)))
        z = np.zeros_like(t)
        return p, z, z, offset

    return _Segment("sit", dur, _const(0.9 * style.cadence), evaluate)


_BUILDERS: dict[str, Callable[..., _Segment]] = {
    "walk": _build_walk, "turn": _build_turn, "reach": _build_reach, "wave": _build_wave,
    "squat": _build_squat, "sit": _build_sit, "idle": _build_idle,
}

# ---------------------------------------------------------------------------------------------
# Sequencing
# ---------------------------------------------------------------------------------------------

_MIN_SEG, _MAX_SEG = 2.0, 5.0
_MIN_FADE, _MAX_FADE = 0.5, 1.5
_FADE_RATE = 3.0  # rad/s: fades are lengthened so no parameter crosses faster than this


def _plan(rng: np.random.Generator, duration: float) -> list[float]:
    """Segment durations (s) summing to `duration`, each 2-5 s (one shorter clip: one piece)."""
    out: list[float] = []
    left = duration
    while left > 1e-9:
        d = rng.uniform(_MIN_SEG, _MAX_SEG)
        if left - d < _MIN_SEG:
            if left <= _MAX_SEG:
                d = left
            else:  # split what remains into two pieces of 2.5-3.5 s rather than leave a stub
                d = left / 2.0
        out.append(d)
        left -= d
    return out


def _check_actions(actions: Sequence[str] | None) -> tuple[str, ...]:
    if actions is None:
        return ACTIONS
    if isinstance(actions, str):
        actions = (actions,)
    acts = tuple(actions)
    if not acts:
        raise ValueError("actions must not be empty")
    bad = [a for a in acts if a not in ACTIONS]
    if bad:
        raise ValueError(f"unknown actions {bad}; known: {', '.join(ACTIONS)}")
    return acts


def generate_motion(seed: int, duration_s: float, fps: float = 30.0,
                    actions: Sequence[str] | None = None) -> MotionClip:
    """Generate one clip: random actions, 2-5 s each, cross-faded, deterministic in `seed`.

    seed: non-negative int; duration_s: clip length in seconds (T = round(duration_s * fps),
    at least 1 frame); fps: frames per second; actions: the actions to draw from (default all
    of `ACTIONS`); consecutive segments differ whenever more than one action is allowed.
    Returns a `MotionClip` with float32 arrays. Walking moves the pelvis at 0.8-1.4 m/s along
    the heading; the other actions stay in place up to a few centimetres of sway (and the
    pelvis moving back over the feet when squatting or sitting).
    """
    acts = _check_actions(actions)
    if fps <= 0 or duration_s <= 0:
        raise ValueError("duration_s and fps must be positive")
    rng = np.random.default_rng(seed)
    n = max(1, int(round(duration_s * fps)))
    t = np.arange(n) / fps
    style = _draw_style(rng)
    durations = _plan(rng, n / fps)

    segs: list[_Segment] = []
    starts: list[float] = []
    prev = None
    for i, d in enumerate(durations):
        choices = [a for a in acts if a != prev] if len(acts) > 1 else list(acts)
        action = choices[rng.integers(len(choices))]
        side = _SIDES[rng.integers(2)]
        segs.append(_BUILDERS[action](rng, style, d, side, i == len(durations) - 1))
        starts.append(float(sum(durations[:i])))
        prev = action

    # Cross-fade lengths: long enough that the difference between neighbours, wherever it is
    # largest near the boundary, is crossed at no more than _FADE_RATE.
    fades = []
    probe_phase = rng.uniform(0.0, _TWO_PI)
    for k in range(1, len(segs)):
        tb = starts[k] + np.linspace(-0.75, 0.75, 16)
        ph = probe_phase + _TWO_PI * 0.9 * (tb - starts[k])
        pa = segs[k - 1].evaluate(tb - starts[k - 1], ph)[0]
        pb = segs[k].evaluate(tb - starts[k], ph)[0]
        delta = float(np.max(np.abs(_soft_clip(pa, _LO, _HI) - _soft_clip(pb, _LO, _HI))))
        fades.append(float(np.clip(1.875 * delta / _FADE_RATE, _MIN_FADE, _MAX_FADE)))

    # Partition-of-unity weights: segment k ramps in at its start and out at the next start.
    ups = [np.ones(n)] + [_ramp(t, starts[k] - 0.5 * f, f) for k, f in zip(range(1, len(segs)),
                                                                          fades)]
    weights = [ups[k] * (1.0 - ups[k + 1]) if k + 1 < len(segs) else ups[k]
               for k in range(len(segs))]

    # Pass 1: the clip-wide gait phase from the blended stride frequency.
    freq = np.zeros(n)
    for seg, s0, w in zip(segs, starts, weights):
        m = w > 0
        freq[m] += w[m] * seg.freq(t[m] - s0)
    phase0 = rng.uniform(0.0, _TWO_PI)
    phase = phase0 + _TWO_PI * _integrate(freq, fps)

    # Pass 2: everything else.
    params = np.zeros((n, NUM_PARAMS))
    speed = np.zeros(n)
    yaw_rate = np.zeros(n)
    offset = np.zeros((n, 2))
    for seg, s0, w in zip(segs, starts, weights):
        m = w > 0
        p, v, yr, off = seg.evaluate(t[m] - s0, phase[m])
        wm = w[m]
        params[m] += wm[:, None] * p
        speed[m] += wm * v
        yaw_rate[m] += wm * yr
        offset[m] += wm[:, None] * off
    params = _soft_clip(params, _LO, _HI)

    heading = rng.uniform(-math.pi, math.pi) + _integrate(yaw_rate, fps)
    fwd = np.stack([np.sin(heading), np.cos(heading)], axis=1)
    left = np.stack([np.cos(heading), -np.sin(heading)], axis=1)
    root = np.stack([_integrate(speed * fwd[:, 0], fps), _integrate(speed * fwd[:, 1], fps)], 1)
    root += offset[:, :1] * left + offset[:, 1:] * fwd

    go, bp = params_to_pose(params, heading)
    label_idx = np.argmax(np.stack(weights), axis=0)
    labels = np.array([segs[i].action for i in label_idx])
    return MotionClip(
        name=f"motion_s{seed}", fps=float(fps), body_pose=bp.astype(np.float32),
        global_orient=go.astype(np.float32), root_xz=root.astype(np.float32), action=labels,
        heading=heading.astype(np.float32), params=params.astype(np.float32),
    )


def _integrate(rate: np.ndarray, fps: float) -> np.ndarray:
    """Trapezoidal running integral, 0 at the first frame."""
    out = np.zeros_like(rate)
    out[1:] = np.cumsum(0.5 * (rate[1:] + rate[:-1])) / fps
    return out


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip `index` of `generate_library(seed, ...)`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
               >> np.uint64(1))


def generate_library(seed: int, n_clips: int, duration_s: float,
                     fps: float = 30.0) -> list[MotionClip]:
    """`n_clips` clips of `duration_s` seconds; clip i is `generate_motion(clip_seed(seed, i))`,
    named `motion_<seed>_<i>`, so any one clip can be regenerated on its own."""
    clips = []
    for i in range(n_clips):
        c = generate_motion(clip_seed(seed, i), duration_s, fps)
        clips.append(replace(c, name=f"motion_{seed}_{i:04d}"))
    return clips
