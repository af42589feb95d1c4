"""Generator of the bundled synthetic SMPL-format body model.

Real SMPL files need a licence and cannot be downloaded here, so the package ships a body model
of its own in SMPL's file layout: SMPL's 24-joint kinematic tree and joint names, a closed
low-poly surface (one closed tube per body part, rounded by a pole vertex at each end), linear
blend skinning weights that blend across every joint, 10 shape directions (stature, mass, leg
and arm length, shoulder and hip width, torso length, belly, head size, limb girth) and a joint
regressor from vertices, so shape moves the joints exactly as in SMPL. Pose blend shapes are
zero. The skeleton and surface are built in `synthetic_surface.py`; skinning, shape
directions, landmarks and the assembled arrays here. Nothing is random: the model is a pure
function of the constants of both modules, and `npzio.write_npz` stores it byte-for-byte
reproducibly:

    hmr-ros body-model --out weights/smpl_synthetic.npz

Coordinates follow SMPL's template: metres, +y up, +x towards the body's left, +z forward (the
body faces +z), pelvis joint at the origin, T-pose.
"""

from __future__ import annotations

import numpy as np

from .joints import LANDMARK_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS
from .synthetic_surface import build_surface, cross_section_axes, rest_joints

__all__ = ["FORMAT_VERSION", "NUM_BETAS", "SHAPE_NAMES", "build_synthetic_smpl", "rest_joints"]

NUM_BETAS = 10
SHAPE_NAMES = (
    "stature", "mass", "leg_length", "arm_length", "shoulder_width",
    "hip_width", "torso_length", "belly", "head_size", "limb_girth",
)
FORMAT_VERSION = 1


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _skinning_weights(
    verts: np.ndarray, part: np.ndarray, axes: dict[int, tuple[np.ndarray, np.ndarray]],
    ring_radius: dict[int, float],
) -> np.ndarray:
    """LBS weights `(V, 24)` blending each joint over a band around it.

    Across joint c (child part c, parent part p) the weight of c rises smoothly from 0 to 1 over
    a band of half-width D_c along c's axis, for vertices of either part near the joint. Both
    parts use the same function of position, so their overlapping ends move together.
    """
    v_count = verts.shape[0]
    w = np.zeros((v_count, 24))
    for c in range(1, 24):
        p = SMPL_PARENTS[c]
        a, b = axes[c]
        d = (b - a) / np.linalg.norm(b - a)
        r = ring_radius[c]
        half = 0.8 * r
        rel = verts - a
        s = rel @ d
        radial = np.linalg.norm(rel - np.outer(s, d), axis=1)
        blend = _smoothstep((s + half) / (2.0 * half))  # weight of the child side
        near = 1.0 - _smoothstep((radial - 1.0 * r) / (1.0 * r))
        own = part == c
        w[own, p] += (1.0 - blend[own])
        from_parent = part == p
        w[from_parent, c] += blend[from_parent] * near[from_parent]
    rest = 1.0 - w.sum(axis=1)
    w[np.arange(v_count), part] += np.clip(rest, 0.0, None)
    w = np.clip(w, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def _side(name: str) -> float:
    return 1.0 if name.startswith("left_") else -1.0 if name.startswith("right_") else 0.0


def _shape_directions(
    verts: np.ndarray, part: np.ndarray, t: np.ndarray, centre: np.ndarray,
    axes: dict[int, tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Shape directions `(V, 3, 10)`, one per entry of SHAPE_NAMES, per unit beta.

    Apart from stature (a scaling), each direction is given by displacements of the part end
    points (joints and the free ends of head, hands and feet) interpolated along each part, plus
    radial scalings of the cross-sections. The t=0 rings therefore move exactly with their
    joint, so the joint regressor follows shape.
    """
    names = SMPL_JOINT_NAMES
    v_count = verts.shape[0]
    out = np.zeros((v_count, 3, NUM_BETAS))
    tc = np.clip(t, 0.0, 1.0)[:, None]
    radial = verts - centre
    torso = {"pelvis", "spine1", "spine2", "spine3"}
    arms = {"collar", "shoulder", "elbow", "wrist", "hand"}
    legs = {"hip", "knee", "ankle", "foot"}

    def kind(n: str) -> str:
        base = n.split("_", 1)[1] if _side(n) != 0.0 else n
        return "arm" if base in arms else "leg" if base in legs else "torso" if n in torso else n

    def from_anchors(delta_a: np.ndarray, delta_b: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """delta_a/delta_b: (24,3) displacement of each part's A and B; scale: (24,)."""
        return (1.0 - tc) * delta_a[part] + tc * delta_b[part] + scale[part, None] * radial

    def chain_shift(shift_of: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """A part's A moves with its joint, its B with the child's joint (or with A if a leaf)."""
        da = np.zeros((24, 3))
        for i, n in enumerate(names):
            da[i] = shift_of.get(n, np.zeros(3))
        db = np.zeros((24, 3))
        for i in range(24):
            children = [c for c in range(24) if SMPL_PARENTS[c] == i]
            a, b = axes[i]
            hit = [c for c in children if np.allclose(rest_joints()[c], b)]
            db[i] = da[hit[0]] if hit else da[i] + shift_of.get(names[i] + "_end", np.zeros(3))
        return da, db

    zero_scale = np.zeros(24)
    pelvis = rest_joints()[0]
    # 0 stature: anisotropic scaling about the pelvis, taller more than wider.
    out[:, :, 0] = (verts - pelvis) * np.array([0.04, 0.07, 0.04])
    # 1 mass: thicker everywhere, most on the torso.
    scale = np.array([0.15 if kind(n) == "torso" else 0.03 if n == "head" else 0.10
                      for n in names])
    out[:, :, 1] = scale[part, None] * radial
    # 2 leg length: knees and everything below move down.
    shift = {}
    for n in names:
        base = n.split("_", 1)[-1]
        if base == "knee":
            shift[n] = np.array([0.0, -0.035, 0.0])
        elif base in ("ankle", "foot"):
            shift[n] = np.array([0.0, -0.07, 0.0])
    out[:, :, 2] = from_anchors(*chain_shift(shift), zero_scale)
    # 3 arm length: elbows, wrists, hands move outwards along the arm.
    shift = {}
    for n in names:
        base = n.split("_", 1)[-1]
        step = {"elbow": 0.025, "wrist": 0.05, "hand": 0.055}.get(base)
        if step is not None and _side(n) != 0.0:
            shift[n] = np.array([_side(n) * step, 0.0, 0.0])
    out[:, :, 3] = from_anchors(*chain_shift(shift), zero_scale)
    # 4 shoulder width: collars a little, the whole arm more, chest wider.
    shift = {}
    for n in names:
        base = n.split("_", 1)[-1]
        if base == "collar":
            shift[n] = np.array([_side(n) * 0.008, 0.0, 0.0])
        elif base in arms:
            shift[n] = np.array([_side(n) * 0.03, 0.0, 0.0])
    scale = np.array([0.08 if n == "spine3" else 0.0 for n in names])
    out[:, :, 4] = from_anchors(*chain_shift(shift), scale)
    # 5 hip width: hips and the legs below them move outwards, pelvis wider.
    shift = {n: np.array([_side(n) * 0.02, 0.0, 0.0]) for n in names if kind(n) == "leg"}
    scale = np.array([0.12 if n == "pelvis" else 0.0 for n in names])
    out[:, :, 5] = from_anchors(*chain_shift(shift), scale)
    # 6 torso length: the spine stretches, everything above it rises.
    up = {"spine1": 0.01, "spine2": 0.025, "spine3": 0.04}
    shift = {}
    for n in names:
        if n in up:
            shift[n] = np.array([0.0, up[n], 0.0])
        elif n in ("neck", "head") or kind(n) == "arm":
            shift[n] = np.array([0.0, 0.055, 0.0])
    out[:, :, 6] = from_anchors(*chain_shift(shift), zero_scale)
    # 7 belly: deeper lower torso (front-back radius only).
    depth = {"pelvis": 0.15, "spine1": 0.25, "spine2": 0.2}
    d_scale = np.array([depth.get(n, 0.0) for n in names])
    fwd = np.zeros_like(radial)
    for p in np.unique(part):
        a, b = axes[p]
        _, v = cross_section_axes((b - a) / np.linalg.norm(b - a))
        sel = part == p
        fwd[sel] = np.outer(radial[sel] @ v, v)
    out[:, :, 7] = d_scale[part, None] * fwd
    # 8 head size: bigger head, its top rises.
    shift = {"head_end": np.array([0.0, 0.02, 0.0])}
    scale = np.array([0.12 if n == "head" else 0.0 for n in names])
    out[:, :, 8] = from_anchors(*chain_shift(shift), scale)
    # 9 limb girth: thicker arms and legs, slightly slimmer torso.
    scale = np.array([0.15 if kind(n) in ("arm", "leg") else -0.04 if kind(n) == "torso" else 0.0
                      for n in names])
    out[:, :, 9] = scale[part, None] * radial
    return out


# Where the surface landmarks are: the vertex of the named part nearest to each target point.
_LANDMARK_TARGETS: dict[str, tuple[str, tuple[float, float, float]]] = {
    "nose": ("head", (0.0, 0.64, 0.12)),
    "right_eye": ("head", (-0.035, 0.67, 0.10)),
    "left_eye": ("head", (0.035, 0.67, 0.10)),
    "right_ear": ("head", (-0.09, 0.65, 0.0)),
    "left_ear": ("head", (0.09, 0.65, 0.0)),
    "left_big_toe": ("left_foot", (0.08, -0.97, 0.20)),
    "left_small_toe": ("left_foot", (0.145, -0.97, 0.17)),
    "left_heel": ("left_ankle", (0.10, -0.975, -0.07)),
    "right_big_toe": ("right_foot", (-0.08, -0.97, 0.20)),
    "right_small_toe": ("right_foot", (-0.145, -0.97, 0.17)),
    "right_heel": ("right_ankle", (-0.10, -0.975, -0.07)),
    "left_thumb": ("left_hand", (0.78, 0.44, 0.06)),
    "left_index": ("left_hand", (0.84, 0.45, 0.026)),
    "left_middle": ("left_hand", (0.86, 0.45, 0.0)),
    "left_ring": ("left_hand", (0.84, 0.445, -0.015)),
    "left_pinky": ("left_hand", (0.84, 0.45, -0.03)),
    "right_thumb": ("right_hand", (-0.78, 0.44, 0.06)),
    "right_index": ("right_hand", (-0.84, 0.45, 0.026)),
    "right_middle": ("right_hand", (-0.86, 0.45, 0.0)),
    "right_ring": ("right_hand", (-0.84, 0.445, -0.015)),
    "right_pinky": ("right_hand", (-0.84, 0.45, -0.03)),
    "head_top": ("head", (0.0, 0.82, 0.0)),
}


def _landmarks(verts: np.ndarray, part: np.ndarray) -> np.ndarray:
    ids = []
    for name in LANDMARK_NAMES:
        part_name, target = _LANDMARK_TARGETS[name]
        cand = np.flatnonzero(part == SMPL_JOINT_NAMES.index(part_name))
        dist = np.linalg.norm(verts[cand] - np.asarray(target), axis=1)
        ids.append(int(cand[np.argmin(dist)]))
    return np.asarray(ids, dtype=np.int64)


def build_synthetic_smpl() -> dict[str, np.ndarray]:
    """All arrays of the synthetic model, in SMPL's key names plus our extras.

    SMPL keys (what smplx reads from `data_struct`): f (F,3), v_template (V,3),
    shapedirs (V,3,10), posedirs (V,3,207), J_regressor (24,V), kintree_table (2,24),
    weights (V,24). Extras: part_ids (V,), landmark_ids (22,), joint/landmark/shape names,
    format_version.
    """
    surf, axes = build_surface()
    verts = np.asarray(surf.vertices, dtype=np.float64)
    part = np.asarray(surf.part, dtype=np.int64)
    t = np.asarray(surf.t, dtype=np.float64)
    centre = np.asarray(surf.centre, dtype=np.float64)
    faces = np.concatenate(surf.faces, axis=0)
    v_count = verts.shape[0]

    ring_radius = {}
    regressor = np.zeros((24, v_count))
    for j, ring in surf.ring0.items():
        regressor[j, ring] = 1.0 / len(ring)
        ring_radius[j] = float(np.mean(np.linalg.norm(verts[ring] - centre[ring], axis=1)))
    weights = _skinning_weights(verts, part, axes, ring_radius)
    shapedirs = _shape_directions(verts, part, t, centre, axes)
    kintree = np.stack([np.asarray(SMPL_PARENTS, dtype=np.int64), np.arange(24, dtype=np.int64)])
    return {
        "f": faces.astype(np.int64),
        "v_template": verts.astype(np.float32),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": np.zeros((v_count, 3, 207), dtype=np.float32),
        "J_regressor": regressor.astype(np.float32),
        "kintree_table": kintree,
        "weights": weights.astype(np.float32),
        "part_ids": part,
        "landmark_ids": _landmarks(verts, part),
        "joint_names": np.asarray(SMPL_JOINT_NAMES),
        "landmark_names": np.asarray(LANDMARK_NAMES),
        "shape_names": np.asarray(SHAPE_NAMES),
        "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
    }
