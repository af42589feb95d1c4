"""Inference backends: ONNX Runtime against torch, weight swaps (also under concurrent
inference), backend selection; TensorRT where it is installed.

Models are built here with fixed seeds (the bundled weights may not exist yet). Their
decoders are scaled up so the outputs depend clearly on the image and on every weight:
HMR's SPIN initialisation (decoder gain 0.01) would otherwise return nearly the mean
parameters whatever the backbone computes, and a 1e-4 agreement would prove little.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time

import numpy as np
import pytest
import torch

from hmr_ros.config import InferenceConfig
from hmr_ros.model import HMR, get_preset
from hmr_ros.model.backends import (
    BackendUnavailable,
    OnnxRuntimeBackend,
    Prediction,
    TensorRTBackend,
    TorchBackend,
    cached_onnx_export,
    crops_to_tensor,
    make_backend,
)
from hmr_ros.model.export import model_hash
from hmr_ros.model.hmr import RegressorOutput

HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime is not installed")
TOL = 1e-4


def _model(preset: str, seed: int = 0) -> HMR:
    torch.manual_seed(seed)
    model = HMR(get_preset(preset)).eval()
    with torch.no_grad():
        for dec in (model.decpose, model.decshape, model.deccam):
            dec.weight.mul_(30.0)
    return model


def _crops(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _torch_out(model: HMR, crops: np.ndarray) -> RegressorOutput:
    with torch.inference_mode():
        return model.eval()(crops_to_tensor(crops))


def _fields(out: RegressorOutput) -> tuple[torch.Tensor, ...]:
    return out.pose6d, out.rotmat, out.betas, out.cam


def _max_diff(a: RegressorOutput, b: RegressorOutput) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(_fields(a), _fields(b)))


def _noisy(state: dict[str, torch.Tensor], seed: int, scale: float = 0.02
           ) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) for k, v in state.items()}


def _with_state(preset: str, state: dict[str, torch.Tensor]) -> HMR:
    model = HMR(get_preset(preset)).eval()
    model.load_state_dict(state)
    return model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One export cache for the module: each model is exported once (several seconds)."""
    return tmp_path_factory.mktemp("engine_cache")


@pytest.fixture(scope="module")
def tiny():
    return _model("hmr_tiny")


@pytest.fixture()
def ort_tiny(tiny, cache):
    # Same folder as make_backend(engine_cache=cache) uses, so that one reuses this export.
    return OnnxRuntimeBackend(tiny, export_dir=cache / "onnx")


# ------------------------------------------------------------------------ ONNX Runtime


@needs_ort
@pytest.mark.parametrize("preset", ["hmr_tiny", "hmr_small"])
def test_onnxruntime_equals_torch(preset, cache):
    model = _model(preset)
    backend = OnnxRuntimeBackend(model, export_dir=cache / "onnx")
    size = model.config.input_size
    assert backend.input_size == size and backend.version == 0
    for batch in (1, 4):
        crops = _crops(batch, size, seed=batch)
        got, ref = backend.predict(crops), _torch_out(model, crops)
        for g, r in zip(_fields(got), _fields(ref)):
            assert g.shape == r.shape and g.dtype == torch.float32
        assert _max_diff(got, ref) < TOL
    # The comparison means something: two crops give clearly different answers.
    assert float((got.pose6d[0] - got.pose6d[1]).abs().max()) > 1e-2


@needs_ort
def test_export_is_cached_by_model_hash(tiny, cache, ort_tiny):
    t0 = time.perf_counter()
    again = OnnxRuntimeBackend(tiny, export_dir=cache / "onnx")
    assert again.export.path == ort_tiny.export.path
    assert time.perf_counter() - t0 < 3.0  # no second export (which takes several seconds)
    assert cached_onnx_export(tiny, cache / "onnx").path == ort_tiny.export.path
    # Other weights (or another architecture) get a file of their own.
    other = _model("hmr_tiny", seed=1)
    assert model_hash(other.state_dict(), other.config) != ort_tiny.export.model_hash
    assert ort_tiny.export.model_hash[:16] in ort_tiny.export.path.name


@needs_ort
def test_update_after_adaptation_step_gives_adapted_outputs(tiny, ort_tiny):
    crops = _crops(3, 64)
    before = ort_tiny.predict(crops)
    # One optimiser step on a loss of the outputs, as the adaptation thread would take.
    student = _with_state("hmr_tiny", tiny.state_dict()).train()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    out = student(crops_to_tensor(crops))
    loss = (out.pose6d - 0.5).square().mean() + out.cam.square().mean()
    loss.backward()
    opt.step()
    adapted = {k: v.detach().clone() for k, v in student.state_dict().items()}

    ort_tiny.update_weights(adapted, version=7)
    assert ort_tiny.version == 7
    got, ref = ort_tiny.predict(crops), _torch_out(_with_state("hmr_tiny", adapted), crops)
    assert _max_diff(got, ref) < TOL
    assert _max_diff(got, before) > 10 * TOL  # the step did change the answer


@needs_ort
def test_every_weight_reaches_its_initializer(tiny, ort_tiny):
    """Change one state-dict tensor at a time: the ONNX Runtime answer must follow torch's."""
    crops = _crops(2, 64)
    base = {k: v.clone() for k, v in tiny.state_dict().items()}
    base_out = _torch_out(tiny, crops)
    g = torch.Generator().manual_seed(3)
    for i, key in enumerate(base):
        state = dict(base)
        state[key] = base[key] + 0.5 * torch.randn(base[key].shape, generator=g)
        ort_tiny.update_weights(state, version=i + 1)
        got = ort_tiny.predict(crops)
        ref = _torch_out(_with_state("hmr_tiny", state), crops)
        assert _max_diff(got, ref) < TOL, key
        assert _max_diff(got, base_out) > TOL, f"{key} has no visible effect"
    assert ort_tiny.version == len(base)


@needs_ort
def test_bad_update_is_rejected_and_keeps_the_old_weights(tiny, ort_tiny):
    crops = _crops(2, 64)
    before = ort_tiny.predict(crops)
    state = _noisy(tiny.state_dict(), seed=5)
    incomplete = {k: v for k, v in state.items() if k != "layer3.0.bn1.weight"}
    with pytest.raises(ValueError, match=r"missing \['layer3.0.bn1.weight'\]"):
        ort_tiny.update_weights(incomplete, version=1)
    with pytest.raises(ValueError, match="unexpected"):
        ort_tiny.update_weights({**state, "extra.weight": torch.zeros(1)}, version=1)
    wrong = dict(state)
    wrong["fc2.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match="fc2.bias: shape"):
        ort_tiny.update_weights(wrong, version=1)
    assert ort_tiny.version == 0
    assert _max_diff(ort_tiny.predict(crops), before) == 0.0
    # Weights may arrive in another dtype (the backend converts to the graph's float32).
    half = {k: v.half() for k, v in state.items()}
    ort_tiny.update_weights(half, version=2)
    ref = _torch_out(_with_state("hmr_tiny", {k: v.float() for k, v in half.items()}), crops)
    assert _max_diff(ort_tiny.predict(crops), ref) < TOL


@needs_ort
def test_inference_keeps_answering_during_swaps(tiny, ort_tiny):
    crops = _crops(2, 64)
    states = [_noisy(tiny.state_dict(), seed=s) for s in range(1, 5)]
    expected = [_torch_out(tiny, crops)] + [_torch_out(_with_state("hmr_tiny", s), crops)
                                            for s in states]
    # The weight sets are far apart compared with the tolerance, so "equals one of them" is
    # unambiguous and a mixture of two sets would match none.
    for i in range(len(expected)):
        for j in range(i):
            assert _max_diff(expected[i], expected[j]) > 100 * TOL

    seen: list[RegressorOutput] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                seen.append(ort_tiny.predict(crops))
        except BaseException as err:  # pragma: no cover - reported by the assert below
            errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version, state in enumerate(states, start=1):
            time.sleep(0.02)
            ort_tiny.update_weights(state, version)
            assert ort_tiny.version == version
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert not errors and len(seen) > 5
    matched = [min(range(len(expected)), key=lambda i: _max_diff(out, expected[i]))
               for out in seen]
    for out, i in zip(seen, matched):
        assert _max_diff(out, expected[i]) < TOL
    # Answers only ever move forward through the published versions, and the last is the
    # newest.
    assert matched == sorted(matched) and matched[-1] == len(states)


# ------------------------------------------------------------------------ selection


def test_make_backend_torch(tiny):
    backend = make_backend(tiny, InferenceConfig(backend="torch"))
    assert isinstance(backend, TorchBackend) and backend.name == "torch"


def test_backends_leave_torchs_thread_pool_alone(tiny):
    """The pool is process-wide: sized once by build_pipeline, never by a backend."""
    threads = torch.get_num_threads()
    make_backend(tiny, InferenceConfig(backend="torch", threads=threads + 2))
    assert torch.get_num_threads() == threads


def test_backend_modules_import_the_real_packages():
    """backends/torch.py and backends/onnxruntime.py share their names with the packages they
    use; their absolute imports must reach the real ones."""
    import hmr_ros.model.backends.onnxruntime as ort_module
    import hmr_ros.model.backends.torch as torch_module

    assert torch_module.torch is torch and ort_module.torch is torch
    assert torch_module.__name__ == "hmr_ros.model.backends.torch"
    if HAVE_ORT:
        import onnxruntime

        assert ort_module._import_onnxruntime() is onnxruntime
    out = TorchBackend(_model("hmr_tiny")).predict(_crops(1, 64))
    assert isinstance(out, Prediction) and isinstance(out, RegressorOutput) and out.version == 0


@needs_ort
def test_make_backend_onnxruntime_uses_the_engine_cache(tiny, cache, ort_tiny):
    cfg = InferenceConfig(backend="onnxruntime", engine_cache=str(cache), threads=1)
    backend = make_backend(tiny, cfg)
    assert isinstance(backend, OnnxRuntimeBackend) and backend.name == "onnxruntime"
    assert backend.export.path == ort_tiny.export.path  # found in <engine_cache>/onnx
    crops = _crops(1, 64)
    assert _max_diff(backend.predict(crops), _torch_out(tiny, crops)) < TOL


def test_make_backend_rejects_unknown_names(tiny):
    with pytest.raises(ValueError, match="unknown inference backend 'openvino'"):
        make_backend(tiny, InferenceConfig(backend="openvino"))


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here; this tests its absence")
def test_tensorrt_unavailable_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(RuntimeError, match="TensorRT is not installed"):
        TensorRTBackend(tiny, cache_dir=tmp_path)
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        make_backend(tiny, InferenceConfig(backend="tensorrt", engine_cache=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # failed before exporting anything


def test_onnxruntime_unavailable_is_a_clear_error(tiny, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(BackendUnavailable, match="needs the onnxruntime package"):
        make_backend(tiny, InferenceConfig(backend="onnxruntime", engine_cache=str(tmp_path)))


def test_backend_errors_keep_their_hierarchy():
    """A caller that catches BackendUnavailable catches a missing TensorRT too, whichever module
    it imports the class from; an export failure is a RuntimeError, not an unavailable backend."""
    from hmr_ros.model.errors import BackendUnavailable as FromErrors
    from hmr_ros.model.errors import ExportError, TensorRTUnavailable

    assert FromErrors is BackendUnavailable
    assert issubclass(TensorRTUnavailable, BackendUnavailable)
    assert issubclass(ExportError, RuntimeError)
    assert not issubclass(ExportError, BackendUnavailable)


@needs_ort
def test_onnxruntime_cuda_needs_its_provider(tiny, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(BackendUnavailable, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
        make_backend(tiny, InferenceConfig(backend="onnxruntime", device="cuda",
                                           engine_cache=str(tmp_path)))


# ------------------------------------------------------------------------ TensorRT


@pytest.fixture(scope="module")
def trt_cache(tmp_path_factory):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT tests need a CUDA GPU and none is available here")
    return tmp_path_factory.mktemp("trt_cache")


@pytest.mark.parametrize("fp16, tol", [(False, 1e-2), (True, 5e-2)])
def test_tensorrt_builds_caches_and_matches_torch(trt_cache, tiny, fp16, tol):
    import tensorrt as trt

    if fp16 and not hasattr(trt.BuilderFlag, "FP16"):
        pytest.skip(f"TensorRT {trt.__version__} has no weakly typed fp16 builds")
    backend = TensorRTBackend(tiny, fp16=fp16, max_batch=4, cache_dir=trt_cache)
    assert backend.engine_path.is_file() and backend.cache_key in backend.engine_path.name
    assert ("fp16" if fp16 else "fp32") in backend.cache_key
    crops = _crops(6, 64)  # more than max_batch: predicted in chunks
    # fp32 engines may use TF32 kernels, hence more than 1e-4.
    assert _max_diff(backend.predict(crops), _torch_out(tiny, crops)) < tol
    mtime = backend.engine_path.stat().st_mtime_ns
    again = TensorRTBackend(tiny, fp16=fp16, max_batch=4, cache_dir=trt_cache)
    assert again.engine_path == backend.engine_path
    assert backend.engine_path.stat().st_mtime_ns == mtime  # loaded, not rebuilt


def test_tensorrt_refit_equals_adapted_torch(trt_cache, tiny):
    backend = TensorRTBackend(tiny, fp16=False, max_batch=4, cache_dir=trt_cache)
    crops = _crops(3, 64)
    before = backend.predict(crops)
    for version in (1, 2, 3):  # both engines get refitted, alternately
        state = _noisy(tiny.state_dict(), seed=version)
        backend.update_weights(state, version)
        assert backend.version == version
        got = backend.predict(crops)
        assert _max_diff(got, _torch_out(_with_state("hmr_tiny", state), crops)) < 1e-2
        assert _max_diff(got, before) > 0.05


def test_tensorrt_answers_during_refits(trt_cache, tiny):
    backend = TensorRTBackend(tiny, fp16=False, max_batch=4, cache_dir=trt_cache)
    crops = _crops(2, 64)
    states = [_noisy(tiny.state_dict(), seed=s) for s in range(10, 14)]
    expected = [_torch_out(tiny, crops)] + [_torch_out(_with_state("hmr_tiny", s), crops)
                                            for s in states]
    seen, errors, stop = [], [], threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                seen.append(backend.predict(crops))
        except BaseException as err:  # pragma: no cover
            errors.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version, state in enumerate(states, start=1):
            time.sleep(0.01)
            backend.update_weights(state, version)
    finally:
        stop.set()
        thread.join()
    assert not errors and seen
    for out in seen:
        assert min(_max_diff(out, e) for e in expected) < 1e-2


# ------------------------------------------------------------------------ benchmark


def test_bench_infer_writes_rows_and_table(tmp_path, capsys):
    import json
    import platform

    from hmr_ros.cli import main

    out = tmp_path / "infer.json"
    assert main(["bench", "infer", "--backends", "torch", "--presets", "hmr_tiny", "--batch",
                 "1", "2", "--repeats", "2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(r["backend"], r["preset"], r["batch"]) for r in data["rows"]] == [
        ("torch", "hmr_tiny", 1), ("torch", "hmr_tiny", 2)]
    for row in data["rows"]:
        assert row["regressor"]["n"] == 2 and row["frame"]["n"] == 2
        # The frame path includes the regressor call, the body model and message packing.
        assert row["frame"]["mean_ms"] > 0 and row["regressor"]["mean_ms"] > 0
        assert row["frame_people_per_s"] == pytest.approx(
            row["batch"] * 1000.0 / row["frame"]["p50_ms"])
        assert row["regressor_people_per_s_mean"] == pytest.approx(
            row["batch"] * 1000.0 / row["regressor"]["mean_ms"])
    assert data["machine"]["cpu_count"] >= 1 and data["settings"]["repeats"] == 2
    printed = capsys.readouterr().out
    assert "| torch | hmr_tiny | 2 |" in printed and data["table_markdown"] in printed
    assert data["table_markdown"].endswith(
        f"Environment: torch {torch.__version__}, numpy {np.__version__}, OpenCV "
        f"{data['environment']['opencv']['version']} (opencv-contrib-python=="
        f"{data['environment']['opencv']['distributions'][0].split('==')[1]}; build "
        f"{data['environment']['opencv']['build_sha256']}), smplx 0.1.28, "
        + (f"onnxruntime {data['environment']['onnxruntime']}, "
           if data["environment"]["onnxruntime"] else "")
        + f"Python {platform.python_version()}, {platform.platform()}.")
