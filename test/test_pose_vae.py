"""The pose VAE DAPA perturbs poses with: the shipped weights against their own report, the
latent noise, safe loading and a reproducible training command."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from hmr_ros.body.pose_vae import (
    PoseVAE,
    PoseVAEConfig,
    PoseVAEFileError,
    load_pose_vae,
    perturb_latent,
    perturb_pose,
    sample_poses,
    save_pose_vae,
)
from hmr_ros.geometry import axis_angle_to_matrix
from hmr_ros.pose_vae_train import geodesic_deg, library_poses, train_pose_vae
from hmr_ros.resources import resource_path


@pytest.fixture(scope="module")
def vae() -> PoseVAE:
    return load_pose_vae()


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(resource_path("weights", "pose_vae_report.json").read_text())


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    # Clips of a library seed neither training (0) nor the report (1) used.
    return torch.from_numpy(library_poses(seed=7, n_clips=3))


def _errors(vae: PoseVAE, poses: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        rec = vae.decode_rotmat(vae.encode(poses))
    return geodesic_deg(axis_angle_to_matrix(poses.reshape(-1, 23, 3)), rec)


def test_decode_of_encode_reproduces_poses_within_the_measured_error(vae, report, held_out):
    err = _errors(vae, held_out)
    measured = report["held_out"]
    assert float(err.mean()) <= 1.25 * measured["reconstruction_deg_mean"]
    assert float(err.flatten().quantile(0.95)) <= 1.25 * measured["reconstruction_deg_p95"]
    assert measured["reconstruction_deg_mean"] < 5.0  # what DAPA relies on: a few degrees
    # An untrained VAE of the same shape is far off: the bound above can fail.
    torch.manual_seed(0)
    assert float(_errors(PoseVAE(vae.cfg), held_out).mean()) > 5 * measured[
        "reconstruction_deg_mean"]


def test_zero_noise_is_the_identity_and_noise_scales_within_bounds(vae, held_out):
    z = vae.encode(held_out[:64]).detach()
    assert perturb_latent(z, 0.0) is z
    s = 0.5
    zt = perturb_latent(z, s, torch.Generator().manual_seed(1))
    ratio = zt / z
    assert ((ratio >= 1.0 - 1e-6) & (ratio <= 1.0 + s + 1e-6)).all()
    assert (ratio - 1.0).abs().max() > 0.1  # it does move
    # Pose level: s = 0 decodes the encoding itself, bit for bit.
    with torch.no_grad():
        torch.testing.assert_close(perturb_pose(vae, held_out[:64], 0.0),
                                   vae.decode_rotmat(z), rtol=0, atol=0)
    # Perturbed poses are still rotations.
    rot = perturb_pose(vae, held_out[:64], 1.0, torch.Generator().manual_seed(2))
    eye = torch.eye(3).expand_as(rot)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, atol=1e-5, rtol=0)


def test_prior_samples_mostly_stay_within_the_library_limits(vae, report):
    poses = vae.decode(torch.randn(500, vae.cfg.latent, generator=torch.Generator()
                                   .manual_seed(3)))
    frac = float(vae.within_limits(poses, report["limit_margin_rad"]).float().mean())
    assert frac >= 0.95 and report["held_out"]["prior_samples_within_limits"] >= 0.95
    rot = sample_poses(vae, 4, torch.Generator().manual_seed(3))
    assert rot.shape == (4, 23, 3, 3)
    # The check itself: a knee bent far beyond anything in the library is out.
    bad = poses[:1].clone()
    bad[0, 3 * 3] = 3.0  # left knee (joint 4, index 3 among body joints), x axis
    assert not bool(vae.within_limits(bad, 0.1)[0])


def test_save_load_round_trip_and_refused_files(vae, tmp_path):
    path = save_pose_vae(tmp_path / "v.npz", vae)
    again = load_pose_vae(path)
    x = torch.randn(3, vae.cfg.latent)
    torch.testing.assert_close(again.decode(x), vae.decode(x), rtol=0, atol=0)
    torch.testing.assert_close(again.lo, vae.lo)
    # A missing size, and a pickled object array: refused with a clear error, nothing runs.
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    partial = dict(arrays)
    del partial["latent"]
    np.savez(tmp_path / "partial.npz", **partial)
    with pytest.raises(PoseVAEFileError, match="latent"):
        load_pose_vae(tmp_path / "partial.npz")
    np.savez(tmp_path / "pickled.npz", **arrays, evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_pose_vae(tmp_path / "pickled.npz")
    wrong = {**arrays, "hidden": np.array(32)}
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(PoseVAEFileError):
        load_pose_vae(tmp_path / "wrong.npz")


def test_training_is_deterministic_and_reports_its_numbers(tmp_path):
    kw = dict(steps=30, batch=64, train_clips=2, val_clips=1,
              cfg=PoseVAEConfig(latent=4, hidden=16), progress=False)
    a = train_pose_vae(tmp_path / "a.npz", **kw)
    b = train_pose_vae(tmp_path / "b.npz", **kw)
    with zipfile.ZipFile(tmp_path / "a.npz") as za, zipfile.ZipFile(tmp_path / "b.npz") as zb:
        assert za.namelist() == zb.namelist()
        for name in za.namelist():
            assert za.read(name) == zb.read(name), name
    assert a["held_out"] == b["held_out"]
    report = json.loads((tmp_path / "a_report.json").read_text())
    for key in ("reconstruction_deg_mean", "prior_samples_within_limits"):
        assert np.isfinite(report["held_out"][key])
    assert report["steps"] == 30 and report["log"][-1]["step"] == 29
