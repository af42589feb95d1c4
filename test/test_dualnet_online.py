"""DualNet at test time (issue 17): the auxiliary network's pseudo-SMPL term in the online
loss (`adapt.dualnet.weight`), and per-frame test-time optimisation (`adapt.reset_each_frame`),
the protocol of `hmr-ros bench tto`."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from micro import MICRO, adapt_samples

from hmr_ros.adapt.dualnet import PseudoWeights, aux_targets, pseudo_smpl_loss
from hmr_ros.adapt.methods import Adapter
from hmr_ros.adapt.worker import AdaptationWorker
from hmr_ros.config import AdaptConfig, ConfigError, PipelineConfig, replace_path, updated
from hmr_ros.model import HMR, ModelConfig, save_checkpoint
from hmr_ros.model.backends import TorchBackend


def _cfg(**kw) -> AdaptConfig:
    return updated(AdaptConfig(), {"schedule": "every_frame", "tau": 2,
                                                 "buffer_frames": 8, "min_keypoints": 4,
                                                 "scope": "all", "method": "framewise",
                                                 "outer_lr": 1e-3, **kw})


def _aux_file(tmp_path, seed: int, config: ModelConfig = MICRO) -> str:
    torch.manual_seed(seed)
    path = tmp_path / f"aux{seed}.pt"
    save_checkpoint(path, HMR(config).eval())
    return str(path)


def _worker(model, body, samples, cfg) -> tuple[AdaptationWorker, TorchBackend]:
    backend = TorchBackend(model)
    worker = AdaptationWorker(Adapter(model, body, cfg), cfg, backend.update_weights)
    for s in samples:
        worker.submit([s])
    return worker, backend


def _first_batch(worker):
    return worker.next_batch()


def _frame_grad(adapter: Adapter, batch) -> dict[str, torch.Tensor]:
    params = adapter.params()
    loss, _ = adapter.lower(params, batch)
    grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params, grads))


def test_pseudo_smpl_loss_is_zero_at_its_targets_and_positive_elsewhere(body):
    torch.manual_seed(0)
    net, other = HMR(MICRO).eval(), HMR(MICRO).eval()
    images = torch.rand(2, 3, 32, 32)
    w = PseudoWeights()
    targets = aux_targets(net, body, images, w)
    assert targets.vertices is not None and targets.vertices.shape[0] == 2
    with torch.no_grad():
        same, terms = pseudo_smpl_loss(body, net(images), targets, w)
        diff, _ = pseudo_smpl_loss(body, other(images), targets, w)
    assert float(same) == pytest.approx(0.0, abs=1e-10)
    assert set(terms) == {"aux_joints", "aux_rot", "aux_betas", "aux_vertices"}
    assert float(diff) > 1e-4
    # Without vertices (weight 0) the points-only path gives the same joints term.
    w0 = dataclasses.replace(w, vertices=0.0)
    t0 = aux_targets(net, body, images, w0)
    assert t0.vertices is None
    with torch.no_grad():
        out = other(images)
        _, a = pseudo_smpl_loss(body, out, t0, w0)
        _, b = pseudo_smpl_loss(body, out, targets, w)
    assert float(a["aux_joints"]) == pytest.approx(float(b["aux_joints"]), rel=1e-5)


def test_dualnet_term_enters_the_online_loss_and_follows_the_auxiliary_network(
        body, frames, tmp_path):
    torch.manual_seed(3)
    model = HMR(MICRO)
    samples = adapt_samples(frames[:3])
    grads = {}
    for name, weight, aux_seed in (("off", 0.0, 1), ("aux1", 1.0, 1), ("aux2", 1.0, 2)):
        worker, _ = _worker(model, body, samples,
                            _cfg(**{"dualnet.weight": weight,
                                    "dualnet.aux": _aux_file(tmp_path, aux_seed)}))
        adapter = worker.adapter
        batch = _first_batch(worker)
        _, terms = adapter.lower(adapter.params(), batch)
        assert ("dualnet" in terms) == (weight > 0)
        if weight > 0:
            assert float(terms["dualnet"].detach()) > 0
            assert not any(p.requires_grad for p in adapter.aux.parameters())
        grads[name] = _frame_grad(adapter, batch)
    for a, b in (("off", "aux1"), ("aux1", "aux2")):
        assert any(not torch.allclose(grads[a][n], grads[b][n]) for n in grads[a]), (a, b)


def test_an_auxiliary_copy_of_the_start_adds_no_gradient_at_first(body, frames, tmp_path):
    # f_u = f_w: the pseudo-SMPL targets are the network's own prediction (zero term, zero
    # gradient), so the first step is plain L_F; it acts only once the weights move.
    torch.manual_seed(5)
    model = HMR(MICRO).eval()
    path = tmp_path / "same.pt"
    save_checkpoint(path, model)
    samples = adapt_samples(frames[:3])
    off, _ = _worker(model, body, samples, _cfg())
    on, _ = _worker(model, body, samples,
                    _cfg(**{"dualnet.weight": 10.0, "dualnet.aux": str(path)}))
    g_off, g_on = _frame_grad(off.adapter, _first_batch(off)), _frame_grad(on.adapter,
                                                                           _first_batch(on))
    for n in g_off:
        torch.testing.assert_close(g_on[n], g_off[n], rtol=1e-4, atol=1e-7)


def test_a_missing_or_mismatched_auxiliary_network_is_a_clear_error(body, tmp_path):
    model = HMR(MICRO)
    with pytest.raises(FileNotFoundError, match="nothere"):
        Adapter(model, body, _cfg(**{"dualnet.weight": 1.0,
                                     "dualnet.aux": str(tmp_path / "nothere.pt")}))
    big = dataclasses.replace(MICRO, input_size=64)
    with pytest.raises(ValueError, match="64 px"):
        Adapter(model, body, _cfg(**{"dualnet.weight": 1.0,
                                     "dualnet.aux": _aux_file(tmp_path, 1, big)}))
    with pytest.raises(ConfigError, match="adapt.dualnet.weight"):
        replace_path(PipelineConfig(), "adapt.dualnet.weight", -1.0)


def test_per_frame_tto_starts_every_frame_from_the_start_weights(body, frames):
    # k steps on frame 2 after k steps on frames 0 and 1 with reset_each_frame: exactly the
    # weights of k steps on frame 2 alone; without the reset, the earlier frames carry over.
    torch.manual_seed(7)
    model = HMR(MICRO)
    samples = adapt_samples(frames[:3])
    cfg = _cfg(steps_per_frame=3, reset_each_frame=True)

    def after(run_on: list[int], c: AdaptConfig) -> tuple[dict, TorchBackend]:
        worker, backend = _worker(model, body, [], c)
        for i in run_on:
            worker.submit([samples[i]])
            assert worker.run_pending() == 3
        return worker.adapter.state_dict(), backend

    chained, backend = after([0, 1, 2], cfg)
    alone, _ = after([2], cfg)
    carried, _ = after([0, 1, 2], dataclasses.replace(cfg, reset_each_frame=False))
    source = model.state_dict()
    for k in alone:
        torch.testing.assert_close(chained[k], alone[k], rtol=0, atol=1e-6)
    moved = [k for k in alone if not torch.equal(alone[k], source[k].float())]
    assert moved and any(not torch.allclose(carried[k], alone[k], atol=1e-6) for k in moved)
    # What inference got last is the frame-2 weights (published after its steps).
    for k, v in backend.model.state_dict().items():
        torch.testing.assert_close(v, chained[k], rtol=0, atol=0)


def test_node_parameters_map_to_the_dualnet_config():
    from hmr_ros.ros.params import load_parameters

    cfg, _ = load_parameters({"adapt.dualnet.weight": 2.0, "adapt.dualnet.aux": "/x/aux.pt",
                              "adapt.reset_each_frame": True})
    assert (cfg.adapt.dualnet.weight, cfg.adapt.dualnet.aux, cfg.adapt.reset_each_frame) == (
        2.0, "/x/aux.pt", True)
    with pytest.raises(ConfigError, match="adapt.dualnet.weight"):
        load_parameters({"adapt.dualnet.weight": -1.0})


@pytest.mark.ros
def test_rclpy_node_builds_its_adapter_with_the_auxiliary_network_from_parameters():
    """The node's adapt.dualnet.* parameters reach its adapter (the bundled regressor stands
    in for the auxiliary network: any checkpoint of the same crop size serves)."""
    from ros_harness import require_ros

    require_ros("rclpy")
    import rclpy
    from rclpy.parameter import Parameter

    from hmr_ros.model.weights import default_weights_path
    from hmr_ros.ros.node import HmrRosNode

    rclpy.init()
    try:
        node = HmrRosNode(parameter_overrides=[
            Parameter("adapt.dualnet.weight", value=2.0),
            Parameter("adapt.dualnet.aux", value=str(default_weights_path()))])
        try:
            adapter = node.pipeline.adaptation.adapter
            assert adapter.cfg.dualnet.weight == 2.0 and adapter.aux is not None
            assert not any(p.requires_grad for p in adapter.aux.parameters())
        finally:
            node.shutdown()
            node.destroy_node()
        with pytest.raises(ConfigError, match="adapt.dualnet.weight"):
            HmrRosNode(parameter_overrides=[Parameter("adapt.dualnet.weight", value=-1.0)])
    finally:
        rclpy.shutdown()


def test_the_shipped_dualnet_pair_loads_beside_the_bundled_regressor():
    from hmr_ros.model import load_checkpoint
    from hmr_ros.model.weights import (
        DUALNET_WEIGHTS,
        default_weights_path,
        dualnet_aux_path,
    )

    main_path = default_weights_path().with_name(DUALNET_WEIGHTS)
    aux_path = dualnet_aux_path()  # the default of adapt.dualnet.aux
    assert aux_path.name == main_path.name + ".aux.pt"
    bundled = load_checkpoint(default_weights_path())
    total = 0
    for path in (main_path, aux_path):
        state = torch.load(path, weights_only=True)["state_dict"]
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
        total += path.stat().st_size
        loaded = load_checkpoint(path)
        assert loaded.config == bundled.config  # same architecture and crop size
        assert loaded.meta["source"] == "hmr-ros train-meta (DualNet)"
        # Meta-trained from the bundled regressor: close to it, not equal.
        a, b = loaded.model.state_dict(), bundled.model.state_dict()
        assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert total <= 20e6  # weights/'s budget for the pair
