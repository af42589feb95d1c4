"""`Pipeline`: a Frame in, SMPL estimates in the camera frame out.

Per person: a square crop from its 2D keypoints (or its box), the regressor backend, the
crop camera turned into a camera-frame translation with the real intrinsics, and the body
model. The ROS node and the `hmr-ros` commands use only this class.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from .adapt.process_worker import AdapterSpec, ProcessAdaptationWorker
from .adapt.worker import AdaptationWorker, AdaptSample
from .body import BodyModel
from .config import InferenceConfig, PipelineConfig
from .data.crop import CropError, crop_image, person_box
from .data.frame import BodyParams, CameraModel, Detection, Frame, FrameResult, PersonEstimate
from .geometry import crop_cam_to_translation, matrix_to_axis_angle
from .model.backends import Backend
from .temporal.features import per_person, regress_with_features
from .temporal.stage import TemporalStage

log = logging.getLogger("hmr_ros")


class Pipeline:
    """Inference over frames; with an `AdaptationWorker` (or its process twin,
    `ProcessAdaptationWorker`) attached, every person with keypoints is also handed to the
    worker (non-blocking), whose published weights the backend uses from the next frame on.
    With a `TemporalStage` (torch backend only) the bodies are refined with temporal context
    after the regressor, on this thread: in causal mode
    `process` returns frame t refined; with lookahead d it returns frame t's per-frame
    result and `pop_refined` gives the refined (frame, result) pairs of earlier frames."""

    def __init__(self, backend: Backend, body: BodyModel, config: PipelineConfig | None = None,
                 adaptation: AdaptationWorker | ProcessAdaptationWorker | None = None,
                 temporal: TemporalStage | None = None) -> None:
        self.backend = backend
        self.body = body
        self.config = config or PipelineConfig()
        self.adaptation = adaptation
        if temporal is not None and not hasattr(backend, "predict_features"):
            raise ValueError(f"the temporal stage needs the torch backend's features; the "
                             f"{getattr(backend, 'name', '?')} backend has none")
        self.temporal = temporal
        self._refined: list[tuple[Frame, FrameResult]] = []
        # Callers that warn about a missing CameraInfo themselves (the ROS node) turn this off.
        self.warn_missing_camera = True
        self._warned_no_camera = False
        self.frames = 0

    def close(self) -> None:
        """Stop the adaptation thread (inference keeps working with the last weights)."""
        if self.adaptation is not None:
            self.adaptation.stop()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def temporal_delay(self) -> int:
        """Frames between a frame and its refined result (0: none or causal)."""
        return self.temporal.delay if self.temporal is not None else 0

    def pop_refined(self) -> list[tuple[Frame, FrameResult]]:
        """The refined (frame, result) pairs made since the last call, oldest first (each
        result has the index and stamp of the frame it describes)."""
        out, self._refined = self._refined, []
        return out

    def flush(self) -> list[tuple[Frame, FrameResult]]:
        """At a stream's end: the refined results still waiting for their lookahead."""
        if self.temporal is None:
            return []
        return self.pop_refined() + self.temporal.flush()

    @property
    def inference(self) -> InferenceConfig:
        return self.config.inference

    def camera_for(self, frame: Frame) -> CameraModel:
        if frame.camera is not None:
            return frame.camera
        if self.warn_missing_camera and not self._warned_no_camera:
            log.warning("no CameraInfo for the images: using the fallback focal length %.1f px "
                        "with the principal point at the image centre; metric depth and "
                        "translation will be off by the focal's error",
                        self.inference.fallback_focal)
            self._warned_no_camera = True
        return CameraModel.from_focal(self.inference.fallback_focal, frame.width, frame.height)

    def crop_box(self, det: Detection, width: int | None = None, height: int | None = None
                 ) -> np.ndarray:
        """Square crop box (3,) for a detection under this pipeline's inference settings
        (`crop.person_box`); CropError when it has nothing usable."""
        return person_box(det, self.inference, width, height)

    def process(self, frame: Frame, keep_crops: bool = False, submit: bool = True,
                refine: bool = True) -> FrameResult:
        """Estimate everyone in `frame`. With `submit` (default) the people are also handed
        to the adaptation worker, if any; with `refine` (default) the frame enters the
        temporal stage, if any (off for a second look at the same frame)."""
        t0 = time.perf_counter()
        self.frames += 1
        if frame.image.ndim != 3 or frame.image.shape[2] != 3 or frame.image.dtype != np.uint8:
            raise ValueError(f"frame image must be (H, W, 3) uint8 RGB, got "
                             f"{frame.image.shape} {frame.image.dtype}")
        skipped: list[str] = []
        boxes, dets = [], []
        for det in frame.detections:
            try:
                boxes.append(self.crop_box(det, frame.width, frame.height))
                dets.append(det)
            except CropError as err:
                skipped.append(f"person {det.id}: {err}")
        if len(boxes) > self.inference.max_people:
            order = np.argsort([-b[2] for b in boxes])[: self.inference.max_people]
            for i in sorted(set(range(len(boxes))) - set(order.tolist())):
                skipped.append(f"person {dets[i].id}: more than max_people")
            boxes = [boxes[i] for i in sorted(order)]
            dets = [dets[i] for i in sorted(order)]
        version = self.backend.version
        if not boxes:
            # Through the temporal stage too: with lookahead, frame order is kept.
            return self._through_temporal(frame, FrameResult(
                frame.index, frame.stamp_ns, (), version, (time.perf_counter() - t0) * 1e3,
                tuple(skipped)), {}, refine)
        size = self.backend.input_size
        crops = np.stack([crop_image(frame.image, b, size) for b in boxes])
        feats = None
        if self.temporal is not None and refine:
            out, feats = self.backend.predict_features(crops, regress_with_features)
        else:
            out = self.backend.predict(crops)
        version = out.version  # of the weights that made `out`, not of a later swap
        camera = self.camera_for(frame)
        box_t = torch.as_tensor(np.stack(boxes), dtype=torch.float32)
        K = torch.as_tensor(camera.K, dtype=torch.float32)
        transl = crop_cam_to_translation(out.cam, box_t, K)
        with torch.inference_mode():
            body = self.body.forward_rotmat(out.rotmat, out.betas, transl)
            rotations = self.body.global_rotations(out.rotmat).numpy()
        # A non-finite estimate (NaN weights, an overflow) is dropped with its reason, never
        # published nor adapted on.
        finite = (torch.isfinite(body.joints).flatten(1).all(1)
                  & torch.isfinite(out.cam).all(1) & torch.isfinite(out.betas).all(1)
                  & torch.isfinite(out.rotmat).flatten(1).all(1)).tolist()
        for i, det in enumerate(dets):
            if not finite[i]:
                skipped.append(f"person {det.id}: non-finite estimate")
        if submit and self.adaptation is not None and self.adaptation.enabled:
            self.adaptation.submit([
                AdaptSample(det.id, frame.index, frame.stamp_ns, crops[i], boxes[i], camera.K,
                            det.keypoints)
                for i, det in enumerate(dets) if det.keypoints is not None and finite[i]])
        aa = matrix_to_axis_angle(out.rotmat).numpy()
        people = []
        for i, det in enumerate(dets):
            if not finite[i]:
                continue
            params = BodyParams(betas=out.betas[i].numpy().copy(), global_orient=aa[i, 0].copy(),
                                body_pose=aa[i, 1:].copy(), transl=transl[i].numpy().copy())
            conf = (float(det.keypoints.confidence[det.keypoints.confidence > 0].mean())
                    if det.keypoints is not None and (det.keypoints.confidence > 0).any()
                    else 1.0)
            people.append(PersonEstimate(
                id=det.id, box=boxes[i], cam=out.cam[i].numpy().copy(), params=params,
                joints=body.joints[i].numpy(), points=body.points[i].numpy(),
                vertices=body.vertices[i].numpy() if self.inference.vertices else None,
                keypoints=det.keypoints, confidence=conf, rotations=rotations[i]))
        if keep_crops and not all(finite):
            crops = crops[np.asarray(finite)]
        result = FrameResult(frame.index, frame.stamp_ns, tuple(people), version,
                             (time.perf_counter() - t0) * 1e3, tuple(skipped),
                             crops if keep_crops else None)
        by_id = {}
        if feats is not None:
            split = per_person(out, feats, np.stack(boxes), camera.K, version)
            by_id = {det.id: split[i] for i, det in enumerate(dets) if finite[i]}
        return self._through_temporal(frame, result, by_id, refine)

    def _through_temporal(self, frame: Frame, result: FrameResult, feats: dict, refine: bool
                          ) -> FrameResult:
        """Causal: frame t refined; lookahead: frame t unrefined, the refined pairs of
        earlier frames kept for `pop_refined`."""
        if self.temporal is None or not refine:
            return result
        self._refined.extend(self.temporal.push(frame, result, feats))
        if self.temporal.delay == 0:
            return self._refined.pop()[1]
        return result


def adapts(config: PipelineConfig, adapt: bool | None = None) -> bool:
    """Whether `build_pipeline(config, adapt)` attaches an adaptation worker: `adapt`
    (default: config.adapt.enabled) and a method other than `none`."""
    use = config.adapt.enabled if adapt is None else adapt
    return bool(use) and config.adapt.method != "none"


def build_pipeline(config: PipelineConfig | None = None, adapt: bool | None = None,
                   start: bool = True, body: BodyModel | None = None,
                   replay: dict[str, torch.Tensor] | None = None) -> Pipeline:
    """A torch pipeline from the config: weights (default: the bundled regressor), body
    model (default: the bundled synthetic SMPL; `body` shares one already loaded), and, when
    `adapts(config, adapt)`, a started adaptation worker. `replay` is the labelled source set
    of the replay term, built by the caller (`source_replay.replay_for(config, adapt)`); with
    adapt.replay.count > 0 a worker without it is refused rather than silently left without its
    term."""
    from .adapt.methods import Adapter
    from .model.backends import make_backend
    from .model.weights import load_regressor

    config = config or PipelineConfig()
    if replay is None and config.adapt.replay.count > 0 and adapts(config, adapt):
        raise ValueError(f"adapt.replay.count = {config.adapt.replay.count} needs its source "
                         "crops: pass replay=source_replay.replay_for(config, adapt)")
    inf = config.inference
    torch.set_num_threads(inf.threads)  # process-wide; see InferenceConfig.threads
    loaded = load_regressor(inf.weights or None)
    body = body if body is not None else BodyModel(inf.body_model or None, gender=inf.gender)
    backend = make_backend(loaded.model, inf)
    temporal = build_temporal(config, backend, body)
    worker = None
    if adapts(config, adapt):
        if config.adapt.worker.kind == "process":
            spec = AdapterSpec(loaded.model, body, config.adapt, inference_device=inf.device)
            worker = ProcessAdaptationWorker(spec, config.adapt, backend.update_weights,
                                             replay=replay)
        else:
            adapter = Adapter(loaded.model, body, config.adapt, inference_device=inf.device)
            worker = AdaptationWorker(adapter, config.adapt, backend.update_weights,
                                      replay=replay)
        if start:
            worker.start()
    return Pipeline(backend, body, config, worker, temporal)


def build_temporal(config: PipelineConfig, backend: Backend, body: BodyModel
                   ) -> TemporalStage | None:
    """The temporal stage of `config.temporal`, or None when it is off. With a backend that
    cannot give the regressor's features (ONNX Runtime, TensorRT: exported graphs output the
    SMPL parameters only) the stage is disabled with a warning, not an error: the node still
    publishes the per-frame bodies."""
    t = config.temporal
    if not t.enabled:
        return None
    if not hasattr(backend, "predict_features"):
        log.warning("temporal.enabled is set but the %s backend cannot give the regressor's "
                    "features: temporal refinement is disabled (use inference.backend=torch)",
                    getattr(backend, "name", "?"))
        return None
    from .temporal.checkpoint import load_refiner
    from .temporal.refine import WindowSpec

    refiner, _ = load_refiner(t.weights or None, body)
    spec = WindowSpec(past=t.window - 1, local_past=t.local_window - 1,
                      future=t.lookahead if t.mode == "lookahead" else 0)
    return TemporalStage(refiner, body, spec, vertices=config.inference.vertices,
                         use_global=t.branches != "local", use_local=t.branches != "global")
