"""`TensorRTBackend`: a refittable TensorRT engine built from the ONNX export; a swap refits a
second copy of the engine by initializer name and swaps the two.

(This module is `hmr_ros.model.backends.tensorrt`; the TensorRT package itself is imported
by `export.import_tensorrt`, never by this module's name.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ExportError, TensorRTUnavailable
from ..export import (
    DEFAULT_MAX_BATCH,
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAMES,
    build_serialized_engine,
    engine_cache_key,
    import_tensorrt,
    model_hash,
)
from ..hmr import HMR
from .base import Prediction, crops_to_tensor
from .onnx_weights import (
    WeightMap,
    cached_onnx_export,
    default_cache_dir,
    import_onnx,
    initializer_specs,
)


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
        onnx = import_onnx()
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
        specs = initializer_specs(proto, sorted(mapped))
        self._weights = WeightMap(self.export, specs)
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

    def predict(self, crops: np.ndarray) -> Prediction:
        """(B, R, R, 3) uint8 crops -> Prediction (float32, CPU) and the version used."""
        slot = self._active  # one read; see the class doc for why this is enough
        x = crops_to_tensor(crops)
        parts: list[list[Tensor]] = []
        with slot.lock:
            for start in range(0, x.shape[0], self.max_batch):
                parts.append(self._run(slot, x[start:start + self.max_batch]))
            version = slot.version  # under the lock that a refit of this engine takes
        return Prediction(*(torch.cat(p) for p in zip(*parts)), version=version)

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
