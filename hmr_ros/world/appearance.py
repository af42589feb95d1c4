"""Clothing, skin and hair for synthetic people, and procedural noise shared with backgrounds.

Colours are per body part (SMPL part ids of the body model's vertices); patterns are 3D
procedural textures evaluated on the rest-pose surface, so stripes and checks move with the
body. Left and right get the same clothes, as in real life: the regressor has to learn sides
from the pose, not from colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..body.joints import SMPL_JOINT_NAMES

_P = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
HEAD = (_P["head"],)
SKIN_ALWAYS = (_P["neck"], _P["left_wrist"], _P["right_wrist"], _P["left_hand"],
               _P["right_hand"])
SHIRT = (_P["spine1"], _P["spine2"], _P["spine3"], _P["left_collar"], _P["right_collar"],
         _P["left_shoulder"], _P["right_shoulder"])
FOREARMS = (_P["left_elbow"], _P["right_elbow"])
PANTS = (_P["pelvis"], _P["left_hip"], _P["right_hip"])
SHINS = (_P["left_knee"], _P["right_knee"])
SHOES = (_P["left_ankle"], _P["right_ankle"], _P["left_foot"], _P["right_foot"])

SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.90, 0.72, 0.58], [0.78, 0.57, 0.44], [0.63, 0.44, 0.32],
    [0.45, 0.31, 0.22], [0.33, 0.22, 0.16],
])
HAIR = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.55, 0.42, 0.25],
                 [0.70, 0.66, 0.60], [0.35, 0.12, 0.06]])
PATTERNS = ("solid", "stripes", "checker", "noise")


@dataclass(frozen=True)
class Appearance:
    """One person's look: RGB colours in [0, 1] and pattern choices."""

    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    shoes: np.ndarray
    shirt_pattern: str = "solid"
    pants_pattern: str = "solid"
    pattern_scale: float = 0.05  # m, period of stripes/checks
    long_sleeves: bool = True
    long_pants: bool = True


def _colour(rng: np.random.Generator, lo: float = 0.1, hi: float = 0.9) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def sample_appearance(rng: np.random.Generator, style: str = "plain") -> Appearance:
    """A random look; `plain` = solid muted clothes (studio), `varied` = patterns, bright
    colours, short sleeves and shorts."""
    if style not in ("plain", "varied"):
        raise ValueError(f"clothing style must be plain or varied, got {style!r}")
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05)
    hair = HAIR[rng.integers(len(HAIR))]
    if style == "plain":
        return Appearance(
            skin=skin, hair=hair, shirt=_colour(rng, 0.15, 0.75), pants=_colour(rng, 0.1, 0.5),
            shoes=_colour(rng, 0.05, 0.3),
        )
    return Appearance(
        skin=skin, hair=hair, shirt=_colour(rng, 0.05, 0.95), pants=_colour(rng, 0.05, 0.9),
        shoes=_colour(rng, 0.05, 0.9),
        shirt_pattern=PATTERNS[rng.integers(len(PATTERNS))],
        pants_pattern=PATTERNS[rng.choice(len(PATTERNS), p=[0.6, 0.15, 0.1, 0.15])],
        pattern_scale=float(rng.uniform(0.03, 0.12)),
        long_sleeves=bool(rng.random() < 0.6), long_pants=bool(rng.random() < 0.7),
    )


def person_albedo(app: Appearance, part_ids: np.ndarray, rest_vertices: np.ndarray) -> np.ndarray:
    """Base colour per vertex (V, 3) from the part each vertex belongs to."""
    out = np.tile(app.skin, (len(part_ids), 1))

    def paint(parts: tuple[int, ...], colour: np.ndarray) -> None:
        out[np.isin(part_ids, parts)] = colour

    paint(SHIRT, app.shirt)
    paint(PANTS, app.pants)
    paint(SHOES, app.shoes)
    if app.long_sleeves:
        paint(FOREARMS, app.shirt)
    if app.long_pants:
        paint(SHINS, app.pants)
    # Hair: the top and back of the head (front is the face, +z in the rest pose).
    head = np.isin(part_ids, HEAD)
    centre = rest_vertices[head].mean(0)
    rel = rest_vertices - centre
    hair = head & ((rel[:, 1] > 0.035) | ((rel[:, 2] < -0.02) & (rel[:, 1] > -0.05)))
    out[hair] = app.hair
    return out


def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) for integer lattice points."""
    ix, iy, iz = (np.asarray(a, dtype=np.int64) for a in (ix, iy, iz))
    salt = np.int64(seed * 2654435761 % (1 << 62))
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ salt
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float64) / float(0x1000000)


def value_noise(points: np.ndarray, scale: float, seed: int, octaves: int = 3) -> np.ndarray:
    """Smooth 3D value noise in [0, 1] at points (N, 3) (or (N, 2): z = 0), period ~ scale."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1] == 2:
        p = np.concatenate([p, np.zeros(p.shape[:-1] + (1,))], axis=-1)
    total = np.zeros(p.shape[:-1])
    amp, norm = 1.0, 0.0
    for octave in range(octaves):
        q = p / scale * (2.0 ** octave)
        i = np.floor(q).astype(np.int64)
        f = q - i
        f = f * f * (3.0 - 2.0 * f)
        acc = np.zeros(p.shape[:-1])
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    wx = f[..., 0] if dx else 1 - f[..., 0]
                    wy = f[..., 1] if dy else 1 - f[..., 1]
                    wz = f[..., 2] if dz else 1 - f[..., 2]
                    w = wx * wy * wz
                    acc += w * _hash01(i[..., 0] + dx, i[..., 1] + dy, i[..., 2] + dz,
                                       seed + octave)
        total += amp * acc
        norm += amp
        amp *= 0.5
    return total / norm


def _pattern(kind: str, coords: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Brightness multiplier (N,) of a clothing pattern on rest-pose coordinates (N, 3)."""
    if kind == "solid":
        return np.ones(len(coords))
    if kind == "stripes":
        return np.where(np.sin(2 * np.pi * coords[:, 1] / scale) > 0, 1.0, 0.55)
    if kind == "checker":
        c = np.floor(coords / scale).astype(np.int64).sum(1) % 2
        return np.where(c == 0, 1.0, 0.6)
    return 0.65 + 0.55 * value_noise(coords, scale, seed)


def person_texture(app: Appearance, seed: int = 0, face_points: np.ndarray | None = None):
    """TextureFn for `RenderMesh`: clothing patterns, and dark spots (eyes, mouth) at
    `face_points` (K, 3) rest-pose positions so the front of the head is visible."""
    shirt_parts = SHIRT + (FOREARMS if app.long_sleeves else ())
    pants_parts = PANTS + (SHINS if app.long_pants else ())

    def texture(coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
        mult = np.ones(len(coords))
        shirt = np.isin(labels, shirt_parts)
        pants = np.isin(labels, pants_parts)
        mult[shirt] = _pattern(app.shirt_pattern, coords[shirt], app.pattern_scale, seed)
        mult[pants] = _pattern(app.pants_pattern, coords[pants], app.pattern_scale, seed + 7)
        head = np.isin(labels, HEAD)
        if face_points is not None and head.any():
            c = coords[head]
            d = np.linalg.norm(c[:, None, :] - face_points[None], axis=2).min(1)
            mult[head] *= np.where(d < 0.016, 0.35, 1.0)
        return mult[:, None]

    return texture
