"""Pretraining (deterministic, resumable, learns) and evaluation against ground truth."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from hmr_ros.body import BodyModel
from hmr_ros.data.frame import Frame, FrameResult, PersonEstimate
from hmr_ros.eval.evaluate import StreamEvaluator, truth_from_params
from hmr_ros.eval.metrics import pa_mpjpe
from hmr_ros.model import CheckpointError, load_checkpoint
from hmr_ros.synth import write_trainset
from hmr_ros.train import TrainConfig, TrainSet, train
from hmr_ros.world.domain import load_domain
from hmr_ros.world.scene import SyntheticSequence

TINY = TrainConfig(preset="hmr_tiny", steps=12, batch_size=8, lr=1e-3, warmup=2, threads=1,
                   eval_every=6, log_every=3)


@pytest.fixture(scope="module")
def trainset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    write_trainset("h36m_like", 48, path, seed=3, input_size=64, chunk=24, progress=False)
    return path


def test_trainset_has_consistent_labels(trainset):
    data = TrainSet.load(trainset)
    assert len(data) == 48 and data.images.shape == (48, 64, 64, 3)
    # Rotations are orthonormal and the mean camera scale is plausible (person fills the box).
    r = data.rotmat
    eye = torch.eye(3).expand_as(r)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    mean = data.mean_params()
    assert 0.5 < float(mean.cam[0]) < 1.5
    # Ground-truth SMPL + translation reproduces the stored 3D points.
    body = BodyModel()
    out = body.forward_rotmat(r[:4], data.betas[:4], data.transl[:4])
    torch.testing.assert_close(out.points, data.points3d[:4], atol=1e-4, rtol=0)


def test_training_is_deterministic_and_resumable(trainset, tmp_path):
    straight = train(TINY, trainset, tmp_path / "a", out=tmp_path / "a.pt", progress=False)
    stopped = train(TINY, trainset, tmp_path / "b", progress=False, stop_after=5)
    assert stopped["interrupted"] and stopped["steps"] == 5
    # Resuming the interrupted run reproduces the straight run exactly.
    resumed = train(TINY, trainset, tmp_path / "b", out=tmp_path / "b.pt", resume=True,
                    progress=False)
    a = load_checkpoint(tmp_path / "a.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "b.pt").model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert straight["final"]["total"] == resumed["final"]["total"]
    # last.pt is read with weights_only=True (it held only tensors and plain types); a
    # last.pt that carries pickled code is refused, not run.
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"model": {}, "x": Evil()}, tmp_path / "b" / "last.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        train(TINY, trainset, tmp_path / "b", resume=True, progress=False)
    log = json.loads((tmp_path / "a" / "log.json").read_text())
    assert [h["step"] for h in log["history"]] == [3, 6, 9, 12]
    assert (tmp_path / "a" / "loss.png").stat().st_size > 1000
    meta = load_checkpoint(tmp_path / "a.pt").meta
    assert meta["domain"] == "h36m_like" and meta["steps"] == 12


def test_training_reduces_the_error(trainset, tmp_path):
    cfg = TrainConfig(**{**TINY.__dict__, "steps": 50, "batch_size": 16, "augment": False,
                         "log_every": 10, "eval_every": 10})
    report = train(cfg, trainset, tmp_path / "c", val_path=trainset, progress=False)
    hist = json.loads((tmp_path / "c" / "log.json").read_text())["history"]
    # Measured in eval mode (no dropout) on the training crops: the fit improves.
    assert hist[-1]["val_mpjpe"] < 0.85 * hist[0]["val_mpjpe"]
    assert report["steps"] == 50


def _estimate_from_truth(body: BodyModel, frame: Frame, offset: float) -> FrameResult:
    """A 'perfect' estimate moved by `offset` metres in x (to test the metrics' plumbing)."""
    people = []
    for pid, t in truth_from_params(body, frame.ground_truth).items():
        shift = np.array([offset, 0.0, 0.0], np.float32)
        people.append(PersonEstimate(
            id=pid, box=np.array([0, 0, 100.0]), cam=np.zeros(3), params=frame.ground_truth[pid],
            joints=t.points[:24] + shift, points=t.points + shift, vertices=t.vertices + shift,
            keypoints=None, confidence=1.0))
    return FrameResult(frame.index, frame.stamp_ns, tuple(people), 0, 0.0)


def test_evaluator_scores_truth_as_zero_and_offsets_as_known():
    seq = SyntheticSequence(load_domain("h36m_like"), seed=8, duration_s=0.2)
    body = seq.body
    perfect, shifted = StreamEvaluator(body), StreamEvaluator(body)
    for i in range(len(seq)):
        frame = seq.frame(i).frame
        perfect.add(frame, _estimate_from_truth(body, frame, 0.0))
        shifted.add(frame, _estimate_from_truth(body, frame, 0.05))
    p, s = perfect.summary(), shifted.summary()
    assert p["mpjpe"] < 1e-3 and p["pa_mpjpe"] < 1e-3 and p["pve"] < 1e-3
    assert p["accel"] < 1e-3 and p["detected"] == 1.0
    # A rigid shift vanishes after root alignment and Procrustes.
    assert s["mpjpe"] < 1e-3 and s["pa_mpjpe"] < 1e-3
    # Missing estimates are counted, not scored.
    missing = StreamEvaluator(body)
    frame = seq.frame(0).frame
    missing.add(frame, FrameResult(0, frame.stamp_ns, (), 0, 0.0))
    assert missing.summary()["detected"] == 0.0


def test_evaluator_matches_a_direct_computation():
    seq = SyntheticSequence(load_domain("h36m_like"), seed=9, duration_s=0.1)
    body = seq.body
    frame = seq.frame(0).frame
    truth = truth_from_params(body, frame.ground_truth)[1]
    rng = np.random.default_rng(0)
    noisy = truth.points + rng.normal(0, 0.02, truth.points.shape).astype(np.float32)
    est = PersonEstimate(1, np.array([0, 0, 100.0]), np.zeros(3), frame.ground_truth[1],
                         noisy[:24], noisy, None, None, 1.0)
    ev = StreamEvaluator(body)
    vals = ev.add(frame, FrameResult(0, 0, (est,), 0, 0.0))
    from hmr_ros.body import map_points

    direct = pa_mpjpe(map_points(torch.from_numpy(noisy), "lsp14")[None].numpy(),
                      map_points(torch.from_numpy(truth.points), "lsp14")[None].numpy())[0]
    assert vals["pa_mpjpe"] == pytest.approx(direct)
    assert 5.0 < vals["pa_mpjpe"] < 40.0 and "pve" not in vals


def test_eval_command_scores_the_frozen_model(tmp_path, capsys):
    from hmr_ros.cli import main
    from hmr_ros.model import HMR, ModelConfig, save_checkpoint

    torch.manual_seed(0)
    micro = ModelConfig(name="micro", block="basic", layers=(1, 1, 1, 1), width=8,
                        norm="group", gn_groups=4, head_hidden=32, n_iter=2, input_size=32,
                        dropout=0.0)
    save_checkpoint(tmp_path / "m.pt", HMR(micro))
    out = tmp_path / "eval.json"
    assert main(["eval", "--domain", "h36m_like", "--seeds", "5", "6", "--duration", "0.2",
                 "--weights", str(tmp_path / "m.pt"), "--out", str(out)]) == 0
    row = json.loads(out.read_text())["results"]["h36m_like"]
    assert row["frames"] == 10 and row["model_versions"] == 1 and row["detected"] == 1.0
    # Streams are kept apart: ACCEL never differences frames of two streams.
    assert np.isfinite(row["pa_mpjpe"]) and np.isfinite(row["accel"])
    assert "PA-MPJPE" in capsys.readouterr().out
