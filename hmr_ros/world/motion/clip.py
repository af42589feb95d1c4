"""A motion clip and its generation: actions drawn from a seed, 2-5 s each, cross-faded.

A clip is a sequence of action segments (walk, turn, reach, wave, squat, sit, idle), each 2-5 s
long, cross-faded into one another. Everything random comes from one
`numpy.random.Generator(seed)`, so a seed fully determines a clip.

The root
--------
Segments also return a forward speed (m/s), a yaw rate (rad/s) and a small pelvis offset in the
body frame (weight shift sway, the pelvis moving back over planted feet when squatting or
sitting). The blended speed and yaw rate are integrated into the heading and the pelvis ground
position `root_xz`. The pelvis *height* is not part of a clip: the renderer puts the lowest
foot point on the ground, so the height follows from the legs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .actions import _build_idle, _build_reach, _build_sit, _build_squat, _build_wave
from .blocks import _TWO_PI, _draw_style, _ramp, _Segment, _soft_clip
from .gait import _build_turn, _build_walk
from .limits import _HI, _LO, _SIDES, NUM_PARAMS, params_to_pose

ACTIONS: tuple[str, ...] = ("walk", "turn", "reach", "wave", "squat", "sit", "idle")

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


def library_poses(n_clips: int = 40, duration_s: float = 20.0, fps: float = 10.0,
                  seed: int = 0) -> np.ndarray:
    """Body poses (N, 69) float64 of every frame of `generate_library(seed, n_clips,
    duration_s, fps)`: the pose statistics the pose priors are fitted to."""
    clips = generate_library(seed, n_clips, duration_s, fps)
    return np.concatenate([c.body_pose.reshape(len(c), 69) for c in clips]).astype(np.float64)
