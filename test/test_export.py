"""ONNX export (`hmr-ros export`), the torch-name -> initializer-name map, hashes and cache keys.

One export of a tiny model through the CLI serves most tests (the dynamo exporter takes several
seconds per call on this CPU). Its weights are made unique per tensor first, so that an
initializer holding the same values as a state-dict entry proves the mapping is right, not just
that some initializer has that name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hmr_ros.cli import main  # noqa: E402
from hmr_ros.model import HMR, get_preset, save_checkpoint  # noqa: E402
from hmr_ros.model.errors import ExportError, TensorRTUnavailable  # noqa: E402
from hmr_ros.model.export import (  # noqa: E402
    INPUT_NAME,
    OUTPUT_NAMES,
    engine_cache_key,
    export_tensorrt,
    load_onnx_export,
    map_initializers,
    model_hash,
    names_path_for,
)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _unique_tiny(seed: int = 0) -> HMR:
    """hmr_tiny whose every state-dict tensor holds values no other tensor holds.

    Fresh GroupNorms are all ones/zeros (as are the decoder biases and `init_shape`) and would
    be indistinguishable; a small per-tensor offset makes them distinct. Conv and linear
    weights are random, hence unique already. The decoders are scaled up so that the outputs
    depend on the image.
    """
    torch.manual_seed(seed)
    model = HMR(get_preset("hmr_tiny")).eval()
    with torch.no_grad():
        for dec in (model.decpose, model.decshape, model.deccam):
            dec.weight.mul_(30.0)
        for i, (key, t) in enumerate(model.state_dict().items()):
            if t.dim() == 1 or key.startswith("init_"):
                t.add_(1e-3 * (i + 1))
    return model


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    """(model, onnx path, stdout) of `hmr-ros export --format onnx` on a saved checkpoint."""
    tmp = tmp_path_factory.mktemp("export")
    model = _unique_tiny()
    ckpt = save_checkpoint(tmp / "tiny.pt", model, meta={"model_version": 1})
    out = tmp / "tiny.onnx"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", "--format", "onnx", "--weights", str(ckpt), "--out", str(out),
                     "--batch", "4"])
    assert code == 0
    return model, out, stdout.getvalue()


def _crops(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_cli_writes_loadable_onnx_with_dynamic_batch(cli_export):
    model, out, stdout = cli_export
    assert out.is_file() and names_path_for(out).is_file()
    assert str(out) in stdout and names_path_for(out).name in stdout
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 64, 64]

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 6):  # 6 > --batch: the ONNX batch dimension is not bounded
        x = torch.from_numpy(_crops(batch, 64, seed=batch)).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            ref = model(x)
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
        expected = (ref.pose6d, ref.rotmat, ref.betas, ref.cam)
        for name, g, e in zip(OUTPUT_NAMES, got, expected):
            assert g.shape == tuple(e.shape), name
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0, err_msg=name)
    # The test can fail: different crops give clearly different answers.
    assert float(np.abs(got[0][0] - got[0][1]).max()) > 1e-2


def test_every_weight_maps_to_its_own_initializer(cli_export):
    model, out, _ = cli_export
    record = load_onnx_export(out)
    state = model.state_dict()
    assert set(record.names) == set(state) and record.unused == ()
    assert len(set(record.names.values())) == len(record.names)  # no sharing, no merging
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    for key, tensor in state.items():
        name = record.names[key]
        assert name in inits, key
        # Values are unique per tensor, so equality pins down the right initializer.
        np.testing.assert_array_equal(inits[name], tensor.numpy(), err_msg=key)
    # GroupNorm affine and conv weights are there under their torch names.
    for key in ("bn1.weight", "bn1.bias", "layer2.0.downsample.1.weight", "conv1.weight",
                "init_pose", "init_cam"):
        assert record.names[key] == key
    # Nothing folded into an anonymous initializer derived from a weight: the only other
    # initializers are small constants (shape arithmetic, the pixel statistics).
    for name, value in inits.items():
        if name not in record.names.values():
            assert value.size <= 8, name


def test_names_file_records_the_export(cli_export):
    model, out, _ = cli_export
    data = json.loads(names_path_for(out).read_text())
    assert data["format"] == "hmr_ros.onnx_names"
    assert data["input"] == INPUT_NAME and data["outputs"] == list(OUTPUT_NAMES)
    assert data["input_size"] == 64 and data["max_batch"] == 4 and data["opset"] == 18
    assert data["model_hash"] == model_hash(model.state_dict(), model.config)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["hmr_ros.model_hash"] == data["model_hash"]


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here; this tests its absence")
def test_cli_tensorrt_without_tensorrt_returns_2(tmp_path, capsys):
    engine = tmp_path / "tiny.engine"
    assert main(["export", "--format", "tensorrt", "--out", str(engine), "--fp16"]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err
    assert not engine.exists() and not engine.with_suffix(".onnx").exists()
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        export_tensorrt(tmp_path / "missing.onnx", engine)
    assert issubclass(TensorRTUnavailable, RuntimeError)


def test_cli_reports_unreadable_weights(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", "--weights", str(bad), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "cannot load the regressor weights" in capsys.readouterr().err


def test_load_onnx_export_needs_the_names_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    with pytest.raises(ExportError, match="weight-name map"):
        load_onnx_export(path)
    names_path_for(path).write_text("{}")
    with pytest.raises(ExportError, match="not an hmr_ros weight-name map"):
        load_onnx_export(path)


def _graph_with(initializers: dict[str, np.ndarray]) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v, name=k) for k, v in initializers.items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    node = helper.make_node("Identity", ["x"], ["y"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    return helper.make_model(helper.make_graph([node], "g", [x], [y], inits))


def test_map_initializers_rejects_what_adaptation_could_not_reach():
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.ones(2)
    state = {"fc.weight": w, "fc.bias": b, "bn.num_batches_tracked": torch.tensor(3)}
    names, unused = map_initializers(_graph_with({"fc.weight": w.numpy(), "fc.bias": b.numpy()}),
                                     state)
    assert names == {"fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    assert unused == ("bn.num_batches_tracked",)
    # A folded weight (missing name), a different value, a different shape: all errors.
    with pytest.raises(ExportError, match="fc.bias: no initializer"):
        map_initializers(_graph_with({"fc.weight": w.numpy()}), state)
    with pytest.raises(ExportError, match="different values"):
        map_initializers(_graph_with({"fc.weight": w.numpy(), "fc.bias": 2 * b.numpy()}), state)
    with pytest.raises(ExportError, match="fc.weight: no initializer of shape"):
        map_initializers(_graph_with({"fc.weight": w.numpy().T.copy(), "fc.bias": b.numpy()}),
                         state)


def test_model_hash_follows_weights_config_and_bytes():
    torch.manual_seed(0)
    model = HMR(get_preset("hmr_tiny"))
    state = model.state_dict()
    h = model_hash(state, model.config)
    assert len(h) == 64 and h == model_hash({k: v.clone() for k, v in state.items()},
                                            model.config)
    changed = {k: v.clone() for k, v in state.items()}
    changed["layer4.0.bn2.bias"][3] += 1e-6
    assert model_hash(changed, model.config) != h
    assert model_hash(state, get_preset("hmr_tiny", n_iter=2)) != h
    assert model_hash(state) != h
    assert model_hash(b"onnx bytes") == model_hash(bytearray(b"onnx bytes"))
    assert model_hash(b"onnx bytes") != model_hash(b"onnx bytez")


def test_engine_cache_key_changes_with_every_input():
    base = ("NVIDIA GeForce RTX 4090", "10.3.0", "ab" * 32, False, 8)
    key = engine_cache_key(*base)
    assert key == engine_cache_key(*base)
    assert Path(key).name == key and all(c.isalnum() or c in "-." for c in key)
    variants = [
        ("NVIDIA GeForce RTX 3090", *base[1:]),
        ("NVIDIA GeForce RTX-4090", *base[1:]),  # same slug, different GPU string
        (base[0], "10.4.0", *base[2:]),
        (*base[:2], "cd" * 32, *base[3:]),
        (*base[:3], True, base[4]),
        (*base[:4], 16),
    ]
    keys = {engine_cache_key(*v) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    assert "fp16" in engine_cache_key(*variants[4]) and "fp32" in key
