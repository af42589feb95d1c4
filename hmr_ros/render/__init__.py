"""The CPU body renderer: z-buffered rasterisation, visibility and shading in numpy.

A part of its own, below both its users: the synthetic world draws its scenes with it and
adaptation (DAPA's synthetic crops, the flow term's visibility test) draws estimated bodies
with it, so neither depends on the other. It builds on numpy alone.

  raster  `Raster`, `rasterize`; `vertex_visibility`, `on_surface`
  shade   `RenderMesh`, `Light`, `RenderResult`, `render`; `vertex_normals`, `box_mesh`
"""

from .raster import Raster, on_surface, rasterize, vertex_visibility
from .shade import Light, RenderMesh, RenderResult, TextureFn, box_mesh, render, vertex_normals

__all__ = [
    "Light",
    "Raster",
    "RenderMesh",
    "RenderResult",
    "TextureFn",
    "box_mesh",
    "on_surface",
    "rasterize",
    "render",
    "vertex_normals",
    "vertex_visibility",
]
