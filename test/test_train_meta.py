"""DualNet meta-training (hmr_ros/train_meta.py): the meta-gradient is the true derivative of
the outer loss through the inner step, the auxiliary network's targets enter the inner loss,
meta-training learns, and runs are deterministic and resumable."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from micro import MICRO

from hmr_ros.adapt.prior import MaxMixturePrior
from hmr_ros.body import BodyModel
from hmr_ros.model import HMR, load_checkpoint
from hmr_ros.synth import write_trainset
from hmr_ros.train import TrainSet, _batch
from hmr_ros.train_meta import (
    MetaTrainConfig,
    MetaTrainer,
    aux_targets,
    inner_loss,
    meta_gradient,
    meta_objective,
    params_of,
    train_meta,
    with_keypoints,
)

CFG = MetaTrainConfig(steps=6, batch_size=4, threads=1, augment=False,
                      warmup=1, log_every=2, eval_every=3, lr=1e-3, aux_lr=1e-3)


@pytest.fixture(scope="module")
def trainset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "meta.npz"
    write_trainset("h36m_like", 16, path, seed=5, input_size=32, chunk=16, progress=False)
    return path


@pytest.fixture(scope="module")
def parts(trainset):
    data = TrainSet.load(trainset)
    body, prior = BodyModel(), MaxMixturePrior()
    batch = with_keypoints(_batch(data, torch.arange(4), CFG.outer(), None), CFG, None)
    return data, body, prior, batch


def _nets(data, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = HMR(MICRO, mean_params=data.mean_params()).to(dtype)
    aux = HMR(MICRO, mean_params=data.mean_params()).to(dtype)
    return model, aux


def _dot(g, d):
    return sum(float((g[n] * d[n]).sum()) for n in d)


def test_second_order_meta_gradient_matches_finite_differences(parts):
    data, body, prior, batch = parts
    model, aux = _nets(data, dtype=torch.float64)
    body64, prior64 = BodyModel().double(), MaxMixturePrior().double()
    b64 = {k: v.double() for k, v in batch.items()}
    # An inner step large enough that its curvature matters (the real 1e-5 would make the two
    # orders agree to many digits on a micro model).
    cfg = replace(CFG, inner_lr=0.3, order=2)
    g2 = meta_gradient(model, aux, body64, prior64, b64, cfg).grads
    g1 = meta_gradient(model, aux, body64, prior64, b64, replace(cfg, order=1)).grads
    params = {n: p.detach().clone() for n, p in params_of(model).items()}
    gen = torch.Generator().manual_seed(1)
    eps = 1e-6
    for _ in range(3):
        d = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in params.items()}
        plus = {n: params[n] + eps * d[n] for n in params}
        minus = {n: params[n] - eps * d[n] for n in params}
        fd = float(meta_objective(model, aux, body64, prior64, b64, cfg, plus)
                   - meta_objective(model, aux, body64, prior64, b64, cfg, minus)) / (2 * eps)
        second, first = _dot(g2, d), _dot(g1, d)
        assert second == pytest.approx(fd, rel=1e-5, abs=1e-9)
        # The first-order approximation misses the inner step's curvature: far off here.
        assert abs(first - fd) > 100 * abs(second - fd)
        assert abs(first - fd) > 1e-3 * abs(fd)


def test_auxiliary_targets_enter_the_inner_gradient(parts):
    data, body, prior, batch = parts
    model, aux = _nets(data)
    params = params_of(model)

    def inner_grad(aux_net, cfg):
        targets = aux_targets(aux_net, None, body, batch["images"], cfg)
        loss, terms = inner_loss(model, params, body, prior, batch, targets, cfg)
        assert {"keypoints", "aux_joints", "aux_rot", "aux_betas"} <= set(terms)
        assert ("aux_vertices" in terms) == (cfg.w_aux_vertices > 0)
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(params.values()))])

    _, other = _nets(data, seed=7)  # an auxiliary network with different weights
    base = inner_grad(aux, CFG)
    changed = inner_grad(other, CFG)
    assert not torch.allclose(base, changed, rtol=1e-3, atol=1e-6)
    # With every pseudo-SMPL weight at zero the auxiliary network no longer matters.
    off = replace(CFG, w_aux_vertices=0.0, w_aux_joints=0.0, w_aux_rot=0.0, w_aux_betas=0.0)
    torch.testing.assert_close(inner_grad(aux, off), inner_grad(other, off))
    # Each pseudo-SMPL term alone carries the auxiliary network's targets.
    for name in ("w_aux_vertices", "w_aux_joints", "w_aux_rot", "w_aux_betas"):
        one = replace(off, **{name: 1.0})
        assert not torch.allclose(inner_grad(aux, one), inner_grad(other, one),
                                  rtol=1e-4, atol=1e-8), name


def test_auxiliary_gradient_through_the_inner_step(parts):
    data, body, prior, batch = parts
    model, aux = _nets(data)
    detached = meta_gradient(model, aux, body, prior, batch, replace(CFG, order=2))
    assert detached.aux_grads is None
    live = meta_gradient(model, aux, body, prior, batch,
                         replace(CFG, order=2, aux_detach=False, inner_lr=1e-2))
    assert live.aux_grads is not None and set(live.aux_grads) == set(params_of(aux))
    assert sum(float(g.abs().sum()) for g in live.aux_grads.values()) > 0
    with pytest.raises(ValueError, match="order"):
        MetaTrainConfig(order=3)


@pytest.mark.parametrize("order", [1, 2])
def test_meta_training_lowers_the_outer_loss_on_a_fixed_batch(parts, order):
    data, body, prior, batch = parts
    model, aux = _nets(data)
    cfg = replace(CFG, order=order, inner_lr=1e-3)
    trainer = MetaTrainer(model, aux, body, cfg, prior)
    first = [trainer.step(batch) for _ in range(25)]
    assert {"outer", "inner", "aux_total", "step_gain", "inner_aux_joints"} <= set(first[0])
    after = meta_gradient(model, aux, body, prior, batch, cfg)
    assert float(after.outer) < 0.6 * first[0]["outer"]
    assert first[-1]["aux_total"] < 0.6 * first[0]["aux_total"]  # f_u learns too


def test_meta_training_is_deterministic_and_resumable(trainset, tmp_path):
    straight = train_meta(CFG, trainset, tmp_path / "a", val_path=trainset,
                          out=tmp_path / "a.pt", progress=False, model_config=MICRO)
    stopped = train_meta(CFG, trainset, tmp_path / "b", val_path=trainset, progress=False,
                         stop_after=3, model_config=MICRO)
    assert stopped["interrupted"] and stopped["steps"] == 3
    resumed = train_meta(CFG, trainset, tmp_path / "b", val_path=trainset,
                         out=tmp_path / "b.pt", resume=True, progress=False,
                         model_config=MICRO)
    again = train_meta(CFG, trainset, tmp_path / "c", val_path=trainset,
                       out=tmp_path / "c.pt", progress=False, model_config=MICRO)
    for other in ("b.pt", "c.pt", "b.pt.aux.pt"):
        ref = "a.pt.aux.pt" if "aux" in other else "a.pt"
        a = load_checkpoint(tmp_path / ref).model.state_dict()
        b = load_checkpoint(tmp_path / other).model.state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), (other, k)
    assert straight["final"]["outer"] == resumed["final"]["outer"] == again["final"]["outer"]
    log = json.loads((tmp_path / "a" / "log.json").read_text())
    assert [h["step"] for h in log["history"]] == [2, 4, 6]
    assert "val_pa_mpjpe" in log["history"][-1] and "val_aux_pa_mpjpe" in log["history"][-1]
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["steps"] == 6 and report["config"]["order"] == CFG.order
    # A different seed gives different weights (the determinism above is not vacuous).
    other = train_meta(replace(CFG, seed=1), trainset, tmp_path / "d", out=tmp_path / "d.pt",
                       progress=False, model_config=MICRO)
    assert other["final"]["outer"] != straight["final"]["outer"]


def test_train_meta_command(tmp_path, capsys):
    from hmr_ros.cli import main
    from hmr_ros.train_meta import config_with, parse_overrides

    data = tmp_path / "tiny.npz"
    write_trainset("h36m_like", 8, data, seed=4, input_size=64, chunk=8, progress=False)
    rc = main(["train-meta", "--data", str(data), "--run", str(tmp_path / "run"),
               "--out", str(tmp_path / "m.pt"), "--preset", "hmr_tiny", "--steps", "2",
               "--batch-size", "2", "--threads", "1", "--order", "2",
               "--set", "log_every=1", "--set", "augment=false", "--set", "w_aux_rot=2",
               "--out-fp16"])
    assert rc == 0 and "meta-trained 2 steps" in capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["config"]["order"] == 2 and report["config"]["w_aux_rot"] == 2.0
    assert report["config"]["augment"] is False
    assert load_checkpoint(tmp_path / "m.pt.aux.pt").meta["role"] == "dualnet auxiliary"
    for name in ("m.pt", "m.pt.aux.pt"):  # --out-fp16: both stored in half precision
        state = torch.load(tmp_path / name, weights_only=True)["state_dict"]
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    with pytest.raises(ValueError, match="MetaTrainConfig field"):
        parse_overrides(["no_such=1"])
    with pytest.raises(ValueError, match="true or false"):
        parse_overrides(["aux_detach=maybe"])
    with pytest.raises(ValueError, match="unknown MetaTrainConfig fields"):
        config_with(MetaTrainConfig(), no_such=1)


def test_the_auxiliary_network_can_start_from_its_own_checkpoint(trainset, tmp_path):
    from hmr_ros.model import save_checkpoint

    torch.manual_seed(9)
    start = tmp_path / "aux_start.pt"
    save_checkpoint(start, HMR(MICRO))
    cfg = replace(CFG, steps=2, aux_init=str(start), aux_lr=0.0)
    train_meta(cfg, trainset, tmp_path / "r", out=tmp_path / "m.pt", progress=False,
               model_config=MICRO)
    ref = load_checkpoint(start).model.state_dict()
    aux = load_checkpoint(tmp_path / "m.pt.aux.pt").model.state_dict()
    main = load_checkpoint(tmp_path / "m.pt").model.state_dict()
    assert all(torch.equal(ref[k], aux[k]) for k in ref)  # aux_lr 0: the start, unchanged
    assert not torch.equal(ref["conv1.weight"], main["conv1.weight"])


def test_auxiliary_targets_are_made_without_dropout(parts):
    data, body, _, batch = parts
    aux = HMR(replace(MICRO, dropout=0.5), mean_params=data.mean_params()).train()
    a = aux_targets(aux, None, body, batch["images"], CFG)
    b = aux_targets(aux, None, body, batch["images"], CFG)
    torch.testing.assert_close(a.points, b.points, rtol=0, atol=0)
    torch.testing.assert_close(a.rotmat, b.rotmat, rtol=0, atol=0)
    assert aux.training  # the network's mode is given back
