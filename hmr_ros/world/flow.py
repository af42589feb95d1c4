"""Exact image motion of rendered surfaces: ground-truth optical flow of the synthetic world.

The renderer's z-buffer says which face, and where in it (perspective-correct barycentrics),
each pixel sees. The same surface point in the next frame is the same barycentric mix of the
same face's vertices there (the mesh keeps its topology), so its projection minus the pixel
centre is the true flow at that pixel: no estimation, no interpolation error beyond float
rounding. Pixels whose surface point is hidden in the next frame (by the person's own body or
by another object) are reported separately, as in the occlusion masks of flow data sets.
Vertex visibility (a mesh's z-buffer test against itself) is the renderer's
(`render.vertex_visibility`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..geometry import perspective_project
from ..render.raster import on_surface, rasterize
from ..render.shade import box_mesh

# For the occlusion mask of the true flow (surface points between pixel centres, whose depth
# the nearest pixel's z-buffer only approximates): 2%, still far below the gap between a
# person and what passes in front of them.
OCCLUSION_TOLERANCE = 0.02


@dataclass(frozen=True)
class TrueFlow:
    """Ground-truth flow from frame a to frame b.

    flow (H, W, 2) float32 pixels (dx, dy), 0 where `mask` is False; mask (H, W) bool: a
    surface is drawn there in frame a; owner (H, W) int32 index of the mesh seen there (-1
    background); occluded (H, W) bool: that surface point is hidden (or off-image) in frame b.
    """

    flow: np.ndarray
    mask: np.ndarray
    owner: np.ndarray
    occluded: np.ndarray


def _merge(vertices: Sequence[np.ndarray], faces: Sequence[np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base, vs, fs, owner = 0, [], [], []
    for i, (v, f) in enumerate(zip(vertices, faces)):
        vs.append(np.asarray(v, dtype=np.float64))
        fs.append(np.asarray(f, dtype=np.int64) + base)
        owner.append(np.full(len(f), i, dtype=np.int64))
        base += len(v)
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(owner)


def true_flow(vertices_a: Sequence[np.ndarray], vertices_b: Sequence[np.ndarray],
              faces: Sequence[np.ndarray], K: np.ndarray, width: int, height: int,
              K_b: np.ndarray | None = None) -> TrueFlow:
    """The exact flow of every drawn pixel of frame a into frame b.

    vertices_a[i], vertices_b[i] (V_i, 3) camera-frame vertices of mesh i in frames a and b
    (same topology, faces[i] (F_i, 3)); K (3, 3) the intrinsics of frame a, K_b of frame b
    (default K). Meshes other than people (occluders) may be given so that they hide what is
    behind them.
    """
    K_b = K if K_b is None else K_b
    va, f, owner_f = _merge(vertices_a, faces)
    vb, _, _ = _merge(vertices_b, faces)
    if va.shape != vb.shape:
        raise ValueError(f"frames a and b have different meshes: {va.shape} vs {vb.shape}")
    ra = rasterize(va, f, K, width, height)
    ys, xs = np.nonzero(ra.mask)
    fid = ra.face[ys, xs]
    bary = ra.bary[ys, xs].astype(np.float64)  # (N, 3)
    pb = np.einsum("nk,nkd->nd", bary, vb[f[fid]])  # the same surface points in frame b
    uv_b = perspective_project(pb, K_b, min_depth=None)
    flow = np.zeros((height, width, 2), dtype=np.float32)
    flow[ys, xs, 0] = uv_b[:, 0] - xs
    flow[ys, xs, 1] = uv_b[:, 1] - ys
    owner = np.full((height, width), -1, dtype=np.int32)
    owner[ys, xs] = owner_f[fid]
    # Hidden in b: off the image, or something nearer at its pixel there.
    rb = rasterize(vb, f, K_b, width, height)
    occluded = np.zeros((height, width), dtype=bool)
    occluded[ys, xs] = ~on_surface(pb, uv_b, rb, OCCLUSION_TOLERANCE)
    return TrueFlow(flow, ra.mask.copy(), owner, occluded)


def sequence_flow(seq, i: int) -> TrueFlow:
    """Ground-truth flow of a `scene.SyntheticSequence` from frame i to i + 1: its people and
    its occluders, under its moving camera."""
    if not 0 <= i < len(seq) - 1:
        raise IndexError(f"flow from frame {i} needs frames {i} and {i + 1} of 0..{len(seq) - 1}")
    verts: list[list[np.ndarray]] = [[], []]
    faces: list[np.ndarray] = []
    for k, j in enumerate((i, i + 1)):
        rot, pos = seq.pose(j)
        t = j / seq.fps
        for p in seq.people:
            verts[k].append(p.state(j, rot, pos).vertices)
            if k == 0:
                faces.append(p.faces)
        for occ in seq.occluders:
            v, f = box_mesh(occ.origin + occ.velocity * (t - occ.start), occ.size)
            verts[k].append((v - pos) @ rot)
            if k == 0:
                faces.append(f)
    cam = seq.camera
    return true_flow(verts[0], verts[1], faces, cam.K, cam.width, cam.height)
