"""`hmr-ros train-pose-vae`: the pose VAE (`body/pose_vae.py`) on the synthetic motion library.

Deterministic in its seed (one torch thread, seeded generators, the library regenerated bit
for bit): the same command writes the same weights. Training poses come from one library seed,
the reported errors from clips of another seed that training never saw.

The report (JSON next to the weights) says what DAPA can rely on: the reconstruction error
in degrees (geodesic angle per joint between a held-out pose and Dec(Enc(pose))), and the
fraction of decoded poses that stay within joint limits, for prior samples z ~ N(0, I) and for
held-out poses perturbed with DAPA's noise. "Within limits" is the training library's
per-number axis-angle range widened by `LIMIT_MARGIN` (the anatomical limits of
`world/motion/limits.py` are written in angle parameters that axis-angle does not invert to).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .adapt.prior import GaussianMixture
from .body.pose_vae import PoseVAE, PoseVAEConfig, perturb_latent, save_pose_vae
from .geometry import axis_angle_to_matrix
from .jsonio import write_json
from .progress import Progress

LIMIT_MARGIN = 0.1  # rad, slack on the library's bounds in the within-limits check


def library_poses(seed: int, n_clips: int) -> np.ndarray:
    """(N, 69) body poses of `n_clips` 20 s clips of the motion library at 10 fps."""
    from .world.motion import library_poses as motion_poses

    return motion_poses(n_clips=n_clips, duration_s=20.0, fps=10.0, seed=seed).astype(
        np.float32)


def build_prior(k: int = 8, seed: int = 0) -> GaussianMixture:
    """The GMM pose prior (`adapt/prior.py`) fitted to the default motion library of `seed`
    (40 clips of 20 s at 10 fps): what `weights/pose_prior_gmm8.npz` holds."""
    from .adapt.prior import fit_gmm
    from .world.motion import library_poses as motion_poses

    return fit_gmm(motion_poses(seed=seed), k=k, seed=seed)


def geodesic_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between rotations a, b (..., 3, 3) in degrees (...)."""
    rel = a.transpose(-1, -2) @ b
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))


def evaluate(vae: PoseVAE, poses: np.ndarray, seed: int = 0) -> dict:
    """Reconstruction error and within-limit fractions on held-out poses (N, 69)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(poses)
    with torch.no_grad():
        z = vae.encode(x)
        rec = vae.decode_rotmat(z)
        err = geodesic_deg(axis_angle_to_matrix(x.reshape(-1, 23, 3)), rec)
        prior = vae.decode(torch.randn((len(x), vae.cfg.latent), generator=g))
        out = {"reconstruction_deg_mean": float(err.mean()),
               "reconstruction_deg_p95": float(err.flatten().quantile(0.95)),
               "reconstruction_deg_max_joint_mean_per_pose": float(err.max(1).values.mean()),
               "prior_samples_within_limits": float(
                   vae.within_limits(prior, LIMIT_MARGIN).float().mean()),
               "held_out_within_limits": float(vae.within_limits(x, LIMIT_MARGIN).float().mean())}
        for s in (0.5, 1.0):
            pert = vae.decode(perturb_latent(z, s, g))
            out[f"perturbed_s{s:g}_within_limits"] = float(
                vae.within_limits(pert, LIMIT_MARGIN).float().mean())
            moved = geodesic_deg(axis_angle_to_matrix(pert.reshape(-1, 23, 3)), rec)
            out[f"perturbed_s{s:g}_change_deg_mean"] = float(moved.mean())
    return out


def train_pose_vae(out: str | Path, steps: int = 4000, batch: int = 256, lr: float = 1e-3,
                   kl_weight: float = 1e-3, seed: int = 0, train_clips: int = 80,
                   val_clips: int = 20, cfg: PoseVAEConfig | None = None,
                   progress: bool = True, command: str = "") -> dict:
    """Train, write `out` (.npz) and `<out stem>_report.json`; returns the report."""
    cfg = cfg or PoseVAEConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: bit-reproducible and polite on a shared machine
    try:
        t0 = time.perf_counter()
        train = library_poses(seed, train_clips)
        val = library_poses(seed + 1, val_clips)
        torch.manual_seed(seed)
        vae = PoseVAE(cfg)
        with torch.no_grad():
            vae.lo.copy_(torch.from_numpy(train.min(0)))
            vae.hi.copy_(torch.from_numpy(train.max(0)))
        x = torch.from_numpy(train)
        target = axis_angle_to_matrix(x.reshape(-1, 23, 3))
        opt = torch.optim.Adam(vae.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / steps)))
        g = torch.Generator().manual_seed(seed)
        log = []
        with Progress(steps, "pose-vae", enabled=progress) as bar:
            for i in range(steps):
                idx = torch.randint(0, len(x), (batch,), generator=g)
                mu, logvar = vae.encode_dist(x[idx])
                z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
                rec = vae.decode_rotmat(z)
                l_rec = (rec - target[idx]).pow(2).sum((-1, -2)).mean()
                l_kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
                loss = l_rec + kl_weight * l_kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1, rec=l_rec.item(), kl=l_kl.item())
                if i % 200 == 0 or i == steps - 1:
                    log.append({"step": i, "rec": l_rec.item(), "kl": l_kl.item()})
        vae.eval()
        report = {"file": Path(out).name, "command": command, "seed": seed, "steps": steps,
                  "batch": batch, "lr": lr, "kl_weight": kl_weight,
                  "latent": cfg.latent, "hidden": cfg.hidden,
                  "parameters": sum(p.numel() for p in vae.parameters()),
                  "train_poses": len(train), "train_library_seed": seed,
                  "held_out_poses": len(val), "held_out_library_seed": seed + 1,
                  "limit_margin_rad": LIMIT_MARGIN,
                  "held_out": evaluate(vae, val, seed), "train_seconds":
                  round(time.perf_counter() - t0, 1), "log": log}
        path = save_pose_vae(out, vae)
        write_json(path.with_name(path.stem + "_report.json"), report)
        return report
    finally:
        torch.set_num_threads(threads)
