"""Our checkpoint format (save/load) and the SPIN/BOA importers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hmr_ros.model import (
    HMR,
    CheckpointError,
    CheckpointKeyError,
    get_preset,
    import_boa,
    import_spin,
    load_checkpoint,
    save_checkpoint,
)
from hmr_ros.model.checkpoint import FORMAT, FORMAT_VERSION


def _randomise(model: HMR, seed: int) -> HMR:
    """Make every state entry distinctive, so that a load that skipped one would be noticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.startswith("dec"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.01)
            elif name.endswith(("running_mean", "bias")) or ".bn" in name or "bn1" in name:
                t.add_(torch.randn(t.shape, generator=g) * 0.05)
    return model.eval()


def _image(size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_same_outputs(a: HMR, b: HMR, size: int) -> None:
    x = _image(size)
    with torch.inference_mode():
        oa, ob = a.eval()(x), b.eval()(x)
    for field in ("pose6d", "rotmat", "betas", "cam"):
        torch.testing.assert_close(getattr(oa, field), getattr(ob, field), atol=0, rtol=0)


def _assert_same_state(model: HMR, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k


# --- our format ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_save_load_round_trip(tmp_path, norm):
    torch.manual_seed(0)
    model = _randomise(HMR(get_preset("hmr_tiny", norm=norm, n_iter=2)), seed=1)
    meta = {"source": "unit test", "model_version": 3, "train": {"lr": 1e-4, "steps": [1, 2]}}
    path = save_checkpoint(tmp_path / "m.pt", model, meta=meta)
    assert path == tmp_path / "m.pt"
    # Atomic write: only the final file remains, no temporaries.
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]

    raw = torch.load(path, weights_only=True)  # plain types only, no pickled classes
    assert raw["format"] == FORMAT and raw["format_version"] == FORMAT_VERSION
    assert raw["config"]["norm"] == norm and raw["config"]["n_iter"] == 2

    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.model.config == model.config
    assert loaded.meta == meta
    assert not loaded.model.training
    _assert_same_state(loaded.model, model.state_dict())
    _assert_same_outputs(model, loaded.model, model.config.input_size)


def test_a_float16_checkpoint_is_half_the_size_and_loads_as_float32(tmp_path):
    model = _randomise(HMR(get_preset("hmr_tiny", n_iter=2)), seed=3)
    full = save_checkpoint(tmp_path / "full.pt", model)
    half = save_checkpoint(tmp_path / "half.pt", model, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    raw = torch.load(half, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in raw.values() if v.is_floating_point())
    loaded = load_checkpoint(half).model
    for k, v in loaded.state_dict().items():
        ref = model.state_dict()[k]
        assert v.dtype == ref.dtype, k  # back in the model's own type
        if v.is_floating_point():
            torch.testing.assert_close(v, ref.half().float(), rtol=0, atol=0)


def test_save_overwrites_and_rejects_non_plain_meta(tmp_path):
    a = HMR(get_preset("hmr_tiny"))
    b = _randomise(HMR(get_preset("hmr_tiny", n_iter=1)), seed=2)
    path = tmp_path / "m.pt"
    save_checkpoint(path, a, meta={"v": 1})
    save_checkpoint(path, b, meta={"v": 2})
    loaded = load_checkpoint(path)
    assert loaded.meta == {"v": 2} and loaded.config.n_iter == 1

    with pytest.raises(TypeError, match=r"meta\['when'\]"):
        save_checkpoint(tmp_path / "bad.pt", a, meta={"when": object()})
    with pytest.raises(TypeError, match="keys must be str"):
        save_checkpoint(tmp_path / "bad.pt", a, meta={1: "x"})
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_save_creates_missing_folders(tmp_path):
    """The node's ~/save_adaptation default (runs/adapted.pt) names a folder that a fresh
    working directory lacks: it was a FileNotFoundError from mkstemp."""
    model = HMR(get_preset("hmr_tiny"))
    path = save_checkpoint(tmp_path / "runs" / "deep" / "adapted.pt", model, meta={"v": 3})
    assert path.is_file() and load_checkpoint(path).meta == {"v": 3}


def _write(tmp_path, obj, name="x.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _valid_payload() -> dict:
    model = HMR(get_preset("hmr_tiny"))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "meta": {},
    }


def test_load_rejects_foreign_and_broken_files(tmp_path):
    with pytest.raises(CheckpointError, match="not an hmr_ros checkpoint"):
        load_checkpoint(_write(tmp_path, {"weights": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="import_spin"):
        load_checkpoint(_write(tmp_path, {"model": {"conv1.weight": torch.zeros(1)}}))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize("key", ["format_version", "config", "state_dict"])
def test_load_names_a_missing_entry(tmp_path, key):
    payload = _valid_payload()
    del payload[key]
    with pytest.raises(CheckpointError, match=key):
        load_checkpoint(_write(tmp_path, payload))


def test_load_rejects_newer_version_bad_config_and_wrong_weights(tmp_path):
    payload = _valid_payload()
    payload["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(_write(tmp_path, payload))

    payload = _valid_payload()
    payload["config"]["depth"] = 5
    with pytest.raises(CheckpointError, match="depth"):
        load_checkpoint(_write(tmp_path, payload))

    # Weights of another architecture than the stored config says.
    payload = _valid_payload()
    payload["config"] = get_preset("hmr_tiny", head_hidden=64).to_dict()
    with pytest.raises(CheckpointKeyError, match=r"fc2\.weight: expected \[64, 64\], found"):
        load_checkpoint(_write(tmp_path, payload))


# --- importers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spin_source() -> HMR:
    torch.manual_seed(10)
    return _randomise(HMR(get_preset("hmr_r50", norm="batch")), seed=11)


@pytest.fixture(scope="module")
def boa_source() -> HMR:
    torch.manual_seed(20)
    return _randomise(HMR(get_preset("hmr_r50")), seed=21)


def _prefixed(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict:
    return {prefix + k: v for k, v in state.items()}


def test_import_spin_file_with_prefix_reproduces_the_model(tmp_path, spin_source):
    state = spin_source.state_dict()
    # SPIN's file: {"model": state_dict, "optimizer": ..., "epoch": ...}
    path = _write(tmp_path, {"model": _prefixed(state), "epoch": 3}, "model_checkpoint.pt")
    model = import_spin(path)
    assert model.config.norm == "batch" and model.config.name == "hmr_r50"
    assert not model.training
    _assert_same_state(model, state)
    _assert_same_outputs(spin_source, model, 224)


def test_import_spin_without_prefix_and_bare_state_dict(spin_source):
    state = spin_source.state_dict()
    # Old checkpoints lack num_batches_tracked: tolerated, the model keeps its own counter.
    no_counter = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for src in ({"model": no_counter}, state):
        model = import_spin(src)
        got = model.state_dict()
        for k, v in no_counter.items():
            assert torch.equal(got[k], v), k


def test_import_boa_file_reproduces_the_model(tmp_path, boa_source):
    state = boa_source.state_dict()
    path = _write(tmp_path, {"model": _prefixed(state)}, "boa.pt")
    model = import_boa(path)
    assert model.config.norm == "group" and model.config.gn_groups == 4
    _assert_same_state(model, state)
    _assert_same_outputs(boa_source, model, 224)


def test_import_names_a_removed_key(boa_source):
    state = _prefixed(boa_source.state_dict())
    del state["module.layer3.1.bn2.weight"]
    with pytest.raises(CheckpointKeyError, match=r"1 missing key.*\n.*layer3\.1\.bn2\.weight"):
        import_boa({"model": state})


def test_import_names_an_extra_key(boa_source):
    state = _prefixed(boa_source.state_dict())
    state["module.fc3.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointKeyError, match=r"unexpected.*\n.*fc3\.weight") as info:
        import_boa({"model": state})
    assert info.value.diff.unexpected == ("fc3.weight",)
    assert not info.value.diff.missing


def test_import_names_a_wrong_shape(spin_source):
    state = dict(spin_source.state_dict())
    state["decshape.weight"] = torch.zeros(11, 1024)
    with pytest.raises(
        CheckpointKeyError, match=r"decshape\.weight: expected \[10, 1024\], found \[11, 1024\]"
    ):
        import_spin({"model": state})


def test_import_lists_many_keys_with_counts(spin_source):
    state = {k: v for k, v in spin_source.state_dict().items() if not k.startswith("layer4.")}
    with pytest.raises(CheckpointKeyError) as info:
        import_spin(state)
    msg = str(info.value)
    n_missing = len(info.value.diff.missing)
    assert n_missing > 10 and f"{n_missing} missing key(s)" in msg
    assert f"and {n_missing - 10} more" in msg


def test_boa_importer_recognises_a_spin_checkpoint(spin_source):
    with pytest.raises(CheckpointKeyError, match=r"(?s)running_mean.*\nhint:.*import_spin"):
        import_boa({"model": _prefixed(spin_source.state_dict())})


def test_spin_importer_recognises_a_boa_checkpoint(boa_source):
    with pytest.raises(CheckpointKeyError, match=r"(?s)\nhint:.*import_boa"):
        import_spin({"model": _prefixed(boa_source.state_dict())})


def test_import_rejects_non_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="state dict"):
        import_spin({"epoch": 3, "optimizer": {}})
    with pytest.raises(CheckpointError, match="expected a dict"):
        import_boa(_write(tmp_path, [torch.zeros(1)]))


# --- hardening (issue 13) ---------------------------------------------------------------------


def test_load_refuses_non_finite_weights(tmp_path):
    """An all-NaN checkpoint loaded silently and NaN bodies were published."""
    payload = _valid_payload()
    payload["state_dict"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point()
                             else v for k, v in payload["state_dict"].items()}
    with pytest.raises(CheckpointError, match=r"non-finite weights .* in \d+ tensor"):
        load_checkpoint(_write(tmp_path, payload))
    one = _valid_payload()
    key = next(k for k, v in one["state_dict"].items() if v.is_floating_point())
    one["state_dict"][key].view(-1)[0] = float("inf")
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_checkpoint(_write(tmp_path, one, "inf.pt"))
    with pytest.raises(CheckpointError, match="non-finite"):
        import_boa({"model": {k: torch.full_like(v, float("nan")) if v.is_floating_point()
                              else v for k, v in
                              HMR(get_preset("hmr_r50", norm="group", gn_groups=4))
                              .state_dict().items()}})


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_every_reader_refuses_pickled_code(tmp_path):
    """No torch.load in the package runs pickled code: checkpoints, imports, train resume."""
    path = _write(tmp_path, {"model": {"w": torch.zeros(1)}, "x": _Evil()})
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        import_spin(path)
    # train.py --resume read last.pt with weights_only=False; no module may do so now.
    import hmr_ros

    package = Path(hmr_ros.__file__).parent
    for py in package.rglob("*.py"):
        text = py.read_text()
        assert "weights_only=False" not in text, py
        assert text.count("torch.load(") == text.count("weights_only=True)"), py


def test_save_removes_orphaned_temp_files(tmp_path):
    """Saves killed before their rename left `.adapted.pt.*.tmp` behind (25 MB after 8)."""
    target = tmp_path / "adapted.pt"
    orphans = [tmp_path / f".adapted.pt.{tag}.tmp" for tag in ("a1b2c3", "zz_9")]
    for o in orphans:
        o.write_bytes(b"partial checkpoint")
    other = tmp_path / ".other.pt.x1.tmp"  # another target's temp file is not ours
    other.write_bytes(b"x")
    save_checkpoint(target, HMR(get_preset("hmr_tiny")))
    assert sorted(os.listdir(tmp_path)) == [".other.pt.x1.tmp", "adapted.pt"]
    assert load_checkpoint(target).config == get_preset("hmr_tiny")
