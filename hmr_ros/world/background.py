"""Procedural backgrounds, anchored in the world so that camera motion moves them correctly.

Each pixel's ray (from K and the camera pose) is intersected with a floor plane (y = 0, world
y up) and, indoors, with the walls and ceiling of a room; outdoors, rays that miss the ground
see a skyline of buildings and trees and the sky. Textures are procedural (tiles, posters,
windows, noise), so no image files are needed and the same seed gives the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .appearance import _hash01, value_noise

KINDS = ("plain_indoor", "cluttered_indoor", "outdoor")


@dataclass(frozen=True)
class BackgroundStyle:
    """What one sequence's surroundings look like (colours RGB in [0, 1])."""

    kind: str
    seed: int
    centre: tuple[float, float] = (0.0, 0.0)  # room centre (world x, z), metres
    half_extent: float = 8.0  # room half size, metres
    ceiling: float = 3.0  # room height, metres
    wall: tuple[float, float, float] = (0.8, 0.8, 0.78)
    floor: tuple[float, float, float] = (0.55, 0.55, 0.55)
    accent: tuple[float, float, float] = (0.3, 0.3, 0.6)
    tile: float = 0.6  # floor tile size, metres


def sample_background(rng: np.random.Generator, kind: str,
                      centre: tuple[float, float] = (0.0, 0.0),
                      half_extent: float = 8.0) -> BackgroundStyle:
    """A random style of `kind` (`mixed` picks one of the kinds)."""
    if kind == "mixed":
        kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind not in KINDS:
        raise ValueError(f"background kind {kind!r} not in {KINDS + ('mixed',)}")
    seed = int(rng.integers(1 << 30))
    if kind == "plain_indoor":
        grey = rng.uniform(0.62, 0.82)
        tint = rng.uniform(-0.03, 0.03, 3)
        return BackgroundStyle(kind, seed, centre, half_extent, 3.2,
                               tuple(np.clip(grey + tint, 0, 1)),
                               tuple(np.clip(grey - 0.2 + tint, 0, 1)),
                               tuple(np.clip(grey - 0.1 + tint, 0, 1)), 1.0)
    if kind == "cluttered_indoor":
        return BackgroundStyle(kind, seed, centre, half_extent, rng.uniform(2.6, 3.2),
                               tuple(rng.uniform(0.35, 0.9, 3)), tuple(rng.uniform(0.2, 0.6, 3)),
                               tuple(rng.uniform(0.1, 0.9, 3)), rng.uniform(0.3, 0.8))
    return BackgroundStyle(kind, seed, centre, half_extent, 0.0,
                           tuple(rng.uniform(0.4, 0.8, 3)), tuple(rng.uniform(0.25, 0.5, 3)),
                           tuple(rng.uniform(0.1, 0.7, 3)), rng.uniform(0.5, 2.0))


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Unnormalised camera-frame ray directions of all pixel centres, (H, W, 3) float32.

    K is a pinhole matrix (upper triangular, K[2, 2] = 1), as in CameraInfo.
    """
    K = np.asarray(K, dtype=np.float64)
    y = ((np.arange(height) - K[1, 2]) / K[1, 1]).astype(np.float32)
    u = np.arange(width, dtype=np.float32)
    x = (u[None, :] - np.float32(K[0, 2]) - np.float32(K[0, 1]) * y[:, None]) / np.float32(K[0, 0])
    out = np.empty((height, width, 3), dtype=np.float32)
    out[..., 0] = x
    out[..., 1] = y[:, None]
    out[..., 2] = 1.0
    return out


def _rotate(v: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """rot @ each row of v (N, 3), float32; a 3x3 matmul through BLAS is slower for this."""
    r = np.asarray(rot, dtype=np.float32)
    return v[:, 0:1] * r[:, 0] + v[:, 1:2] * r[:, 1] + v[:, 2:3] * r[:, 2]


class Backdrop:
    """Renders one style's background for any camera; textures are built once per style.

    The floor (procedural tiles, grass, slabs) is baked into a square texture over the room or
    scene, and the outdoor skyline into a panorama over azimuth and elevation; each frame then
    only intersects pixel rays and looks textures up, which keeps a 640x480 frame at tens of
    milliseconds. Walls are evaluated directly (posters and doors are a few cheap hashes).
    """

    def __init__(self, style: BackgroundStyle, floor_texels: int = 512,
                 sky_size: tuple[int, int] = (1024, 256), baked: bool = True) -> None:
        self.style = style
        self.baked = baked  # False: evaluate textures per pixel (cheaper for a single view)
        self.floor_texels = floor_texels
        self.sky_size = sky_size
        self._floor_tex: np.ndarray | None = None
        self._sky_tex: np.ndarray | None = None
        self._rays_key: tuple | None = None
        self._rays = np.zeros((0, 3), dtype=np.float32)

    # Sky panorama: azimuth [-pi, pi) across, elevation [EL_MIN, EL_MAX] down the rows.
    EL_MIN, EL_MAX = -0.6, 1.4

    def _floor_texture(self) -> np.ndarray:
        if self._floor_tex is None:
            n, e = self.floor_texels, self.style.half_extent
            c = (np.arange(n) + 0.5) / n * 2 * e - e
            x, z = np.meshgrid(c + self.style.centre[0], c + self.style.centre[1])
            pts = np.stack([x.ravel(), np.zeros(n * n), z.ravel()], axis=1)
            self._floor_tex = _floor(self.style, pts).reshape(n, n, 3).astype(np.float32)
        return self._floor_tex

    def _sky_texture(self) -> np.ndarray:
        if self._sky_tex is None:
            w, h = self.sky_size
            az = (np.arange(w) + 0.5) / w * 2 * np.pi - np.pi
            el = self.EL_MAX - (np.arange(h) + 0.5) / h * (self.EL_MAX - self.EL_MIN)
            a, e = np.meshgrid(az, el)
            d = np.stack([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)], axis=-1)
            self._sky_tex = _skyline(self.style, d.reshape(-1, 3)).reshape(h, w, 3).astype(
                np.float32)
        return self._sky_tex

    def render(self, K: np.ndarray, cam_to_world: np.ndarray, cam_pos: np.ndarray, width: int,
               height: int, brightness: float = 1.0,
               shadows: Sequence[tuple[float, float, float]] = ()) -> np.ndarray:
        """The background image (H, W, 3) uint8 RGB seen by a camera.

        cam_to_world (3, 3) rotates camera-frame directions (x right, y down, z forward) into
        the world (y up); cam_pos (3,) is the camera centre. `shadows` are soft dark discs on
        the floor: (x, z, radius) in metres, e.g. under people.
        """
        style = self.style
        key = (width, height, np.asarray(K, dtype=np.float64).tobytes())
        if self._rays_key != key:
            rays = pixel_rays(K, width, height).reshape(-1, 3)
            self._rays = rays / np.sqrt((rays * rays).sum(1, keepdims=True))
            self._rays_key = key
        d = _rotate(self._rays, cam_to_world)
        c = np.asarray(cam_pos, dtype=np.float32)
        n = len(d)
        colour = np.zeros((n, 3), dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_floor = np.where(d[:, 1] < -1e-6, -c[1] / d[:, 1], np.inf)
        indoor = style.kind != "outdoor"
        surface = np.zeros(n, dtype=np.int8)  # 0 sky, 1 floor, 2 wall, 3 ceiling
        if indoor:
            with np.errstate(divide="ignore", invalid="ignore"):
                t_ceil = np.where(d[:, 1] > 1e-6, (style.ceiling - c[1]) / d[:, 1], np.inf)
                tx = np.where(np.abs(d[:, 0]) > 1e-9,
                              (style.centre[0] + np.sign(d[:, 0]) * style.half_extent - c[0])
                              / d[:, 0], np.inf)
                tz = np.where(np.abs(d[:, 2]) > 1e-9,
                              (style.centre[1] + np.sign(d[:, 2]) * style.half_extent - c[2])
                              / d[:, 2], np.inf)
            t_wall = np.minimum(tx, tz)
            t_hit = np.minimum(np.minimum(t_floor, t_ceil), t_wall)
            surface[t_hit == t_wall] = 2
            surface[t_hit == t_ceil] = 3
            surface[t_hit == t_floor] = 1
        else:
            t_hit = np.where(t_floor < 200.0, t_floor, np.inf)
            surface[np.isfinite(t_hit)] = 1
        p = c + d * np.where(np.isfinite(t_hit), t_hit, 0.0).astype(np.float32)[:, None]
        p = p.astype(np.float64)  # texture hashes need exact cell indices

        floor = surface == 1
        if floor.any():
            colour[floor] = self._lookup_floor(p[floor])
            if shadows:
                shade = np.ones(int(floor.sum()), dtype=np.float32)
                for sx, sz, r in shadows:
                    dist2 = (p[floor, 0] - sx) ** 2 + (p[floor, 2] - sz) ** 2
                    shade *= 1.0 - 0.45 * np.exp(-dist2 / (2 * r * r))
                colour[floor] *= shade[:, None]
        wall = surface == 2
        if wall.any():
            colour[wall] = _wall(style, p[wall], tx[wall] <= tz[wall])
        colour[surface == 3] = 0.92 * np.asarray(style.wall)
        sky = surface == 0
        if sky.any():
            colour[sky] = self._lookup_sky(d[sky])
        if not indoor:
            # Haze towards the horizon hides the aliasing of far ground texture.
            far = floor & (t_hit > 15.0)
            fog = np.clip((t_hit[far] - 15.0) / 60.0, 0.0, 0.85)[:, None]
            colour[far] = (1 - fog) * colour[far] + fog * np.array([0.75, 0.8, 0.85])
        out = np.clip(colour * brightness, 0.0, 1.0).reshape(height, width, 3)
        return (out * 255.0).round().astype(np.uint8)

    def _lookup_floor(self, p: np.ndarray) -> np.ndarray:
        if not self.baked:
            return _floor(self.style, p)
        tex = self._floor_texture()
        n, e = self.floor_texels, self.style.half_extent
        u = ((p[:, 0] - self.style.centre[0] + e) / (2 * e) * n - 0.5).astype(np.float32)
        v = ((p[:, 2] - self.style.centre[1] + e) / (2 * e) * n - 0.5).astype(np.float32)
        return _sample(tex, u, v, cv2.BORDER_REFLECT)

    def _lookup_sky(self, d: np.ndarray) -> np.ndarray:
        if not self.baked:
            return _skyline(self.style, d)
        tex = self._sky_texture()
        w, h = self.sky_size
        az = np.arctan2(d[:, 0], d[:, 2])
        el = np.arctan2(d[:, 1], np.linalg.norm(d[:, [0, 2]], axis=1))
        u = ((az + np.pi) / (2 * np.pi) * w - 0.5).astype(np.float32)
        v = ((self.EL_MAX - el) / (self.EL_MAX - self.EL_MIN) * h - 0.5).astype(np.float32)
        return _sample(tex, u, v, cv2.BORDER_WRAP)


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray, border: int) -> np.ndarray:
    """Bilinear lookup of texture (H, W, 3) at float texel coordinates u, v (N,)."""
    n = len(u)
    cols = 1024  # remap's maps must stay below 32767 in each dimension
    pad = (-n) % cols
    mu = np.pad(u, (0, pad)).reshape(-1, cols)
    mv = np.pad(v, (0, pad)).reshape(-1, cols)
    out = cv2.remap(tex, mu, mv, cv2.INTER_LINEAR, borderMode=border)
    return out.reshape(-1, 3)[:n]


def render_background(style: BackgroundStyle, K: np.ndarray, cam_to_world: np.ndarray,
                      cam_pos: np.ndarray, width: int, height: int, brightness: float = 1.0,
                      shadows: Sequence[tuple[float, float, float]] = ()) -> np.ndarray:
    """One view of a style, textures evaluated per pixel (a Backdrop bakes them instead, which
    pays off when rendering many frames of one style)."""
    return Backdrop(style, baked=False).render(K, cam_to_world, cam_pos, width, height,
                                               brightness, shadows)


def _floor(style: BackgroundStyle, p: np.ndarray) -> np.ndarray:
    base = np.asarray(style.floor)
    xz = p[:, [0, 2]]
    if style.kind == "outdoor":
        # Grass or pavement patches with a path of slabs.
        grass = value_noise(xz, 6.0, style.seed) > 0.5
        noise = value_noise(xz, 0.4, style.seed + 1)
        g = np.array([0.25, 0.45, 0.18]) * (0.75 + 0.5 * noise[:, None])
        pave = base * (0.8 + 0.35 * noise[:, None])
        slab = np.floor(xz / style.tile).astype(np.int64)
        pave *= (0.9 + 0.2 * _hash01(slab[:, 0], slab[:, 1], 0, style.seed))[:, None]
        return np.where(grass[:, None], g, pave)
    cell = np.floor(xz / style.tile).astype(np.int64)
    frac = xz / style.tile - cell
    grout = (np.minimum(frac, 1 - frac).min(1) < 0.03)
    checker = ((cell[:, 0] + cell[:, 1]) % 2 == 0)
    shade = np.where(checker, 1.0, 0.93)
    if style.kind == "cluttered_indoor":
        shade = shade * (0.85 + 0.3 * value_noise(xz, 1.5, style.seed)) \
            * (0.9 + 0.2 * _hash01(cell[:, 0], cell[:, 1], 1, style.seed))
    out = base * shade[:, None]
    out[grout] *= 0.75
    return out


def _wall(style: BackgroundStyle, p: np.ndarray, on_x_wall: np.ndarray) -> np.ndarray:
    base = np.asarray(style.wall)
    u = np.where(on_x_wall, p[:, 2], p[:, 0])  # coordinate along the wall
    h = p[:, 1]
    out = base * (0.9 + 0.1 * np.clip(h / max(style.ceiling, 1e-3), 0, 1))[:, None]
    # A skirting board at the bottom.
    out[h < 0.1] = base * 0.6
    if style.kind != "cluttered_indoor":
        return out
    # Posters, shelves, doors: one item per wall cell, chosen by hashing the cell.
    side = np.where(on_x_wall, 1, 2)
    cu = np.floor(u / 1.3).astype(np.int64)
    cv = np.floor(h / 1.0).astype(np.int64)
    pick = _hash01(cu, cv, side, style.seed)
    fu = u / 1.3 - cu
    fv = h / 1.0 - cv
    inner = (fu > 0.15) & (fu < 0.85) & (fv > 0.2) & (fv < 0.85)
    poster = inner & (pick < 0.35) & (cv >= 1)
    hue = np.stack([_hash01(cu, cv, side + 10 * k, style.seed) for k in range(3)], axis=1)
    out[poster] = 0.15 + 0.8 * hue[poster]
    door = (pick > 0.85) & (cv <= 1) & (fu > 0.2) & (fu < 0.8) & (h < 2.1)
    out[door] = np.asarray(style.accent) * 0.6
    shelf = (pick > 0.55) & (pick < 0.7) & (np.abs(fv - 0.5) < 0.04)
    out[shelf] = base * 0.45
    return out


def _skyline(style: BackgroundStyle, d: np.ndarray) -> np.ndarray:
    az = np.arctan2(d[:, 0], d[:, 2])
    el = np.arctan2(d[:, 1], np.linalg.norm(d[:, [0, 2]], axis=1))
    sky = np.array([0.55, 0.7, 0.92]) + np.clip(el, 0, 1)[:, None] * np.array([-0.25, -0.2, 0.0])
    out = np.broadcast_to(sky, (len(d), 3)).copy()
    # Buildings: heights per azimuth bin, windows on a grid.
    bins = 48
    b = np.floor((az + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
    height = 0.05 + 0.3 * _hash01(b, 0, 0, style.seed) ** 1.5
    build = el < height
    tone = 0.35 + 0.5 * _hash01(b, 1, 0, style.seed)
    bcol = np.asarray(style.wall) * tone[:, None]
    wu = np.floor((az + np.pi) / (2 * np.pi) * bins * 6).astype(np.int64)
    wv = np.floor(el / 0.02).astype(np.int64)
    window = ((wu % 2 == 0) & (wv % 2 == 0))
    bcol[window] *= 0.55
    out[build] = bcol[build]
    # Trees in front of the buildings, near the horizon.
    tree = (value_noise(np.stack([az * 8, el * 20], 1), 1.0, style.seed + 3) > 0.55) \
        & (el < 0.12 + 0.05 * _hash01(b, 2, 0, style.seed))
    leaf = value_noise(np.stack([az * 80, el * 80], 1), 1.0, style.seed + 4)
    out[tree] = np.array([0.15, 0.35, 0.12]) * (0.7 + 0.6 * leaf[tree])[:, None]
    return out
