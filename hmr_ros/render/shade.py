"""Drawing meshes: Lambertian shading of the rasterised surface over a background, in numpy.

Conventions as in `raster.py` (camera frame x right, y down, z forward; pixel centres at
integer coordinates); images are RGB uint8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .raster import rasterize


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) of a mesh."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.maximum(norm, 1e-12)


TextureFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(surface coords (N, 3), face-local attribute ids (N,)) -> albedo multiplier (N, 3)."""


@dataclass
class RenderMesh:
    """One object to draw.

    vertices (V, 3) camera frame; faces (F, 3); albedo (V, 3) RGB in [0, 1]; `surface` (V, 3)
    optional object-fixed coordinates (e.g. the rest-pose vertices) that `texture` turns into
    patterns that move with the object; `labels` (V,) optional per-vertex integers (body part
    ids) reported in `RenderResult.label`.
    """

    vertices: np.ndarray
    faces: np.ndarray
    albedo: np.ndarray
    surface: np.ndarray | None = None
    texture: TextureFn | None = None
    labels: np.ndarray | None = None
    smooth: bool = True


@dataclass(frozen=True)
class Light:
    """Directional light: `direction` points FROM the scene TOWARDS the light (camera frame)."""

    direction: tuple[float, float, float] = (-0.3, -0.6, -0.75)
    intensity: float = 0.75
    ambient: float = 0.35


@dataclass(frozen=True)
class RenderResult:
    """image (H, W, 3) uint8 RGB; depth (H, W) float32 (+inf = background); object (H, W)
    int32 index into the meshes (-1 = background); label (H, W) int32 per-vertex label of the
    visible point (-1 where none)."""

    image: np.ndarray
    depth: np.ndarray
    object: np.ndarray
    label: np.ndarray


@dataclass
class _Merged:
    vertices: np.ndarray
    faces: np.ndarray
    owner: np.ndarray  # (F,) mesh index
    offsets: list[int] = field(default_factory=list)


def _merge(meshes: Sequence[RenderMesh]) -> _Merged:
    verts, faces, owner, offsets = [], [], [], []
    base = 0
    for i, m in enumerate(meshes):
        verts.append(np.asarray(m.vertices, dtype=np.float64))
        faces.append(np.asarray(m.faces, dtype=np.int64) + base)
        owner.append(np.full(len(m.faces), i, dtype=np.int64))
        offsets.append(base)
        base += len(m.vertices)
    return _Merged(np.concatenate(verts), np.concatenate(faces), np.concatenate(owner), offsets)


def render(meshes: Sequence[RenderMesh], K: np.ndarray, width: int, height: int,
           background: np.ndarray | None = None, light: Light = Light()) -> RenderResult:
    """Draw meshes over a background with one directional light plus ambient.

    background (H, W, 3) uint8 or None (black). Shading is Lambertian with smooth vertex
    normals (or flat face normals when a mesh sets smooth=False).
    """
    if background is None:
        image = np.zeros((height, width, 3), dtype=np.float32)
    else:
        if background.shape[:2] != (height, width):
            raise ValueError(f"background {background.shape[:2]} != image {(height, width)}")
        image = background.astype(np.float32) / 255.0
    obj = np.full((height, width), -1, dtype=np.int32)
    label = np.full((height, width), -1, dtype=np.int32)
    if not meshes:
        return RenderResult((image * 255).round().astype(np.uint8),
                            np.full((height, width), np.inf, np.float32), obj, label)
    merged = _merge(meshes)
    raster = rasterize(merged.vertices, merged.faces, K, width, height)
    ys, xs = np.nonzero(raster.mask)
    f = raster.face[ys, xs]
    b = raster.bary[ys, xs].astype(np.float64)
    owner = merged.owner[f]
    tri = merged.faces[f]  # (N, 3) merged vertex ids
    light_dir = np.asarray(light.direction, dtype=np.float64)
    light_dir /= np.linalg.norm(light_dir)
    colour = np.zeros((len(f), 3))
    for i, m in enumerate(meshes):
        sel = np.flatnonzero(owner == i)
        if len(sel) == 0:
            continue
        local = tri[sel] - merged.offsets[i]
        bb = b[sel][:, :, None]
        albedo = (np.asarray(m.albedo, dtype=np.float64)[local] * bb).sum(1)
        if m.texture is not None and m.surface is not None:
            coords = (np.asarray(m.surface, dtype=np.float64)[local] * bb).sum(1)
            labels = (m.labels[local[:, 0]] if m.labels is not None
                      else np.zeros(len(sel), dtype=np.int64))
            albedo = albedo * m.texture(coords, labels)
        v = np.asarray(m.vertices, dtype=np.float64)
        if m.smooth:
            vn = vertex_normals(v, np.asarray(m.faces))
            n = (vn[local] * bb).sum(1)
        else:
            t = v[local]
            n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        diffuse = np.clip(n @ light_dir, 0.0, None)
        colour[sel] = albedo * (light.ambient + light.intensity * diffuse)[:, None]
        if m.labels is not None:
            # The label of the nearest corner of the visible face.
            corner = np.argmax(b[sel], axis=1)
            label[ys[sel], xs[sel]] = np.asarray(m.labels)[local[np.arange(len(sel)), corner]]
    image[ys, xs] = np.clip(colour, 0.0, 1.0)
    obj[ys, xs] = owner
    return RenderResult((image * 255.0).round().astype(np.uint8), raster.depth, obj, label)


def box_mesh(centre: Sequence[float], size: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned closed box with outward faces: vertices (8, 3), faces (12, 3)."""
    c = np.asarray(centre, dtype=np.float64)
    h = np.asarray(size, dtype=np.float64) / 2.0
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
                       dtype=np.float64)
    verts = c + corners * h
    # Corner index = 4*(x>0) + 2*(y>0) + (z>0); two triangles per side, outward winding.
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = []
    for a, b, cc, d in quads:
        faces += [(a, b, cc), (a, cc, d)]
    faces = np.asarray(faces, dtype=np.int64)
    # Make sure every face points away from the centre.
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = np.einsum("ij,ij->i", n, tri.mean(1) - c) < 0
    faces[flip] = faces[flip][:, ::-1]
    return verts, faces
