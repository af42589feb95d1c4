"""The synthetic body's rest skeleton and surface: SMPL's joints in a T-pose and one closed
tube per body part.

Each part is a tube of rings from its joint towards the next (or towards a free end: head
top, hands, toes), closed by a pole vertex at each end; rings beyond the joints tuck into the
neighbouring part. The t=0 ring of every part sits on its joint, which is what lets the joint
regressor (`synthetic.build_synthetic_smpl`) recover the joints from the vertices exactly.

Coordinates follow SMPL's template: metres, +y up, +x towards the body's left, +z forward (the
body faces +z), pelvis joint at the origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .joints import SMPL_JOINT_NAMES

# Rest-pose joint positions (T-pose). Left side is +x; the right side mirrors it.
_LEFT_RIGHT = {
    "hip": (0.085, -0.09, 0.0),
    "knee": (0.095, -0.50, 0.0),
    "ankle": (0.10, -0.90, 0.0),
    "foot": (0.105, -0.955, 0.11),
    "collar": (0.07, 0.44, 0.0),
    "shoulder": (0.18, 0.45, 0.0),
    "elbow": (0.44, 0.45, 0.0),
    "wrist": (0.68, 0.45, 0.0),
    "hand": (0.76, 0.45, 0.0),
}
_CENTRE = {
    "pelvis": (0.0, 0.0, 0.0),
    "spine1": (0.0, 0.11, 0.0),
    "spine2": (0.0, 0.23, 0.0),
    "spine3": (0.0, 0.35, 0.0),
    "neck": (0.0, 0.52, 0.0),
    "head": (0.0, 0.60, 0.0),
}


_TUCK = 0.88


def rest_joints() -> np.ndarray:
    """Template joint positions `(24, 3)` in SMPL order."""
    out = np.zeros((24, 3))
    for i, name in enumerate(SMPL_JOINT_NAMES):
        if name in _CENTRE:
            out[i] = _CENTRE[name]
        else:
            side, base = name.split("_", 1)
            x, y, z = _LEFT_RIGHT[base]
            out[i] = (x if side == "left" else -x, y, z)
    return out


@dataclass(frozen=True)
class _PartSpec:
    """One body part: a tube from its joint A towards point B.

    Rings sit at `t` along A->B (t=0 is the joint itself and is required: its ring regresses the
    joint). `ru`, `rv` are the ring's half-axes along the cross-section axes u and v (v points
    forward for upright parts and up for feet), `cv` shifts a ring's centre along v (heel, face).
    """

    joint: str
    end: tuple[float, float, float]  # B for the left/centre version
    t: tuple[float, ...]
    ru: tuple[float, ...]
    rv: tuple[float, ...]
    n: int  # vertices per ring
    cv: tuple[float, ...] | None = None


def _parts() -> list[_PartSpec]:
    j = {n: tuple(p) for n, p in zip(SMPL_JOINT_NAMES, rest_joints())}
    return [
        _PartSpec("pelvis", (0.0, -0.09, 0.0), (-1.0, -0.5, 0.0, 0.5, 1.0, 1.4),
                  (0.13, 0.14, 0.15, 0.16, 0.16, 0.12), (0.10, 0.10, 0.105, 0.11, 0.10, 0.08), 16),
        _PartSpec("spine1", j["spine2"], (-0.4, 0.0, 0.5, 1.0, 1.3),
                  (0.135, 0.135, 0.14, 0.145, 0.145), (0.10, 0.10, 0.10, 0.10, 0.10), 16),
        _PartSpec("spine2", j["spine3"], (-0.3, 0.0, 0.5, 1.0, 1.3),
                  (0.145, 0.15, 0.155, 0.16, 0.16), (0.10, 0.10, 0.105, 0.11, 0.11), 16),
        _PartSpec("spine3", j["neck"], (-0.3, 0.0, 0.4, 0.75, 1.0),
                  (0.16, 0.165, 0.17, 0.15, 0.09), (0.11, 0.11, 0.11, 0.095, 0.07), 16),
        _PartSpec("neck", j["head"], (-0.3, 0.0, 0.5, 1.0, 1.2),
                  (0.06, 0.055, 0.055, 0.055, 0.055), (0.055, 0.05, 0.05, 0.05, 0.05), 12),
        _PartSpec("head", (0.0, 0.80, 0.0), (-0.25, 0.0, 0.25, 0.5, 0.75, 0.92),
                  (0.055, 0.07, 0.085, 0.085, 0.075, 0.05),
                  (0.06, 0.08, 0.095, 0.10, 0.085, 0.055), 16,
                  cv=(0.0, 0.0, 0.015, 0.015, 0.01, 0.005)),
        _PartSpec("left_collar", j["left_shoulder"], (-0.2, 0.0, 0.5, 1.0, 1.2),
                  (0.06, 0.06, 0.06, 0.06, 0.06), (0.055, 0.055, 0.055, 0.055, 0.055), 12),
        _PartSpec("left_shoulder", j["left_elbow"], (-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.15),
                  (0.055, 0.055, 0.052, 0.048, 0.045, 0.042, 0.042),
                  (0.05, 0.05, 0.048, 0.045, 0.042, 0.04, 0.04), 12),
        _PartSpec("left_elbow", j["left_wrist"], (-0.15, 0.0, 0.3, 0.6, 1.0, 1.1),
                  (0.042, 0.042, 0.042, 0.036, 0.028, 0.028),
                  (0.04, 0.04, 0.04, 0.033, 0.025, 0.025), 12),
        _PartSpec("left_wrist", j["left_hand"], (-0.1, 0.0, 0.5, 1.0),
                  (0.02, 0.02, 0.02, 0.017), (0.03, 0.035, 0.045, 0.045), 8),
        _PartSpec("left_hand", (0.85, 0.45, 0.0), (0.0, 0.5, 0.9),
                  (0.015, 0.012, 0.01), (0.045, 0.04, 0.03), 12),
        _PartSpec("left_hip", j["left_knee"], (-0.3, 0.0, 0.3, 0.6, 1.0, 1.12),
                  (0.085, 0.085, 0.078, 0.068, 0.055, 0.055),
                  (0.085, 0.085, 0.08, 0.068, 0.055, 0.055), 12),
        _PartSpec("left_knee", j["left_ankle"], (-0.12, 0.0, 0.3, 0.6, 1.0, 1.08),
                  (0.055, 0.055, 0.058, 0.048, 0.04, 0.04),
                  (0.055, 0.055, 0.062, 0.05, 0.04, 0.04), 12),
        _PartSpec("left_ankle", j["left_foot"], (-0.45, -0.2, 0.0, 0.5, 1.0),
                  (0.04, 0.04, 0.042, 0.045, 0.047), (0.035, 0.04, 0.04, 0.032, 0.025), 12,
                  cv=(-0.035, -0.02, 0.0, -0.005, 0.0)),
        _PartSpec("left_foot", (0.105, -0.96, 0.185), (0.0, 0.5, 1.0),
                  (0.047, 0.045, 0.04), (0.025, 0.022, 0.018), 8),
    ]


def _mirror(spec: _PartSpec) -> _PartSpec:
    x, y, z = spec.end
    return _PartSpec(spec.joint.replace("left_", "right_"), (-x, y, z), spec.t, spec.ru, spec.rv,
                     spec.n, spec.cv)


def _all_parts() -> list[_PartSpec]:
    specs = []
    for s in _parts():
        specs.append(s)
        if s.joint.startswith("left_"):
            specs.append(_mirror(s))
    order = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    return sorted(specs, key=lambda s: order[s.joint])


def cross_section_axes(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross-section axes (u, v) for a tube along unit direction d.

    v is the forward axis (+z) for upright and sideways parts and the up axis (+y) for parts that
    point forward (feet), so every ring's 'front' is well defined for landmarks.
    """
    ref = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.7 else np.array([0.0, 1.0, 0.0])
    v = ref - ref.dot(d) * d
    v /= np.linalg.norm(v)
    u = np.cross(v, d)
    return u, v


@dataclass
class Surface:
    """The surface under construction, one entry per vertex (faces: one (F_p, 3) array per
    part, global vertex ids)."""

    vertices: list[np.ndarray]
    faces: list[np.ndarray]
    part: list[int]
    t: list[float]  # position along the part axis, A=0, B=1
    centre: list[np.ndarray]  # ring centre (for radial offsets)
    ring0: dict[int, list[int]]  # joint -> vertex ids of its t=0 ring


def build_surface() -> tuple[Surface, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Every part's rings and poles, faces oriented outwards; with each part's axis
    {joint index: (A (3,), B (3,))}."""
    joints = rest_joints()
    surf = Surface([], [], [], [], [], {})
    axes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for spec in _all_parts():
        p = SMPL_JOINT_NAMES.index(spec.joint)
        a, b = joints[p], np.asarray(spec.end, dtype=np.float64)
        d = (b - a) / np.linalg.norm(b - a)
        axes[p] = (a, b)
        u, v = cross_section_axes(d)
        cv = spec.cv or (0.0,) * len(spec.t)
        first = len(surf.vertices)
        rings = []
        for k, t in enumerate(spec.t):
            c = a + t * (b - a) + cv[k] * v
            # Rings beyond the joints tuck into the neighbouring part; keeping them slimmer
            # than that part avoids coplanar surfaces fighting in the z-buffer.
            shrink = 1.0 if 0.0 <= t <= 1.0 else _TUCK
            ring = []
            for i in range(spec.n):
                th = 2.0 * np.pi * i / spec.n
                offset = shrink * (spec.ru[k] * np.cos(th) * u + spec.rv[k] * np.sin(th) * v)
                surf.vertices.append(c + offset)
                surf.part.append(p)
                surf.t.append(t)
                surf.centre.append(c)
                ring.append(len(surf.vertices) - 1)
            rings.append(ring)
            if t == 0.0:
                surf.ring0[p] = ring
        # Poles close the tube; they sit a fraction of the end radius beyond the end rings.
        poles = []
        for end, sign in ((0, -1.0), (len(spec.t) - 1, 1.0)):
            c = a + spec.t[end] * (b - a) + cv[end] * v
            tucked = 1.0 if 0.0 <= spec.t[end] <= 1.0 else _TUCK
            cap = 0.6 * 0.5 * (spec.ru[end] + spec.rv[end]) * tucked
            surf.vertices.append(c + sign * cap * d)
            surf.part.append(p)
            surf.t.append(spec.t[end] + sign * cap / np.linalg.norm(b - a))
            surf.centre.append(c + sign * cap * d)
            poles.append(len(surf.vertices) - 1)
        faces = []
        n = spec.n
        for k in range(len(rings) - 1):
            r0, r1 = rings[k], rings[k + 1]
            for i in range(n):
                i2 = (i + 1) % n
                faces.append((r0[i], r0[i2], r1[i2]))
                faces.append((r0[i], r1[i2], r1[i]))
        for i in range(n):
            faces.append((poles[0], rings[0][(i + 1) % n], rings[0][i]))
            faces.append((poles[1], rings[-1][i], rings[-1][(i + 1) % n]))
        faces = np.asarray(faces, dtype=np.int64)
        # Orient every part outwards: a closed mesh with outward faces has positive volume.
        verts = np.asarray(surf.vertices)
        if _signed_volume(verts, faces) < 0:
            faces = faces[:, ::-1]
        surf.faces.append(faces)
        assert first < len(surf.vertices)
    return surf, axes


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
