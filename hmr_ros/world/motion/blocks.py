"""Building blocks of the motion segments: smooth envelopes and clips, bounded noise, a
person's style, edits of the parameter array, and the `_Segment` record every action returns.

Segments are blended in parameter space with C2 weights (`_smootherstep`) and clipped to the
joint limits (`_soft_clip`) before they become SMPL rotations; blending angles rather than
rotation vectors keeps every joint within its anatomical range and gives no pose or velocity
jumps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .limits import _P, _SIDES, NUM_PARAMS

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
