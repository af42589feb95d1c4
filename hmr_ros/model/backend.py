"""Inference backends: crops in, SMPL parameters out, with weight swaps that never block.

Every backend answers `predict(crops)` for a batch of uint8 RGB crops and accepts new weights
through `update_weights(state_dict, version)`. The swap builds the new network (or session, or
refits the engine) completely and then replaces one reference, so a `predict` running in
another thread finishes on the weights it started with and the next one sees the new ones.

- `TorchBackend`: eager PyTorch (CPU or CUDA, fp16 on CUDA); a swap deep-copies the module.
- `OnnxRuntimeBackend`: the regressor exported to ONNX (`export.py`); a swap builds a new
  InferenceSession with the adapted weights injected by initializer name.
- `TensorRTBackend`: a refittable engine built from that ONNX; a swap refits a second copy of
  the engine by initializer name and swaps the two.

`make_backend` picks one from an `InferenceConfig`.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ..config import BACKENDS, InferenceConfig
from .errors import BackendUnavailable, ExportError, TensorRTUnavailable
from .export import (
    DEFAULT_MAX_BATCH,
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxExport,
    build_serialized_engine,
    engine_cache_key,
    export_onnx,
    import_tensorrt,
    load_onnx_export,
    model_hash,
)
from .hmr import HMR, RegressorOutput

__all__ = [
    "Backend",
    "BackendUnavailable",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TensorRTUnavailable",
    "TorchBackend",
    "crops_to_tensor",
    "default_cache_dir",
    "make_backend",
]


class Backend(Protocol):
    name: str
    input_size: int

    @property
    def version(self) -> int: ...

    def predict(self, crops: np.ndarray) -> RegressorOutput: ...

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None: ...


def crops_to_tensor(crops: np.ndarray) -> Tensor:
    """(B, R, R, 3) uint8 RGB -> (B, 3, R, R) float32 in [0, 1]."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (B, R, R, 3) RGB, got {crops.shape}")
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0


class TorchBackend:
    """Eager PyTorch on CPU or CUDA, optionally in half precision on CUDA."""

    name = "torch"

    def __init__(self, model: HMR, device: str = "cpu", half: bool = False,
                 threads: int | None = None) -> None:
        self.device = torch.device(device)
        self.half = bool(half and self.device.type == "cuda")
        self.input_size = model.config.input_size
        self.config = model.config
        # torch's pool is process-wide: set once by whoever owns the process (build_pipeline),
        # never per call, or inference and adaptation would keep resizing it for each other.
        if threads:
            torch.set_num_threads(threads)
        # Two copies of the network: one answers, the other (built on the first swap) takes
        # the next weights in place. A swap then costs a few tensor copies instead of a
        # deepcopy of the module, which holds the GIL for ~17 ms (hmr_small) and stalled
        # inference. Each copy has a lock, held by a prediction running on it and by a swap
        # writing into it, so a slow prediction still on the spare is never written under.
        self._active = _Slot(self._prepare(model))
        self._spare: _Slot | None = None
        self._version = 0
        self._swap_lock = threading.Lock()  # serialises writers only

    def _prepare(self, model: HMR) -> HMR:
        model = model.to(self.device).eval()
        if self.half:
            model = model.half()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    @property
    def version(self) -> int:
        return self._version

    @property
    def model(self) -> HMR:
        """The network currently answering (do not modify it in place)."""
        return self._active.model

    def predict(self, crops: np.ndarray) -> RegressorOutput:
        x = crops_to_tensor(crops).to(self.device)
        if self.half:
            x = x.half()
        slot = self._active  # one read: a concurrent swap cannot change it mid-call
        with slot.lock, torch.inference_mode():
            out = slot.model(x)
        return RegressorOutput(*(t.float().cpu() for t in (out.pose6d, out.rotmat, out.betas,
                                                            out.cam)))

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None:
        """Swap in new weights: copied into the spare network on the caller's thread, then
        one reference swap. Missing or unexpected names raise (as `strict=True`)."""
        with self._swap_lock:
            if self._spare is None:
                self._spare = _Slot(copy.deepcopy(self._active.model))
            spare = self._spare
            with spare.lock, torch.no_grad():
                target = spare.model.state_dict()
                missing = sorted(set(target) - set(state_dict))
                unexpected = sorted(set(state_dict) - set(target))
                if missing or unexpected:
                    raise KeyError(f"weights do not fit the model: missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]}")
                wrong = [n for n, t in target.items() if tuple(state_dict[n].shape) != t.shape]
                if wrong:
                    raise ValueError(f"weights of the wrong shape: {wrong[:5]}")
                for name, dst in target.items():
                    dst.copy_(state_dict[name])
            self._spare, self._active = self._active, spare
            self._version = version


@dataclass
class _Slot:
    """One copy of the network and the lock of whoever is using it."""

    model: HMR
    lock: threading.Lock = field(default_factory=threading.Lock)


# ------------------------------------------------------------------------ shared helpers


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/hmr_ros` (default `~/.cache/hmr_ros`): exported ONNX, TensorRT engines."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hmr_ros"


def cached_onnx_export(model: HMR, directory: str | os.PathLike[str],
                       max_batch: int = DEFAULT_MAX_BATCH,
                       opset: int = DEFAULT_OPSET) -> OnnxExport:
    """The ONNX export of `model` in `directory`, reused when one of the same weights,
    architecture and opset is there (export takes seconds to tens of seconds).

    `max_batch` is not part of the key: the ONNX batch dimension is symbolic, the value is
    only recorded (TensorRT's profile limit comes from its own argument)."""
    digest = model_hash(model.state_dict(), model.config)
    path = Path(directory) / f"{model.config.name}-{digest[:16]}-op{opset}.onnx"
    if path.is_file():
        try:
            record = load_onnx_export(path)
        except ExportError:
            record = None  # unreadable leftovers of an interrupted run: export again
        if record is not None and record.model_hash == digest and record.opset == opset:
            return record
    return export_onnx(model, path, max_batch=max_batch, opset=opset)


@dataclass(frozen=True)
class _InitializerSpec:
    dtype: np.dtype
    shape: tuple[int, ...]


def _initializer_specs(proto: Any, names: Sequence[str]) -> dict[str, _InitializerSpec]:
    from onnx import helper

    wanted = set(names)
    specs = {i.name: _InitializerSpec(np.dtype(helper.tensor_dtype_to_np_dtype(i.data_type)),
                                      tuple(int(d) for d in i.dims))
             for i in proto.graph.initializer if i.name in wanted}
    missing = sorted(wanted - specs.keys())
    if missing:
        raise ExportError(f"initializer(s) {missing[:5]} of the weight map are not in the graph")
    return specs


class _WeightMap:
    """State dict -> {ONNX initializer name: contiguous array of the initializer's dtype}.

    Strict like `load_state_dict(strict=True)`: a missing, unknown or misshapen key is a
    ValueError, because a weight that silently keeps its old value would make the swapped-in
    model a mixture of two versions. Unused counters (`num_batches_tracked`) are ignored.
    """

    def __init__(self, export: OnnxExport, specs: Mapping[str, _InitializerSpec]) -> None:
        self.names = dict(export.names)
        self.unused = frozenset(export.unused)
        self.specs = dict(specs)

    def arrays(self, state_dict: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        missing = [k for k in self.names if k not in state_dict]
        unknown = [k for k in state_dict if k not in self.names and k not in self.unused]
        if missing or unknown:
            raise ValueError(f"state dict does not match the exported model: missing "
                             f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                             f"{unknown[:5]}{'...' if len(unknown) > 5 else ''}")
        out: dict[str, np.ndarray] = {}
        for key, onnx_name in self.names.items():
            spec = self.specs[onnx_name]
            t = state_dict[key]
            if tuple(t.shape) != spec.shape:
                raise ValueError(f"{key}: shape {list(t.shape)} does not match the exported "
                                 f"{list(spec.shape)}")
            # Through torch for the dtype change: numpy cannot read bfloat16 tensors.
            target = torch.from_numpy(np.empty(0, dtype=spec.dtype)).dtype
            out[onnx_name] = np.ascontiguousarray(
                t.detach().to(device="cpu", dtype=target).numpy())
        return out


def _outputs_from_numpy(arrays: Sequence[np.ndarray]) -> RegressorOutput:
    return RegressorOutput(*(torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in arrays))


# ------------------------------------------------------------------------ ONNX Runtime

# Name of the external-data "file" of the weightless session template. ORT replaces every such
# initializer with the arrays given to add_external_initializers before reading anything, so
# the file never exists; a distinctive name keeps a stray file from ever being picked up.
_PUSHED_WEIGHTS = "hmr_ros-weights-pushed-at-session-creation.bin"


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(
            "the 'onnxruntime' backend needs the onnxruntime package (pip install onnxruntime, "
            f"or onnxruntime-gpu for CUDA) ({e})") from e
    return onnxruntime


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise BackendUnavailable(
            f"exporting the regressor needs the onnx and onnxscript packages ({e})") from e
    return onnx


def _ort_providers(ort: Any, providers: Sequence[str] | None, device: str) -> list[str]:
    available = list(ort.get_available_providers())
    if providers:
        wanted = list(providers)
    elif str(device).startswith("cuda"):
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        wanted = ["CPUExecutionProvider"]
    absent = [p for p in wanted if p not in available]
    if absent:
        hint = (" (the CUDA provider comes with the onnxruntime-gpu package)"
                if "CUDAExecutionProvider" in absent else "")
        raise BackendUnavailable(f"onnxruntime here has no {', '.join(absent)}; available: "
                                 f"{', '.join(available)}{hint}")
    return wanted


def _weightless_template(proto: Any, specs: Mapping[str, _InitializerSpec]) -> bytes:
    """The model with every mapped initializer turned into an external-data reference.

    Why not SessionOptions.add_initializer on the full model: ORT's graph optimisations
    (constant folding, Conv/GroupNorm fusions) run on the model's own initializer values before
    the user-added ones replace them, so part of the network silently keeps the exported
    weights (measured: max error 0.2 on hmr_small with optimisations on; exact with them off,
    which costs the fusions). add_external_initializers substitutes values BEFORE optimisation,
    but only for initializers stored as external data, hence this template. It is also smaller
    to parse than a patched full model (hmr_r50: 1 MB instead of 100 MB per swap, and no
    protobuf re-serialisation of the weights, which took ~2 s there).
    """
    from onnx import TensorProto

    template = copy.deepcopy(proto)
    offset = 0
    for init in template.graph.initializer:
        spec = specs.get(init.name)
        if spec is None:
            continue
        nbytes = int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
        for f in ("raw_data", "float_data", "double_data", "int32_data", "int64_data",
                  "uint64_data"):
            init.ClearField(f)
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", _PUSHED_WEIGHTS), ("offset", str(offset)),
                           ("length", str(nbytes))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
        offset += nbytes
    return template.SerializeToString()


@dataclass(frozen=True)
class _OrtState:
    """What one `predict` reads, replaced as a whole by a swap."""

    session: Any
    version: int


class OnnxRuntimeBackend:
    """ONNX Runtime on CPU (or CUDA with onnxruntime-gpu), weights swappable by name.

    The model is exported once (`export_onnx`), cached by model hash in `export_dir` (a
    temporary folder when None). Every session, the first included, is created from a
    weightless copy of the graph with the weights supplied by initializer name (see
    `_weightless_template`), so the first session and every swapped-in one go through the same
    path. `update_weights` creates the new session on the caller's thread (the adaptation
    worker) and then replaces one reference: a `predict` that already read the old state
    finishes on the old session, which is freed when the last such call returns.
    """

    name = "onnxruntime"

    def __init__(self, model: HMR, providers: Sequence[str] | None = None, threads: int = 1,
                 export_dir: str | os.PathLike[str] | None = None, device: str = "cpu",
                 max_batch: int = DEFAULT_MAX_BATCH, opset: int = DEFAULT_OPSET) -> None:
        self._ort = _import_onnxruntime()
        onnx = _import_onnx()
        self.providers = _ort_providers(self._ort, providers, device)
        self.device = str(device)
        self.input_size = model.config.input_size
        self.config = model.config
        self.threads = max(1, int(threads))
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if export_dir is None:
            # Lives as long as the backend (removed by the object's finaliser).
            self._tmp = tempfile.TemporaryDirectory(prefix="hmr_ros_onnx_")
            export_dir = self._tmp.name
        self.export = cached_onnx_export(model, export_dir,
                                         max_batch=max_batch, opset=opset)
        proto = onnx.load(str(self.export.path))
        specs = _initializer_specs(proto, list(self.export.names.values()))
        self._weights = _WeightMap(self.export, specs)
        self._template = _weightless_template(proto, specs)
        del proto
        self._swap_lock = threading.Lock()  # serialises writers only; readers never take it
        self._state = _OrtState(self._session(model.state_dict()), 0)

    def _session(self, state_dict: Mapping[str, Tensor]) -> Any:
        ort = self._ort
        arrays = self._weights.arrays(state_dict)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT warns about every unused constant
        names = list(arrays)
        # ORT copies the values into the graph while loading, so the arrays (and the OrtValues
        # viewing them) only have to outlive the InferenceSession constructor.
        values = [ort.OrtValue.ortvalue_from_numpy(arrays[n]) for n in names]
        options.add_external_initializers(names, values)
        return ort.InferenceSession(self._template, options, providers=self.providers)

    @property
    def version(self) -> int:
        return self._state.version

    def predict(self, crops: np.ndarray) -> RegressorOutput:
        state = self._state  # one read: a concurrent swap cannot change it mid-call
        x = np.ascontiguousarray(crops_to_tensor(crops).numpy())
        # InferenceSession.run may be called from several threads at once.
        outs = state.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        return _outputs_from_numpy(outs)

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None:
        """Build a session with `state_dict` (all keys of the model's state dict), then swap."""
        with self._swap_lock:
            session = self._session(state_dict)
            self._state = _OrtState(session, int(version))


# ------------------------------------------------------------------------ TensorRT


class _EngineSlot:
    """One deserialised engine with its execution context, CUDA stream and lock.

    The lock is held by `predict` for a whole enqueue + synchronise and by a refit of this
    engine, so a refit can never overlap an inference that uses the same weights.
    """

    def __init__(self, engine: Any, device: torch.device, version: int) -> None:
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context")
        self.stream = torch.cuda.Stream(device=device)
        self.lock = threading.Lock()
        self.version = version


def _prototype_is_half(trt: Any, prototype: Any, name: str) -> bool:
    try:
        return prototype(name).dtype == trt.DataType.HALF
    except Exception:  # older bindings: no prototype for this name, keep the array as is
        return False


class TensorRTBackend:
    """A refittable TensorRT engine on CUDA, fp32 or fp16, batches 1..max_batch.

    Build: the model is exported to ONNX (cached by model hash under `cache_dir/onnx`) and the
    engine is built with BuilderFlag.REFIT (and FP16 if asked), or loaded from
    `cache_dir/engines/<engine_cache_key>.engine` (GPU name, TensorRT version, hash of the ONNX
    bytes, precision, max batch).

    Swaps: two engines are deserialised from the same plan and serve alternately. `predict`
    uses the active one; `update_weights` refits the other one by ONNX initializer name
    (`Refitter.set_named_weights`, then `refit_cuda_engine`) while holding that engine's lock,
    then makes it the active one with a single reference assignment. An inference therefore
    runs either entirely before a refit of its engine starts or entirely after it completed
    (the refit is synchronous): it can never see a half-refitted engine, and it never waits
    for a refit of the engine it uses, because that one is the inactive engine. (A single
    engine guarded by one lock would also be correct but would stall inference for the whole
    refit, which for hmr_r50 is a 100 MB host-to-device upload.) The cost is a second copy of
    the weights on the GPU.
    """

    name = "tensorrt"

    def __init__(self, model: HMR, fp16: bool = False, max_batch: int = DEFAULT_MAX_BATCH,
                 cache_dir: str | os.PathLike[str] | None = None, device: str = "cuda",
                 opset: int = DEFAULT_OPSET) -> None:
        trt = import_tensorrt()
        onnx = _import_onnx()
        from onnx import numpy_helper
        if not torch.cuda.is_available():
            raise TensorRTUnavailable("the 'tensorrt' backend needs a CUDA device, and torch "
                                      "sees none (torch.cuda.is_available() is False)")
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.device = torch.device(device if str(device).startswith("cuda") else "cuda")
        self.fp16 = bool(fp16)
        self.max_batch = int(max_batch)
        self.input_size = model.config.input_size
        self.config = model.config
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        self.export = cached_onnx_export(model, cache / "onnx", max_batch=self.max_batch,
                                         opset=opset)
        onnx_bytes = self.export.path.read_bytes()
        proto = onnx.load_from_string(onnx_bytes)
        mapped = set(self.export.names.values())
        specs = _initializer_specs(proto, sorted(mapped))
        self._weights = _WeightMap(self.export, specs)
        # Constants the refitter may ask for when it has combined them with a weight we set
        # (e.g. the input normalisation folded into conv1).
        self._constants = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer
                           if i.name not in mapped}
        del proto
        self.gpu_name = torch.cuda.get_device_name(self.device)
        self.cache_key = engine_cache_key(self.gpu_name, str(trt.__version__),
                                          model_hash(onnx_bytes), self.fp16, self.max_batch)
        self.engine_path = cache / "engines" / f"{self.cache_key}.engine"
        runtime = trt.Runtime(self._logger)
        engines = self._load_or_build(runtime)
        self._slots = [_EngineSlot(e, self.device, 0) for e in engines]
        self._active = self._slots[0]
        self._swap_lock = threading.Lock()
        self._check_refittable(model)

    def _load_or_build(self, runtime: Any) -> list[Any]:
        plan = self.engine_path.read_bytes() if self.engine_path.is_file() else None
        for attempt in range(2):
            if plan is None:
                with torch.cuda.device(self.device):
                    plan = build_serialized_engine(self.export.path, self.fp16, self.max_batch,
                                                   refit=True, logger=self._logger)
                self.engine_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.engine_path.with_name(self.engine_path.name + f".{os.getpid()}.tmp")
                tmp.write_bytes(plan)
                os.replace(tmp, self.engine_path)
            with torch.cuda.device(self.device):
                engines = [runtime.deserialize_cuda_engine(plan) for _ in range(2)]
            if all(e is not None for e in engines):
                return engines
            if attempt == 0:
                plan = None  # a stale or damaged cached plan: build a fresh one once
        raise RuntimeError(f"TensorRT could not deserialise the engine {self.engine_path}")

    def _check_refittable(self, model: HMR) -> None:
        refittable = set(self._trt.Refitter(self._slots[0].engine, self._logger)
                         .get_all_weights())
        params = {k for k, _ in model.named_parameters()}
        lost = sorted(k for k in params if self.export.names[k] not in refittable)
        if lost:
            raise ExportError(
                f"TensorRT folded {len(lost)} parameter(s) into non-refittable constants "
                f"(e.g. {lost[:3]}); adapted weights could not reach them. Export with another "
                "opset (export_onnx(opset=...)) or use the onnxruntime backend")
        self._refittable = refittable
        # Buffers TensorRT baked in (e.g. the mean-parameter rows) can only keep their values.
        self._frozen = {n: a.copy() for n, a in self._weights.arrays(model.state_dict()).items()
                        if n not in refittable}

    @property
    def version(self) -> int:
        return self._active.version

    def _tensor_dtype(self, slot: _EngineSlot, name: str) -> torch.dtype:
        dt = slot.engine.get_tensor_dtype(name)
        trt = self._trt
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        if dt not in table:
            raise RuntimeError(f"unexpected TensorRT dtype {dt} for {name!r}")
        return table[dt]

    def _run(self, slot: _EngineSlot, x: Tensor) -> list[Tensor]:
        ctx = slot.context
        with torch.cuda.stream(slot.stream):
            # Copy and allocate on the engine's stream, so everything is ordered with it.
            xin = x.to(self.device, dtype=self._tensor_dtype(slot, INPUT_NAME),
                       non_blocking=False).contiguous()
            if not ctx.set_input_shape(INPUT_NAME, tuple(xin.shape)):
                raise RuntimeError(f"TensorRT rejected input shape {tuple(xin.shape)}")
            ctx.set_tensor_address(INPUT_NAME, xin.data_ptr())
            outs = []
            for name in OUTPUT_NAMES:
                shape = tuple(ctx.get_tensor_shape(name))
                out = torch.empty(shape, dtype=self._tensor_dtype(slot, name),
                                  device=self.device)
                ctx.set_tensor_address(name, out.data_ptr())
                outs.append(out)
            if not ctx.execute_async_v3(slot.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        slot.stream.synchronize()
        return [o.float().cpu() for o in outs]

    def predict(self, crops: np.ndarray) -> RegressorOutput:
        slot = self._active  # one read; see the class doc for why this is enough
        x = crops_to_tensor(crops)
        parts: list[list[Tensor]] = []
        with slot.lock:
            for start in range(0, x.shape[0], self.max_batch):
                parts.append(self._run(slot, x[start:start + self.max_batch]))
        return RegressorOutput(*(torch.cat(p) for p in zip(*parts)))

    def _refit(self, engine: Any, arrays: Mapping[str, np.ndarray]) -> None:
        trt = self._trt
        refitter = trt.Refitter(engine, self._logger)
        prototype = getattr(refitter, "get_weights_prototype", None)
        keep: list[np.ndarray] = []  # TensorRT reads the host arrays in refit_cuda_engine

        def put(name: str, array: np.ndarray) -> None:
            # Weights must have the type the engine holds them in (TensorRT >= 10 can say which;
            # engines built from our float32 ONNX hold float32 even with FP16 kernels).
            if prototype is not None and _prototype_is_half(trt, prototype, name):
                array = array.astype(np.float16)
            array = np.ascontiguousarray(array)
            keep.append(array)
            if not refitter.set_named_weights(name, trt.Weights(array)):
                raise RuntimeError(f"TensorRT rejected the weights {name!r} "
                                   f"(shape {array.shape}, {array.dtype})")

        for name, array in arrays.items():
            if name in self._refittable:
                put(name, array)
        for name in refitter.get_missing_weights():
            source = arrays.get(name, self._constants.get(name))
            if source is None:
                raise RuntimeError(f"TensorRT refit needs weights {name!r} that the export "
                                   "does not provide")
            put(name, source)
        missing = list(refitter.get_missing_weights())
        if missing:
            raise RuntimeError(f"TensorRT refit still misses {missing[:5]}")
        if not refitter.refit_cuda_engine():
            raise RuntimeError("TensorRT refit_cuda_engine failed")
        keep.clear()  # only now may the host copies go

    def update_weights(self, state_dict: dict[str, Tensor], version: int) -> None:
        """Refit the inactive engine with `state_dict`, then make it the active one."""
        arrays = self._weights.arrays(state_dict)
        for name, value in self._frozen.items():
            if not np.array_equal(arrays[name], value):
                raise ValueError(f"{name!r} is baked into this TensorRT engine and cannot "
                                 "change by refit")
        with self._swap_lock:
            target = self._slots[1] if self._active is self._slots[0] else self._slots[0]
            # Waits only for a predict that picked this engine before the previous swap.
            with target.lock, torch.cuda.device(self.device):
                self._refit(target.engine, arrays)
                target.version = int(version)
            self._active = target


# ------------------------------------------------------------------------ selection


def make_backend(model: HMR, config: InferenceConfig) -> Backend:
    """The backend the config asks for, built from the (torch) regressor `model`.

    torch: `device`, `half`, `threads`. onnxruntime: CPU provider, or CUDA for device 'cuda';
    `threads`; exports cached in `engine_cache`. tensorrt: always CUDA (a 'cpu' device means
    the default GPU); `half` builds fp16; batches up to `max_people`; engines cached in
    `engine_cache`. Raises ValueError for an unknown backend name and BackendUnavailable (a
    RuntimeError) when the backend's package or device is missing here.
    """
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {config.backend!r}; known: "
                         f"{', '.join(BACKENDS)}")
    if config.backend == "torch":
        return TorchBackend(model, device=config.device, half=config.half,
                            threads=config.threads)
    cache = Path(config.engine_cache) if config.engine_cache else default_cache_dir()
    if config.backend == "onnxruntime":
        return OnnxRuntimeBackend(model, device=config.device, threads=config.threads,
                                  export_dir=cache / "onnx")
    device = config.device if str(config.device).startswith("cuda") else "cuda"
    return TensorRTBackend(model, fp16=config.half, max_batch=max(1, config.max_people),
                           cache_dir=cache, device=device)
