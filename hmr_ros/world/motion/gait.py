"""Walking and turning: the gait cycle (foot track, knee curve, arm swing, pelvis motion) and
the two locomotion actions built on it.

Walking and turning share one gait phase per clip, integrated from the blended stride
frequency (`clip.generate_motion`). A walk that fades into a turn therefore keeps its step
rhythm instead of averaging two unrelated gait cycles (which would straighten both legs half
way through the fade).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .blocks import (
    _SHANK,
    _THIGH,
    _TWO_PI,
    _add,
    _Channels,
    _const,
    _lean_pelvis,
    _neutral,
    _Noise,
    _Segment,
    _smootherstep,
    _soft_clip,
    _spread,
    _Style,
    _vm,
)
from .limits import _SIDES


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


# Builders: (rng, style, duration, side, is_last) -> _Segment, like those in `actions`. Random
# draws all happen at build time; the returned closures are pure functions of time.


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
