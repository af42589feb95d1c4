"""The in-place actions: idle, reach, wave, squat and sit.

Each builder: (rng, style, duration, side, is_last) -> _Segment. Random draws all happen at
build time; the returned closures are pure functions of time. Every one carries the idle layer
(small head, trunk and arm motions) underneath.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .blocks import (
    _SHANK,
    _THIGH,
    _TWO_PI,
    _add,
    _bell,
    _blend_towards,
    _Channels,
    _const,
    _feet_forward,
    _neutral,
    _Noise,
    _ramp,
    _Segment,
    _spread,
    _Style,
)
from .limits import _SIDES


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

