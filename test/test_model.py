"""HMR model: configuration, shapes, SPIN-compatible names, mean params, functional use."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from hmr_ros.geometry import rot6d_to_matrix
from hmr_ros.model import (
    HMR,
    PRESETS,
    ModelConfig,
    ModelConfigError,
    RegressorOutput,
    default_mean_params,
    get_preset,
    load_mean_params,
)

ROOT_UPRIGHT = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # rotation of pi about x


@pytest.fixture(scope="module")
def r50() -> HMR:
    torch.manual_seed(0)
    return HMR(get_preset("hmr_r50")).eval()


def _images(cfg: ModelConfig, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, cfg.input_size, cfg.input_size, generator=g)


def _zero_decoders(model: HMR) -> None:
    with torch.no_grad():
        for dec in (model.decpose, model.decshape, model.deccam):
            dec.weight.zero_()
            dec.bias.zero_()


# --- configuration ---------------------------------------------------------------------------


def test_presets_describe_the_documented_architectures():
    r50, small, tiny = PRESETS["hmr_r50"], PRESETS["hmr_small"], PRESETS["hmr_tiny"]
    assert (r50.block, r50.layers, r50.width, r50.head_hidden, r50.input_size) == (
        "bottleneck",
        (3, 4, 6, 3),
        64,
        1024,
        224,
    )
    assert (r50.norm, r50.gn_groups, r50.n_iter, r50.dropout) == ("group", 4, 3, 0.5)
    assert r50.feature_dim == 2048
    assert (small.block, small.layers, small.width, small.head_hidden, small.input_size) == (
        "basic",
        (2, 2, 2, 2),
        32,
        512,
        128,
    )
    assert small.feature_dim == 256 and small.norm == "group"
    assert (tiny.layers, tiny.width, tiny.head_hidden, tiny.input_size) == (
        (1, 1, 1, 1),
        16,
        128,
        64,
    )
    assert tiny.feature_dim == 128


def test_config_dict_round_trip_uses_plain_types():
    cfg = get_preset("hmr_small", norm="batch", n_iter=2)
    d = cfg.to_dict()
    assert d["layers"] == [2, 2, 2, 2] and isinstance(d["layers"], list)
    assert d["norm"] == "batch" and d["n_iter"] == 2
    back = ModelConfig.from_dict(d)
    assert back == cfg and isinstance(back.layers, tuple)
    # Missing optional keys take the defaults (an older checkpoint without a newer field).
    assert ModelConfig.from_dict({"name": "x"}) == ModelConfig(name="x")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"colour": "red"}, "colour"),
        ({"block": "wide"}, "block"),
        ({"norm": "layer"}, "norm"),
        ({"layers": [2, 2, 2]}, "layers"),
        ({"layers": [2, 2, 0, 2]}, "layers[2]"),
        ({"width": 0}, "width"),
        ({"width": 64.0}, "width"),
        ({"n_iter": True}, "n_iter"),
        ({"input_size": 16}, "input_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"width": 18}, "gn_groups"),  # 18 channels cannot be split into 4 groups
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(change, fragment):
    d = PRESETS["hmr_tiny"].to_dict()
    d.update(change)
    with pytest.raises(ModelConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        ModelConfig.from_dict(d)


def test_config_validation_covers_replace_and_presets():
    with pytest.raises(ModelConfigError, match="norm"):
        dataclasses.replace(PRESETS["hmr_tiny"], norm="instance")
    with pytest.raises(ModelConfigError, match="hmr_r50"):
        get_preset("hmr_r51")
    with pytest.raises(ModelConfigError, match="depth"):
        get_preset("hmr_tiny", depth=3)
    with pytest.raises(ModelConfigError, match="name"):
        ModelConfig.from_dict({"block": "basic"})
    # BatchNorm does not care about group divisibility.
    assert get_preset("hmr_tiny", norm="batch", width=18).width == 18


# --- shapes and structure --------------------------------------------------------------------


def _check_output(out: RegressorOutput, batch: int) -> None:
    assert isinstance(out, RegressorOutput)
    assert out.pose6d.shape == (batch, 24, 6)
    assert out.rotmat.shape == (batch, 24, 3, 3)
    assert out.betas.shape == (batch, 10)
    assert out.cam.shape == (batch, 3)
    for t in (out.pose6d, out.rotmat, out.betas, out.cam):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    # rotmat must be the orthonormal version of pose6d, with determinant +1.
    eye = torch.eye(3).expand_as(out.rotmat)
    torch.testing.assert_close(out.rotmat @ out.rotmat.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        torch.linalg.det(out.rotmat), torch.ones(batch, 24), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(out.rotmat, rot6d_to_matrix(out.pose6d))


@pytest.mark.parametrize("name", ["hmr_tiny", "hmr_small"])
def test_output_shapes_small_presets(name):
    torch.manual_seed(0)
    cfg = get_preset(name)
    model = HMR(cfg).eval()
    with torch.inference_mode():
        out = model(_images(cfg, 2))
    _check_output(out, 2)
    assert model.config is cfg


def test_output_shapes_r50(r50):
    with torch.inference_mode():
        out = r50(_images(r50.config, 1))
    _check_output(out, 1)


def test_r50_state_dict_has_spin_names_and_shapes(r50):
    sd = r50.state_dict()
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.weight": (64,),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.weight": (256,),
        "layer3.5.conv2.weight": (256, 256, 3, 3),
        "layer4.2.bn3.weight": (2048,),
        "fc1.weight": (1024, 2048 + 144 + 10 + 3),
        "fc2.weight": (1024, 1024),
        "decpose.weight": (144, 1024),
        "decshape.weight": (10, 1024),
        "deccam.weight": (3, 1024),
        "init_pose": (1, 144),
        "init_shape": (1, 10),
        "init_cam": (1, 3),
    }
    for key, shape in expected.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    # Non-persistent normalisation buffers stay out of the state dict but exist on the module.
    assert "pixel_mean" not in sd and "pixel_std" not in sd
    assert r50.pixel_mean.shape == (1, 3, 1, 1)
    assert not any(k.startswith("backbone.") or k.startswith("fc.") for k in sd)
    # GroupNorm variant: no BatchNorm statistics anywhere.
    assert not any("running_mean" in k for k in sd)
    # SPIN's HMR has exactly this many parameters (ResNet-50 without fc + the head).
    assert sum(p.numel() for p in r50.parameters()) == 26_977_501


def test_small_preset_parameter_count():
    n = sum(p.numel() for p in HMR(get_preset("hmr_small")).parameters())
    assert 2_500_000 <= n <= 4_500_000


def test_group_and_batch_norm_variants():
    gn = HMR(get_preset("hmr_tiny"))
    bn = HMR(get_preset("hmr_tiny", norm="batch"))
    gn_norms = [m for m in gn.modules() if isinstance(m, nn.GroupNorm)]
    assert gn_norms and all(m.num_groups == 4 for m in gn_norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert not any(isinstance(m, nn.GroupNorm) for m in bn.modules())
    assert isinstance(bn.bn1, nn.BatchNorm2d) and isinstance(gn.bn1, nn.GroupNorm)
    assert isinstance(gn.layer2[0].downsample[1], nn.GroupNorm)
    # Same parameter names and shapes: only BatchNorm's buffers differ.
    gn_params = {k: v.shape for k, v in gn.named_parameters()}
    bn_params = {k: v.shape for k, v in bn.named_parameters()}
    assert gn_params == bn_params
    extra = set(bn.state_dict()) - set(gn.state_dict())
    assert extra and all(
        k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in extra
    )
    assert set(gn.state_dict()) <= set(bn.state_dict())
    # GroupNorm: a sample's output does not depend on the rest of the batch even in train mode,
    # which is why BOA can adapt at batch size 1.
    x = _images(gn.config, 3)
    gn.train()
    gn.drop1.p = gn.drop2.p = 0.0
    with torch.no_grad():
        torch.testing.assert_close(gn(x).cam[:1], gn(x[:1]).cam, atol=1e-5, rtol=1e-4)


def test_normalisation_is_inside_the_model():
    model = HMR(get_preset("hmr_tiny")).eval()
    x = _images(model.config, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(
            model.extract_features(x), model.forward_features((x - mean) / std)
        )
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 64, 64))


def test_dropout_active_in_train_only():
    torch.manual_seed(0)
    model = HMR(get_preset("hmr_tiny"))
    x = _images(model.config, 1)
    with torch.no_grad():
        model.eval()
        a, b = model(x).betas, model(x).betas
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        model.train()
        c = model(x).betas
    assert not torch.equal(a, c)


# --- mean parameters -------------------------------------------------------------------------


def test_default_mean_params():
    mp = default_mean_params()
    assert mp.pose.shape == (144,) and mp.shape.shape == (10,) and mp.cam.shape == (3,)
    rot = rot6d_to_matrix(mp.pose.view(24, 6))
    torch.testing.assert_close(rot[0], ROOT_UPRIGHT)
    torch.testing.assert_close(rot[1:], torch.eye(3).expand(23, 3, 3))
    torch.testing.assert_close(mp.shape, torch.zeros(10))
    torch.testing.assert_close(mp.cam, torch.tensor([0.9, 0.0, 0.0]))


def test_zero_decoders_output_the_mean():
    model = HMR(get_preset("hmr_tiny")).eval()
    _zero_decoders(model)
    with torch.no_grad():
        out = model(_images(model.config, 2))
    mp = default_mean_params()
    torch.testing.assert_close(out.pose6d, mp.pose.view(1, 24, 6).expand(2, 24, 6))
    torch.testing.assert_close(out.rotmat[:, 0], ROOT_UPRIGHT.expand(2, 3, 3))
    torch.testing.assert_close(out.rotmat[:, 1:], torch.eye(3).expand(2, 23, 3, 3))
    torch.testing.assert_close(out.betas, torch.zeros(2, 10))
    torch.testing.assert_close(out.cam, torch.tensor([[0.9, 0.0, 0.0]] * 2))


def test_untrained_model_starts_near_the_mean():
    # SPIN's decoder init (xavier, gain 0.01) keeps the initial estimate close to the mean.
    torch.manual_seed(0)
    model = HMR(get_preset("hmr_tiny")).eval()
    with torch.no_grad():
        out = model(_images(model.config, 1))
    assert (out.cam - torch.tensor([0.9, 0.0, 0.0])).abs().max() < 0.1
    bound = 0.01 * math.sqrt(6.0 / (128 + 144))
    assert model.decpose.weight.abs().max() <= bound + 1e-9
    assert torch.equal(model.decpose.bias, torch.zeros(144))


def test_load_mean_params_from_spin_npz(tmp_path):
    rng = np.random.default_rng(0)
    pose, shape, cam = rng.normal(size=144), rng.normal(size=10), np.array([0.8, 0.1, -0.1])
    path = tmp_path / "smpl_mean_params.npz"
    np.savez(path, pose=pose, shape=shape, cam=cam)  # float64, as SPIN's file
    mp = load_mean_params(path)
    assert mp.pose.dtype == torch.float32
    np.testing.assert_allclose(mp.pose.numpy(), pose, rtol=1e-6)
    np.testing.assert_allclose(mp.cam.numpy(), cam, rtol=1e-6)
    model = HMR(get_preset("hmr_tiny"), mean_params=mp)
    assert model.init_pose.shape == (1, 144) and model.init_cam.shape == (1, 3)
    np.testing.assert_allclose(model.init_shape[0].numpy(), shape, rtol=1e-6)
    _zero_decoders(model)
    with torch.no_grad():
        out = model.eval()(_images(model.config, 1))
    np.testing.assert_allclose(out.betas[0].numpy(), shape, rtol=1e-6)

    np.savez(tmp_path / "bad.npz", pose=pose, shape=shape)
    with pytest.raises(ValueError, match="'cam'"):
        load_mean_params(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", pose=pose[:72], shape=shape, cam=cam)
    with pytest.raises(ValueError, match="'pose'"):
        load_mean_params(tmp_path / "bad2.npz")


# --- functional use (adaptation engine) ------------------------------------------------------


def test_functional_call_uses_substituted_parameters():
    model = HMR(get_preset("hmr_tiny")).eval()
    _zero_decoders(model)
    params = dict(model.named_parameters())
    shift = torch.tensor([0.01, 0.02, -0.03])
    subst = {**params, "deccam.bias": params["deccam.bias"] + shift}
    x = _images(model.config, 1)
    with torch.no_grad():
        out = functional_call(model, subst, (x,))
        ref = model(x)
    # Each of the n_iter refinement steps adds the decoder output once.
    n = model.config.n_iter
    torch.testing.assert_close(out.cam, ref.cam + n * shift)
    # The module itself is untouched.
    assert torch.equal(model.deccam.bias, torch.zeros(3))


def test_second_order_gradients_through_functional_call():
    torch.manual_seed(0)
    model = HMR(get_preset("hmr_tiny")).train()
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    x = _images(model.config, 1, seed=1)
    x_val = _images(model.config, 1, seed=2)
    target = torch.tensor([[1.0, 0.1, -0.1]])

    def loss(p: dict[str, torch.Tensor], img: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (img,))
        return ((out.cam - target) ** 2).sum() + (out.pose6d**2).mean() + (out.betas**2).mean()

    # One inner SGD step kept in the graph, then an outer loss: BOA's meta-update pattern.
    inner = loss(params, x)
    grads = torch.autograd.grad(inner, [params[n] for n in names], create_graph=True)
    assert all(g.grad_fn is not None for g in grads)
    fast = {n: params[n] - 0.1 * g for n, g in zip(names, grads)}
    outer = loss(fast, x_val)
    meta = torch.autograd.grad(
        outer, [params["conv1.weight"], params["fc1.weight"]], retain_graph=True
    )
    assert all(torch.isfinite(g).all() for g in meta)
    # The second-order term is really there: a Hessian-vector product is finite and non-zero.
    (hvp,) = torch.autograd.grad(
        sum((g * g).sum() for g in grads), params["conv1.weight"], allow_unused=False
    )
    assert torch.isfinite(hvp).all() and hvp.abs().sum() > 0
