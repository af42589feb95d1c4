"""`hmr-ros replay` (a bag, a video file or a folder of images) and `hmr-ros live` (a webcam):
recorded or live images through the same pipeline as the ROS node.

Inputs: a rosbag2 (Image + CameraInfo + keypoint topics, as the node subscribes), or a video
file / image folder / webcam read with OpenCV (`data/video.py`; no intrinsics: a documented
default focal, or `--focal`). People come from the input's keypoints or, where there are none,
from the configured detector (`detector.kind`, MediaPipe BlazePose); the `DetectionStage`
(detect/stage.py) gives them stable ids, which become the body ids, and tracks that time out
are dropped from the adaptation worker's buffers.

Outputs in the output folder:
- `estimates/` an mcap bag with `/hmr/bodies` (hmr_ros/SMPLBodyArray, stamped like the
  images, in their camera frame) and `/hmr/adaptation_status` (hmr_ros/AdaptationStatus);
- `metrics.json` with timing, adaptation status, the 2D keypoint error of the predictions
  (adapted, and a frozen copy of the regressor on the same crops), and, when the bag holds
  ground truth (`/ground_truth/bodies`), MPJPE / PA-MPJPE / PVE / ACCEL;
- `overlay.mp4` (and `overlay.png`, a strip of frames) with each person's mesh in its colour,
  its id and its detected keypoints drawn over the images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from .config import PipelineConfig
from .data.frame import Frame, FrameResult
from .data.video import VideoReader, input_kind
from .detect.base import KeypointSource
from .detect.stage import build_stage
from .eval.overlay import draw_people
from .eval.sinks import KeypointErrorSink, OverlaySink, TruthSink
from .jsonio import write_json
from .messages.bag import BagError, BagReader, detect_topics
from .pipeline import Pipeline, build_pipeline
from .progress import Progress
from .source_replay import replay_for
from .stream.frames import FrameAssembler, bag_frames
from .stream.run import run_stream
from .stream.runner import StreamRunner
from .stream.sinks import BagSink
from .stream.sources import video_frames
from .stream.summary import RunReport, Tally, format_metrics, print_summary, summarize

__all__ = ["format_metrics", "frozen_twin", "live", "replay"]

log = logging.getLogger("hmr_ros")

BAG_OVERLAY_FPS = 25.0


def frozen_twin(pipeline: Pipeline, config: PipelineConfig) -> Pipeline:
    """A second pipeline with the unadapted regressor, sharing the body model: the baseline
    that sees exactly the same crops as the adapted one."""
    twin = build_pipeline(config, adapt=False, body=pipeline.body)
    twin.warn_missing_camera = False
    return twin


class _RunSinks:
    """The sinks of one run: tally, estimates bag, ground truth, 2D error, overlay video."""

    def __init__(self, out: Path | None, pipeline: Pipeline, frozen: Pipeline | None,
                 video: bool, fps: float, with_truth: bool, threshold: float) -> None:
        self.tally = Tally()
        self.bag = BagSink(out / "estimates", pipeline.adaptation) if out is not None else None
        self.truth = TruthSink(pipeline.body) if with_truth else None
        self.err = KeypointErrorSink(pipeline.camera_for, threshold, frozen)
        self.overlay = (OverlaySink(out / "overlay.mp4", fps, pipeline.body.faces,
                                    pipeline.camera_for, threshold) if video and out else None)

    @property
    def sinks(self) -> list:
        return [s for s in (self.tally, self.bag, self.truth, self.err, self.overlay)
                if s is not None]

    @property
    def video(self) -> Path | None:
        """The overlay video written (once the stream has closed its sinks)."""
        return self.overlay.path if self.overlay is not None else None

    def progress(self) -> dict[str, float]:
        vals = {}
        if self.truth is not None and "pa_mpjpe" in self.truth.last:
            vals["pa_mpjpe"] = self.truth.last["pa_mpjpe"]
        if self.err.last is not None:
            vals["kp_px"] = self.err.last
        return vals


def replay(bag: str | Path, out_dir: str | Path, config: PipelineConfig | None = None,
           adapt: bool = True, protocol: str = "async", limit: int | None = None,
           video: bool = True, topics: dict[str, str] | None = None,
           progress: bool = True, keypoint_source: KeypointSource | None = None,
           baseline: bool = True, fps: float | None = None) -> dict:
    """Replay `bag` (a rosbag2, a video file or a folder of images) into `out_dir`.

    keypoint_source: overrides the configured detector (e.g. `GroundTruthSource`); baseline:
    with adaptation, also run the frozen regressor on the same crops for the 2D error report;
    fps: frame rate of an image folder (default 30) or override of a video's.
    """
    config = config or PipelineConfig()
    out = Path(out_dir)
    if (out / "estimates").exists():  # refuse before minutes of work, not after
        raise BagError(f"{out / 'estimates'} already exists; choose a new output path")
    out.mkdir(parents=True, exist_ok=True)
    kind = input_kind(bag)
    det_cfg = config.detector
    explicit = det_cfg.kind not in ("auto", "none")
    assembler: FrameAssembler | None = None
    vr: VideoReader | None = None
    with contextlib.ExitStack() as stack:
        if kind == "bag":
            reader = stack.enter_context(BagReader(bag))
            chosen = detect_topics(reader, **(topics or {}))
            total = next((t.count for t in reader.topics() if t.name == chosen.image), None)
            if limit is not None and total is not None:
                total = min(total, limit)
            print(f"replaying {reader.path}: images {chosen.image}, camera_info "
                  f"{chosen.camera_info or '-'}, keypoints {chosen.keypoints or '-'}, ground "
                  f"truth {chosen.ground_truth or '-'}")
            has_kp, has_truth = bool(chosen.keypoints), bool(chosen.ground_truth)
            assembler = FrameAssembler(topics={"image": chosen.image,
                                               "keypoints": chosen.keypoints or "keypoints",
                                               "camera_info": chosen.camera_info or "-"})
            frames: Iterable[Frame] = bag_frames(reader, chosen, assembler, limit=limit)
            overlay_fps, topics_used = BAG_OVERLAY_FPS, chosen.__dict__
        else:
            if topics:
                log.warning("topic options are ignored for a %s input", kind)
            vr = stack.enter_context(VideoReader(bag, det_cfg.focal, det_cfg.default_hfov_deg,
                                                 fps, limit))
            info = vr.info
            print(f"replaying {bag}: {kind}, {info.width}x{info.height} at {info.fps:g} fps, "
                  f"{info.frames if info.frames is not None else '?'} frames")
            print(info.focal_note)
            has_kp = has_truth = False
            frames, overlay_fps, topics_used, total = (video_frames(vr), info.fps, None,
                                                       info.frames)
            if info.frames == 1:  # one photo: no second frame can confirm a track
                det_cfg = dataclasses.replace(
                    det_cfg, tracker=dataclasses.replace(det_cfg.tracker, min_hits=1))
        stage, what = build_stage(det_cfg, has_kp and not explicit, required=kind != "bag",
                                  source=keypoint_source)
        stack.callback(stage.close)
        if kind == "bag" and not has_kp and stage.source is None:
            log.warning("the bag has no hmr_ros/msg/Keypoints2DArray topic: without 2D "
                        "keypoints (or an in-process detector) no person can be cropped")
        print(f"people: {what}")
        pipeline = build_pipeline(config, adapt=adapt, start=False,
                                  replay=replay_for(config, adapt))
        stack.callback(pipeline.close)
        frozen = (frozen_twin(pipeline, config)
                  if adapt and baseline and pipeline.adaptation is not None else None)
        outputs = _RunSinks(out, pipeline, frozen, video, overlay_fps, has_truth,
                           config.adapt.keypoint_threshold)
        t0 = time.perf_counter()
        runner = StreamRunner(pipeline, stage, protocol if adapt else "async", outputs.sinks,
                              replace_input_people=explicit and has_kp
                              and keypoint_source is None)
        with Progress(total, "replay", enabled=progress) as bar:
            for _ in run_stream(runner, frames):
                bar.update(1, **outputs.progress())
        elapsed = time.perf_counter() - t0
        status = pipeline.adaptation.status() if pipeline.adaptation is not None else None
    run = RunReport(
        input=str(bag), input_kind=kind, tally=outputs.tally, elapsed_s=elapsed, adapt=adapt,
        protocol=protocol, method=config.adapt.method, status=status, people_from=what,
        frames_detected=stage.detected, keypoint_error=outputs.err.report(adapt, protocol),
        metrics=outputs.truth.summary() if outputs.truth is not None else None,
        topics=topics_used,
        skipped_images=vr.skipped if vr is not None else assembler.skipped["image"],
        skipped_inputs=dict(assembler.skipped) if assembler is not None else None,
        outputs={"bag": str(out / "estimates"),
                 "video": str(outputs.video) if outputs.video else None})
    return _finish(run, out, [out / "estimates"])


def live(camera: int | str, out_dir: str | Path | None = None,
         config: PipelineConfig | None = None, adapt: bool = True, frames: int | None = None,
         show: bool = False, keypoint_source: KeypointSource | None = None) -> dict:
    """A webcam (device index; a video path or stream URL works too) through the pipeline
    with adaptation in the background, as on the robot. Prints a status line every second;
    stops after `frames` images, at the end of a file, on Ctrl-C, or on `q` with `show`.
    With `out_dir`, writes the same outputs as `replay`."""
    config = config or PipelineConfig()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    det_cfg = config.detector
    source = int(camera) if isinstance(camera, str) and camera.isdigit() else camera
    with contextlib.ExitStack() as stack:
        vr = stack.enter_context(VideoReader(source, det_cfg.focal, det_cfg.default_hfov_deg,
                                             limit=frames))
        info = vr.info
        print(f"live from {info.kind} {camera}: {info.width}x{info.height} at {info.fps:g} fps")
        print(info.focal_note)
        stage, what = build_stage(det_cfg, False, required=True, source=keypoint_source)
        stack.callback(stage.close)
        print(f"people: {what}")
        pipeline = build_pipeline(config, adapt=adapt, start=False,
                                  replay=replay_for(config, adapt))
        stack.callback(pipeline.close)
        outputs = _RunSinks(out, pipeline, None, out is not None, info.fps, False,
                           config.adapt.keypoint_threshold)
        t0 = last = time.perf_counter()
        shown = show
        runner = StreamRunner(pipeline, stage, "async", outputs.sinks)
        try:
            with contextlib.closing(run_stream(runner, video_frames(vr))) as stream:
                for frame, result in stream:
                    now = time.perf_counter()
                    if now - last >= 1.0:
                        last = now
                        st = pipeline.adaptation.status() if pipeline.adaptation else None
                        ids = ", ".join(str(p.id) for p in result.people) or "-"
                        fps = len(outputs.tally.latencies) / (now - t0)
                        print(f"{now - t0:6.1f} s  {fps:5.1f} fps  "
                              f"people {ids}  model v{result.model_version}"
                              + (f"  adaptation steps {st.steps}" if st else ""), flush=True)
                    if shown:
                        shown = _show(frame, result, pipeline)
                        if shown is None:
                            break
        except KeyboardInterrupt:
            print("stopped")
        elapsed = time.perf_counter() - t0
        status = pipeline.adaptation.status() if pipeline.adaptation is not None else None
    run = RunReport(
        input=str(camera), input_kind=info.kind, tally=outputs.tally, elapsed_s=elapsed,
        adapt=adapt, protocol="async", method=config.adapt.method, status=status,
        people_from=what, frames_detected=stage.detected,
        keypoint_error=outputs.err.report(adapt, "async"), skipped_images=vr.skipped,
        outputs={"bag": str(out / "estimates") if out is not None else None,
                 "video": str(outputs.video) if outputs.video else None})
    return _finish(run, out, [out / "estimates"] if out is not None else [])


def _finish(run: RunReport, out: Path | None, written: list[Path]) -> dict:
    """The run's summary: printed, and with an output folder written to metrics.json."""
    summary = summarize(run)
    print_summary(run, summary)
    if out is not None:
        write_json(out / "metrics.json", summary)
        video = run.outputs.get("video")
        print("wrote " + ", ".join(str(p) for p in [*written, out / "metrics.json"])
              + (f", {video}" if video else ""))
    return summary


def _show(frame: Frame, result: FrameResult, pipeline: Pipeline) -> bool | None:
    """Draw into a window; False when this OpenCV has no GUI, None when `q` was pressed."""
    img = draw_people(frame.image, result.people, pipeline.body.faces,
                      pipeline.camera_for(frame), label=f"v{result.model_version}")
    try:
        cv2.imshow("hmr-ros live", np.ascontiguousarray(img[:, :, ::-1]))
        if cv2.waitKey(1) & 0xFF == ord("q"):
            return None
    except cv2.error as err:
        log.warning("cannot show a window (%s); use --out DIR to write the video", err)
        return False
    return True
