"""A small variational auto-encoder over SMPL body poses: the latent space DAPA perturbs.

VPoser (the pose prior DAPA was written with) needs a licence and a download, so we ship our
own, trained on the synthetic motion library (`hmr-ros train-pose-vae`,
`hmr_ros/pose_vae_train.py`). The GMM prior (`adapt/prior.py`) stays for the losses; this
model only provides `encode` / `decode` and the multiplicative latent noise of DAPA:

    z = Enc(theta); z~ = z * (1 + s * eps), eps ~ U[0, 1]; theta~ = Dec(z~)

Input: the 23 body joints as axis-angle (B, 69). Output: 6D rotations per joint (SPIN's layout,
`geometry.rot6d_to_matrix`), so every decoded pose is a valid rotation, returned as axis-angle
(B, 69) or rotation matrices (B, 23, 3, 3).

The file is an `.npz` of plain arrays (the state dict plus the sizes and the library's
per-joint axis-angle bounds), read with `allow_pickle=False`: loading it runs no code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import HmrRosError
from ..geometry import matrix_to_axis_angle, rot6d_to_matrix
from ..npzio import read_npz, write_npz
from ..resources import resource_path

POSE_VAE_FILE = "pose_vae.npz"
NUM_BODY_JOINTS = 23
POSE_DIM = 3 * NUM_BODY_JOINTS


class PoseVAEFileError(HmrRosError, ValueError):
    """A pose VAE file that is missing keys or has the wrong shapes."""


@dataclass(frozen=True)
class PoseVAEConfig:
    latent: int = 16
    hidden: int = 256


class PoseVAE(nn.Module):
    """Encoder 69 -> hidden -> hidden -> (mu, log variance) of `latent` numbers; decoder
    latent -> hidden -> hidden -> 23 x 6D.

    `lo`, `hi` (69,) are the axis-angle bounds of the poses it was trained on (a buffer, so
    they travel with the weights); `within_limits` checks decoded poses against them."""

    def __init__(self, cfg: PoseVAEConfig = PoseVAEConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.encoder = nn.Sequential(nn.Linear(POSE_DIM, h), nn.SiLU(), nn.Linear(h, h),
                                     nn.SiLU(), nn.Linear(h, 2 * cfg.latent))
        self.decoder = nn.Sequential(nn.Linear(cfg.latent, h), nn.SiLU(), nn.Linear(h, h),
                                     nn.SiLU(), nn.Linear(h, NUM_BODY_JOINTS * 6))
        self.register_buffer("lo", torch.full((POSE_DIM,), -np.pi))
        self.register_buffer("hi", torch.full((POSE_DIM,), np.pi))

    def encode_dist(self, pose: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 69) axis-angle -> mean (B, L) and log variance (B, L) of q(z | pose)."""
        out = self.encoder(pose)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)

    def encode(self, pose: Tensor) -> Tensor:
        """(B, 69) axis-angle -> (B, L) latent mean (deterministic: what DAPA perturbs)."""
        return self.encode_dist(pose)[0]

    def decode_rotmat(self, z: Tensor) -> Tensor:
        """(B, L) -> (B, 23, 3, 3) rotation matrices."""
        six = self.decoder(z).reshape(z.shape[0], NUM_BODY_JOINTS, 6)
        return rot6d_to_matrix(six)

    def decode(self, z: Tensor) -> Tensor:
        """(B, L) -> (B, 69) axis-angle."""
        return matrix_to_axis_angle(self.decode_rotmat(z)).reshape(z.shape[0], POSE_DIM)

    def within_limits(self, pose: Tensor, margin: float = 0.0) -> Tensor:
        """(B, 69) axis-angle -> (B,) bool: every number inside the training poses' bounds
        widened by `margin` radians."""
        return ((pose >= self.lo - margin) & (pose <= self.hi + margin)).all(dim=-1)


def perturb_latent(z: Tensor, s: float, generator: torch.Generator | None = None) -> Tensor:
    """DAPA's multiplicative latent noise: z * (1 + s * eps), eps ~ U[0, 1] per number.

    z (B, L) -> (B, L); s = 0 returns z itself (exactly: no noise is drawn)."""
    if s == 0:
        return z
    eps = torch.rand(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    return z * (1.0 + s * eps)


def perturb_pose(vae: PoseVAE, pose: Tensor, s: float,
                 generator: torch.Generator | None = None) -> Tensor:
    """(B, 69) axis-angle -> (B, 23, 3, 3): Dec(Enc(pose) * (1 + s * eps))."""
    with torch.no_grad():
        return vae.decode_rotmat(perturb_latent(vae.encode(pose), s, generator))


def sample_poses(vae: PoseVAE, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n poses decoded from the prior z ~ N(0, I) -> (n, 23, 3, 3) (DAPA's random poses)."""
    with torch.no_grad():
        z = torch.randn((n, vae.cfg.latent), generator=generator)
        return vae.decode_rotmat(z)


def save_pose_vae(path: str | Path, vae: PoseVAE) -> Path:
    """Write the model as plain arrays (byte-for-byte reproducible, see `write_npz`)."""
    arrays = {f"param.{k}": v.detach().cpu().numpy().astype(np.float32)
              for k, v in vae.state_dict().items()}
    arrays["latent"] = np.array(vae.cfg.latent, dtype=np.int64)
    arrays["hidden"] = np.array(vae.cfg.hidden, dtype=np.int64)
    write_npz(path, arrays)
    return Path(path)


def load_pose_vae(path: str | Path | None = None) -> PoseVAE:
    """Our .npz (None: the shipped `weights/pose_vae.npz`), in eval mode."""
    path = Path(path) if path else resource_path("weights", POSE_VAE_FILE)
    data = read_npz(path)
    try:
        cfg = PoseVAEConfig(latent=int(data["latent"]), hidden=int(data["hidden"]))
    except KeyError as err:
        raise PoseVAEFileError(f"{path}: missing {err}") from None
    vae = PoseVAE(cfg)
    state = {k[len("param."):]: torch.from_numpy(v) for k, v in data.items()
             if k.startswith("param.")}
    try:
        vae.load_state_dict(state)
    except RuntimeError as err:
        raise PoseVAEFileError(f"{path}: {err}") from None
    return vae.eval()
