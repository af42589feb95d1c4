"""Gaussian-mixture pose prior (SMPLify's `MaxMixturePrior`), fitted to our motion library.

The prior scores the 69 body-pose axis-angle numbers by the negative log-likelihood of the
best mixture component, as SMPLify does. We ship a mixture fitted (by EM, `fit_gmm`) to the
synthetic motion library's poses; a user's SMPLify `gmm_08.pkl` (keys `means` (K, 69),
`covars` (K, 69, 69), `weights` (K,)) loads as well. The poses come from the synthetic
world, which this layer does not import; the shipped file is rebuilt by

    from hmr_ros.adapt.prior import save_prior
    from hmr_ros.pose_vae_train import build_prior
    save_prior("weights/pose_prior_gmm8.npz", build_prior())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import HmrRosError
from ..npzio import read_npz, write_npz
from ..resources import resource_path

PRIOR_FILE = "pose_prior_gmm8.npz"
POSE_DIM = 69


class PriorFileError(HmrRosError, ValueError):
    pass


@dataclass(frozen=True)
class GaussianMixture:
    means: np.ndarray  # (K, D)
    covars: np.ndarray  # (K, D, D)
    weights: np.ndarray  # (K,)


def fit_gmm(x: np.ndarray, k: int = 8, iters: int = 60, seed: int = 0,
            reg: float = 1e-4) -> GaussianMixture:
    """EM for a full-covariance Gaussian mixture of samples x (N, D), k-means++ start.

    `reg` is added to every covariance's diagonal: poses of a finite library never span all
    69 dimensions, and the prior must stay finite for any pose.
    """
    rng = np.random.default_rng(seed)
    n, d = x.shape
    centres = [x[rng.integers(n)]]
    for _ in range(1, k):
        dist = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(x[rng.choice(n, p=dist / dist.sum())])
    means = np.stack(centres)
    covars = np.repeat((np.cov(x.T) + reg * np.eye(d))[None], k, axis=0)
    weights = np.full(k, 1.0 / k)
    for _ in range(iters):
        logp = _log_gauss(x, means, covars) + np.log(weights)[None]
        logp -= logp.max(1, keepdims=True)
        resp = np.exp(logp)
        resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0) + 1e-9
        weights = nk / n
        means = (resp.T @ x) / nk[:, None]
        for j in range(k):
            diff = x - means[j]
            covars[j] = (resp[:, j, None] * diff).T @ diff / nk[j] + reg * np.eye(d)
    return GaussianMixture(means, covars, weights)


def _log_gauss(x: np.ndarray, means: np.ndarray, covars: np.ndarray) -> np.ndarray:
    out = np.empty((len(x), len(means)))
    for j in range(len(means)):
        chol = np.linalg.cholesky(covars[j])
        z = np.linalg.solve(chol, (x - means[j]).T)
        out[:, j] = -0.5 * (z ** 2).sum(0) - np.log(np.diag(chol)).sum() \
            - 0.5 * x.shape[1] * np.log(2 * np.pi)
    return out


def save_prior(path: str | Path, gmm: GaussianMixture) -> None:
    write_npz(path, {"means": gmm.means.astype(np.float32),
                     "covars": gmm.covars.astype(np.float32),
                     "weights": gmm.weights.astype(np.float32)})


def load_prior(path: str | Path | None = None) -> GaussianMixture:
    """Our .npz, a SMPLify gmm_08.pkl, or (None) the shipped prior."""
    path = Path(path) if path else resource_path("weights", PRIOR_FILE)
    if path.suffix == ".pkl":
        from ..body.smpl_io import SMPLFileError, load_restricted_pickle

        try:  # the same allow-list as SMPL files: no code runs from a gmm_08.pkl
            data = load_restricted_pickle(path, "GMM")
        except SMPLFileError as err:
            raise PriorFileError(str(err)) from None
        if not isinstance(data, dict):
            raise PriorFileError(f"{path}: expected a dict, found {type(data).__name__}")
    else:
        data = read_npz(path)
    try:
        gmm = GaussianMixture(np.asarray(data["means"], np.float64),
                              np.asarray(data["covars"], np.float64),
                              np.asarray(data["weights"], np.float64))
    except KeyError as err:
        raise PriorFileError(f"{path}: missing {err}; need means, covars, weights") from None
    k = len(gmm.weights)
    if gmm.means.shape != (k, POSE_DIM) or gmm.covars.shape != (k, POSE_DIM, POSE_DIM):
        raise PriorFileError(f"{path}: expected means (K, 69) and covars (K, 69, 69), got "
                             f"{gmm.means.shape} and {gmm.covars.shape}")
    return gmm


class MaxMixturePrior(torch.nn.Module):
    """Negative log-likelihood of the best component (constants included, so components with
    different determinants compare correctly), as in SMPLify."""

    def __init__(self, gmm: GaussianMixture | None = None) -> None:
        super().__init__()
        gmm = gmm or load_prior()
        precisions = np.linalg.inv(gmm.covars)
        _, logdet = np.linalg.slogdet(gmm.covars)
        # -log(w_k) + 0.5 log|Sigma_k|: the per-component constant.
        const = -np.log(gmm.weights) + 0.5 * logdet
        self.register_buffer("means", torch.tensor(gmm.means, dtype=torch.float32))
        self.register_buffer("precisions", torch.tensor(precisions, dtype=torch.float32))
        self.register_buffer("const", torch.tensor(const - const.min(), dtype=torch.float32))

    def forward(self, body_pose: Tensor) -> Tensor:
        """body_pose (B, 69) axis-angle -> (B,) prior energy (>= 0 up to the constant)."""
        diff = body_pose[:, None, :] - self.means[None]  # (B, K, 69)
        maha = torch.einsum("bki,kij,bkj->bk", diff, self.precisions, diff)
        return (0.5 * maha + self.const[None]).min(dim=1).values
