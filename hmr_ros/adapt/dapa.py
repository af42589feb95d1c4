"""DAPA's target-look generator: labelled synthetic crops that look like the target camera's.

Domain Adaptive 3D Pose Augmentation (Weng, Wang, Kanazawa, Yeung) perturbs the poses the model
estimates on target frames in a pose prior's latent space, renders bodies in those poses with
textures and backgrounds taken from the target images, and supervises the model on the renders,
whose 3D truth is known. Here, per tracked person:

- `TargetLook.observe`: the current estimate's body is rasterised into the person's crop;
  the pixels where a body part is the visible surface (z-buffer: occluded vertices are
  ignored) give its colour samples; per body part the median over the recent crops is
  kept. The crop with the body's silhouette (dilated) masked is stored for the background.
- `TargetLook.background`: the per-pixel median of the recent masked crops; pixels hidden in
  every one of them are in-painted (OpenCV).
- `DapaGenerator.generate`: theta~ = Dec(Enc(theta_reg) * (1 + s * eps)) (or a prior sample
  for the `random` ablation), the estimate's own shape, global orientation and crop camera;
  the CPU renderer (`hmr_ros/render/`) draws the body with the part colours (or plain grey)
  over the background, at the model's crop size. The 2D targets are the body's points
  projected through the very camera that rendered it, so they are exact.

Everything here runs on the adaptation thread (the worker calls it between steps); the
inference thread never sees it.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from ..body import BodyModel
from ..body.pose_vae import PoseVAE, perturb_pose, sample_poses
from ..config import AdaptConfig
from ..data.crop import crop_matrix
from ..geometry import matrix_to_axis_angle
from ..render import Light, RenderMesh, rasterize, render
from . import losses as L

PLAIN_ALBEDO = 0.6  # grey of the `plain` texture ablation
# The renderer shades albedo by ambient + intensity * cos; the sampled colours are already
# shaded, so a mostly ambient light keeps them near what the camera saw.
DAPA_LIGHT = Light(direction=(-0.3, -0.6, -0.75), intensity=0.3, ambient=0.8)
ALBEDO_GAIN = 1.0 / 0.95  # undoes the light's mean gain on a typical front-facing surface
MASK_DILATE = 3  # px (at 128 px crops; scaled with the crop) around the silhouette


@dataclass(frozen=True)
class SyntheticBatch:
    """Rendered crops with their exact truth.

    images (B, 3, R, R) in [0, 1]; rotmat (B, 24, 3, 3); betas (B, 10); points3d (B, 46, 3)
    model frame (root-centred before comparison); keypoints (B, 46, 2) normalised crop
    coordinates of the points as rendered; box (B, 3); K (B, 3, 3) of the source frames (the
    render camera is crop_matrix(box) @ K); cam (B, 3) the crop camera used.
    """

    images: Tensor
    rotmat: Tensor
    betas: Tensor
    points3d: Tensor
    keypoints: Tensor
    box: Tensor
    K: Tensor
    cam: Tensor

    def to(self, device: torch.device) -> SyntheticBatch:
        if self.images.device == device:
            return self
        return SyntheticBatch(*(t.to(device) for t in (
            self.images, self.rotmat, self.betas, self.points3d, self.keypoints, self.box,
            self.K, self.cam)))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def synthetic_loss(body: BodyModel, out, syn: SyntheticBatch) -> tuple[Tensor, dict[str, Tensor]]:
    """L_syn = 3D (root-centred points) + pose (rotation matrices) + 2D (crop-normalised
    reprojection through the render camera) + 0.01 * shape (betas), each a batch mean; the
    3D and pose terms are those of the source replay (`methods._replay_loss`)."""
    pred = body.forward_rotmat(out.rotmat, out.betas).points
    gt = syn.points3d
    l3d = ((pred - pred[:, :1]) - (gt - gt[:, :1])).pow(2).sum(-1).mean()
    lpose = (out.rotmat - syn.rotmat).pow(2).mean()
    uv = L.project_to_crop(pred, out.cam, syn.box, syn.K)
    l2d = (uv - syn.keypoints).pow(2).mean()
    lshape = (out.betas - syn.betas).pow(2).mean()
    total = l3d + lpose + l2d + 0.01 * lshape
    return total, {"syn_3d": l3d, "syn_pose": lpose, "syn_2d": l2d, "syn_shape": lshape}


def sample_part_colours(crop: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                        K: np.ndarray, part_ids: np.ndarray, n_parts: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per body part, the median colour of the crop's pixels where that part is the visible
    surface.

    crop (R, R, 3) uint8; vertices (V, 3) camera frame; faces (F, 3); K the crop's camera;
    part_ids (V,). The z-buffer decides what is visible, so occluded vertices (the far side
    of the body, a limb behind the torso) never give a sample; each covered pixel belongs to
    the part of its face's nearest corner (the renderer's labels). Sampling pixels rather than
    the vertices' own pixels matters at our sizes: at 128 px about half of a part's vertices
    lie on its border and round onto a neighbour's pixels. Pixels on the silhouette's edge
    are left out (at 64 px and more) so the background does not bleed in.

    Returns (colours (n_parts, 3) float in [0, 1], counts (n_parts,) pixels per part (0: no
    colour, the row is NaN), silhouette mask (R, R) bool)."""
    size = crop.shape[0]
    raster = rasterize(vertices, faces, K, size, size)
    mask = raster.mask
    inner = mask
    if size >= 64:
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ys, xs = np.nonzero(inner)
    f = raster.face[ys, xs]
    corner = np.argmax(raster.bary[ys, xs], axis=1)
    parts = part_ids[faces[f, corner]]
    pix = crop[ys, xs].astype(np.float64) / 255.0
    colours = np.full((n_parts, 3), np.nan)
    counts = np.bincount(parts, minlength=n_parts)[:n_parts]
    for p in np.flatnonzero(counts):
        colours[p] = np.median(pix[parts == p], axis=0)
    return colours, counts, mask


class TargetLook:
    """One tracked person's look: recent part colours and masked crops."""

    def __init__(self, n_parts: int, history: int) -> None:
        self.n_parts = n_parts
        self.colours: deque[np.ndarray] = deque(maxlen=history)
        self.crops: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=history)

    def observe(self, crop: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                K: np.ndarray, part_ids: np.ndarray) -> None:
        """crop (R, R, 3) uint8; vertices (V, 3) of the estimate in the camera frame; K the
        crop's camera (crop_matrix(box, R) @ K)."""
        colours, _, mask = sample_part_colours(crop, vertices, faces, K, part_ids,
                                               self.n_parts)
        self.colours.append(colours)
        r = max(1, round(MASK_DILATE * crop.shape[0] / 128))
        mask = cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
        self.crops.append((crop, mask))

    def part_colours(self) -> np.ndarray:
        """(n_parts, 3) in [0, 1]: the median over recent crops; parts never seen take the
        median of the seen ones (grey when nothing was seen)."""
        stack = np.stack(list(self.colours)) if self.colours else np.full(
            (1, self.n_parts, 3), np.nan)
        seen = np.isfinite(stack).all(-1)  # (N, parts)
        out = np.full((self.n_parts, 3), np.nan)
        for p in range(self.n_parts):
            if seen[:, p].any():
                out[p] = np.median(stack[seen[:, p], p], axis=0)
        known = np.isfinite(out).all(-1)
        fill = np.median(out[known], axis=0) if known.any() else np.full(3, PLAIN_ALBEDO)
        out[~known] = fill
        return out

    def background(self) -> np.ndarray:
        """(R, R, 3) uint8: per pixel the median of the recent crops where the person was not;
        in-painted where the person covered the pixel in every crop."""
        crops = np.stack([c for c, _ in self.crops]).astype(np.float32)  # (N, R, R, 3)
        masks = np.stack([m for _, m in self.crops])  # (N, R, R)
        # Masked median by one sort (numpy's nanmedian took 70 ms here): NaN sorts last, so
        # the n valid values of a pixel are its first n.
        data = np.sort(np.where(masks[..., None], np.nan, crops), axis=0)
        n = (~masks).sum(0)[..., None].repeat(3, -1)  # (R, R, 3) valid crops per pixel
        holes = n[..., 0] == 0
        lo = np.take_along_axis(data, np.maximum((n - 1) // 2, 0)[None], 0)[0]
        hi = np.take_along_axis(data, np.maximum(n // 2, 0)[None], 0)[0]
        bg = np.where(holes[..., None], 127.0, 0.5 * (lo + hi))
        bg = bg.clip(0, 255).round().astype(np.uint8)
        if holes.any():
            bg = cv2.inpaint(bg, holes.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        return bg


@dataclass(frozen=True)
class Estimate:
    """The model's estimate for one crop, what the generator starts from: rotmat (24, 3, 3),
    betas (10,), cam (3,), box (3,), K (3, 3), crop (R, R, 3) uint8, the track id."""

    track: int
    crop: np.ndarray
    box: np.ndarray
    K: np.ndarray
    rotmat: np.ndarray
    betas: np.ndarray
    cam: np.ndarray


class DapaGenerator:
    """Keeps each track's `TargetLook` and renders `SyntheticBatch`es.

    pose: "target" (perturb the estimate in the VAE's latent space with noise scale `noise`)
    or "random" (prior samples); texture: "target" (the person's part colours) or "plain"
    (uniform grey); the background is the person's estimate either way."""

    def __init__(self, body: BodyModel, vae: PoseVAE, noise: float = 0.5, pose: str = "target",
                 texture: str = "target", history: int = 8, seed: int = 0) -> None:
        if pose not in ("target", "random") or texture not in ("target", "plain"):
            raise ValueError(f"DAPA pose must be target|random and texture target|plain, got "
                             f"{pose!r}, {texture!r}")
        self.body = body
        self.vae = vae
        self.noise = noise
        self.pose = pose
        self.texture = texture
        self.history = history
        self.faces = np.asarray(body.faces, dtype=np.int64)
        self.part_ids = np.asarray(body.part_ids, dtype=np.int64)
        self.n_parts = int(self.part_ids.max()) + 1
        self.looks: dict[int, TargetLook] = {}
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.times_ms: deque[float] = deque(maxlen=200)

    def forget(self, track: int) -> None:
        self.looks.pop(track, None)

    def _vertices(self, rotmat: Tensor, betas: Tensor, cam: Tensor, box: Tensor, K: Tensor):
        """Camera-frame vertices (B, V, 3) of bodies seen by crop cameras
        cam (B, 3) in boxes (B, 3) of images with intrinsics K (B, 3, 3)."""
        with torch.no_grad():
            transl = L.camera_translation(cam, box, K)
            out = self.body.forward_rotmat(rotmat, betas, transl)
        return out.vertices.double().numpy()

    def observe(self, estimates: list[Estimate]) -> None:
        """Update the looks of the estimates' tracks from their crops."""
        if not estimates:
            return
        t = lambda name: torch.as_tensor(np.stack([getattr(e, name) for e in estimates]),  # noqa: E731
                                         dtype=torch.float32)
        verts = self._vertices(t("rotmat"), t("betas"), t("cam"), t("box"), t("K"))
        for e, v in zip(estimates, verts):
            size = e.crop.shape[0]
            look = self.looks.get(e.track)
            if look is None:
                look = self.looks[e.track] = TargetLook(self.n_parts, self.history)
            look.observe(e.crop, v, self.faces, crop_matrix(e.box, size) @ e.K, self.part_ids)

    def generate(self, estimates: list[Estimate], n: int) -> SyntheticBatch | None:
        """n synthetic crops, each from a random one of `estimates` (tracks already observed)."""
        usable = [e for e in estimates if e.track in self.looks]
        if not usable or n < 1:
            return None
        t0 = time.perf_counter()
        picks = [usable[int(i)] for i in self.rng.integers(0, len(usable), n)]
        t = lambda name: torch.as_tensor(np.stack([getattr(e, name) for e in picks]),  # noqa: E731
                                         dtype=torch.float32)
        rotmat, betas, cam, box, K = t("rotmat"), t("betas"), t("cam"), t("box"), t("K")
        if self.pose == "target":
            body_pose = matrix_to_axis_angle(rotmat[:, 1:]).reshape(n, 69)
            new = perturb_pose(self.vae, body_pose, self.noise, self.generator)
        else:
            new = sample_poses(self.vae, n, self.generator)
        syn_rot = torch.cat([rotmat[:, :1], new.float()], dim=1)
        verts = self._vertices(syn_rot, betas, cam, box, K)
        images = []
        looks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per track, once per batch
        for i, e in enumerate(picks):
            size = e.crop.shape[0]
            if e.track not in looks:
                look = self.looks[e.track]
                if self.texture == "target":
                    albedo = (look.part_colours() * ALBEDO_GAIN).clip(0, 1)[self.part_ids]
                else:
                    albedo = np.full((len(self.part_ids), 3), PLAIN_ALBEDO)
                looks[e.track] = (albedo, look.background())
            albedo, background = looks[e.track]
            Kc = crop_matrix(e.box, size) @ e.K
            res = render([RenderMesh(verts[i], self.faces, albedo)], Kc, size, size,
                         background, DAPA_LIGHT)
            images.append(res.image)
        with torch.no_grad():
            # The exact 2D truth: the points through the camera that rendered them.
            local = self.body.forward_rotmat(syn_rot, betas).points
            kp = L.project_to_crop(local, cam, box, K)
        imgs = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        self.times_ms.append((time.perf_counter() - t0) * 1e3)
        return SyntheticBatch(imgs, syn_rot, betas, local, kp, box, K, cam)


def make_dapa(body: BodyModel, cfg: AdaptConfig) -> DapaGenerator | None:
    """DAPA's generator when adapt.dapa.weight > 0 (None otherwise): the pose VAE from
    adapt.dapa.vae (empty: the shipped one) and a CPU copy of the body model (the renderer and
    the looks are numpy; the adapter's body may live on a GPU)."""
    if cfg.dapa.weight <= 0:
        return None
    from ..body.pose_vae import load_pose_vae

    if any(t.device.type != "cpu" for t in body.buffers()):
        body = copy.deepcopy(body).cpu()
    return DapaGenerator(body, load_pose_vae(cfg.dapa.vae or None), noise=cfg.dapa.noise,
                         pose=cfg.dapa.pose, texture=cfg.dapa.texture,
                         history=cfg.dapa.history)

