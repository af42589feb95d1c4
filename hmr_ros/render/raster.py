"""Z-buffered triangle rasterisation and the visibility queries built on it, in numpy.

Conventions: camera frame x right, y down, z forward (metres); pixel centres at integer
coordinates (pixel (row i, col j) covers [j-0.5, j+0.5] x [i-0.5, i+0.5]), as in CameraInfo's K
and OpenCV.

The rasteriser is vectorised over (triangle, pixel) pairs inside each triangle's bounding box,
so its cost grows with the covered area, not with a Python loop over triangles: a 1,500-vertex
body at 640x480 takes a few milliseconds.

Vertex visibility is a z-buffer test of a projected mesh against itself: a vertex is visible
when the nearest surface at its pixel is (within a tolerance) at the vertex's own depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import perspective_project

# Beyond this many (triangle, pixel) pairs per chunk, memory grows without a speed benefit.
_MAX_PAIRS = 1 << 21


@dataclass(frozen=True)
class Raster:
    """Per-pixel result of rasterisation.

    depth (H, W) float32, +inf where nothing was drawn; face (H, W) int32 index into the faces
    given to `rasterize`, -1 where empty; bary (H, W, 3) float32 perspective-correct
    barycentric coordinates of the visible point in that face.
    """

    depth: np.ndarray
    face: np.ndarray
    bary: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.face >= 0


def rasterize(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int,
              near: float = 0.05, cull_back: bool = True) -> Raster:
    """Z-buffer rasterisation of a triangle mesh.

    vertices (V, 3) in the camera frame, faces (F, 3), K (3, 3). Faces with a vertex nearer
    than `near` are dropped (no clipping: scenes keep people well in front of the camera).
    With `cull_back`, faces whose outward normal points away from the camera are skipped,
    which is exact for closed outward-oriented meshes and halves the work.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    depth = np.full((height, width), np.inf, dtype=np.float64)
    face_map = np.full((height, width), -1, dtype=np.int64)
    bary_map = np.zeros((height, width, 3), dtype=np.float32)
    if len(faces) == 0:
        return Raster(depth.astype(np.float32), face_map.astype(np.int32), bary_map)

    uv = perspective_project(vertices, K, min_depth=None)
    tri = vertices[faces]  # (F, 3, 3)
    keep = np.all(tri[:, :, 2] > near, axis=1)
    if cull_back:
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        keep &= np.einsum("ij,ij->i", normal, tri.mean(axis=1)) < 0.0
    fid = np.flatnonzero(keep)
    p = uv[faces[fid]]  # (F', 3, 2)
    z = tri[fid, :, 2]
    # Pixel centres covered by each triangle's bounding box.
    x0 = np.clip(np.ceil(p[:, :, 0].min(1) - 0.5), 0, width).astype(np.int64)
    x1 = np.clip(np.floor(p[:, :, 0].max(1) + 0.5), -1, width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(p[:, :, 1].min(1) - 0.5), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(p[:, :, 1].max(1) + 0.5), -1, height - 1).astype(np.int64)
    bw = np.maximum(x1 - x0 + 1, 0)
    bh = np.maximum(y1 - y0 + 1, 0)
    area = bw * bh
    # Signed doubled area in screen space; degenerate (edge-on) triangles cover nothing.
    d = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1])
         - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1]))
    ok = (area > 0) & (np.abs(d) > 1e-12)
    idx = np.flatnonzero(ok)

    start = 0
    while start < len(idx):
        # Chunk so that the pair arrays stay bounded.
        csum = np.cumsum(area[idx[start:]])
        stop = start + max(1, int(np.searchsorted(csum, _MAX_PAIRS, side="right")))
        chunk = idx[start:stop]
        start = stop
        counts = area[chunk]
        rep = np.repeat(np.arange(len(chunk)), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        t = chunk[rep]
        px = x0[t] + offset % bw[t]
        py = y0[t] + offset // bw[t]
        # Edge functions -> screen-space barycentrics.
        pa, pb, pc = p[t, 0], p[t, 1], p[t, 2]
        w0 = ((pb[:, 0] - px) * (pc[:, 1] - py) - (pc[:, 0] - px) * (pb[:, 1] - py)) / d[t]
        w1 = ((pc[:, 0] - px) * (pa[:, 1] - py) - (pa[:, 0] - px) * (pc[:, 1] - py)) / d[t]
        w2 = 1.0 - w0 - w1
        # A small tolerance closes cracks along shared edges from rounding.
        inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
        if not inside.any():
            continue
        t, px, py = t[inside], px[inside], py[inside]
        w = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)
        # Perspective-correct interpolation: 1/z is affine in screen space.
        wz = w / z[t]
        inv_z = wz.sum(1)
        zz = 1.0 / inv_z
        pix = py * width + px
        flat_depth = depth.reshape(-1)
        np.minimum.at(flat_depth, pix, zz)
        win = zz <= flat_depth[pix]
        # Ties between faces at one pixel: any winner is fine, assignment keeps one.
        face_map.reshape(-1)[pix[win]] = fid[t[win]]
        bary_map.reshape(-1, 3)[pix[win]] = (wz[win] / inv_z[win, None]).astype(np.float32)
    return Raster(depth.astype(np.float32), face_map.astype(np.int32), bary_map)


# A vertex at most this far (relative depth) behind the z-buffer's surface at its pixel still
# counts as visible: a vertex lies on the faces around it, which the rasteriser samples only at
# pixel centres, so the depth there differs from the vertex's by the local slope times up to
# half a pixel. Measured on the synthetic body at 3 m, 160 px: 0.5% (1.5 cm) sees 84% of the
# vertices facing the camera and 3% of those facing away (silhouette); 2% already let 21% of
# the back through (thin limbs), 0 only 43% of the front.
VISIBILITY_TOLERANCE = 0.005


def on_surface(points: np.ndarray, uv: np.ndarray, raster: Raster,
               tolerance: float = VISIBILITY_TOLERANCE) -> np.ndarray:
    """(N,) bool: points (N, 3) projecting to uv (N, 2) are on the z-buffer's surface."""
    h, w = raster.depth.shape
    px = np.round(uv).astype(np.int64)
    inside = (points[:, 2] > 0) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) \
        & (px[:, 1] < h)
    out = np.zeros(len(points), dtype=bool)
    i = np.flatnonzero(inside)
    z = raster.depth[px[i, 1], px[i, 0]]
    out[i] = points[i, 2] <= z * (1.0 + tolerance)
    return out


def vertex_visibility(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int,
                      height: int, tolerance: float = VISIBILITY_TOLERANCE) -> np.ndarray:
    """(V,) bool: which vertices (V, 3) of a mesh are seen by a width x height camera K, by a
    z-buffer test of the mesh against itself (inside the image, not behind its own surface)."""
    v = np.asarray(vertices, dtype=np.float64)
    raster = rasterize(v, faces, K, width, height)
    return on_surface(v, perspective_project(v, K, min_depth=None), raster, tolerance)
