"""`hmr-ros replay`: a recorded bag through the same pipeline as the live node.

Reads Image (+ CameraInfo + keypoints) topics, runs the pipeline with or without
adaptation, and writes into the output folder:
- `estimates/` an mcap bag with `/hmr/bodies` (hmr_ros/SMPLBodyArray, stamped like the
  images, in their camera frame) and `/hmr/adaptation_status` (hmr_ros/AdaptationStatus);
- `metrics.json` with timing, adaptation status and, when the bag holds ground truth
  (`/ground_truth/bodies`), MPJPE / PA-MPJPE / PVE / ACCEL;
- `overlay.mp4` (and `overlay.png`, a strip of frames) with the meshes drawn over the images.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .bench.timing import machine_info, write_json
from .config import PipelineConfig
from .data.bag import BODIES, BagReader, BagWriter, detect_topics, read_frames
from .eval.evaluate import StreamEvaluator
from .eval.overlay import FrameSink, draw_people
from .online import run_online
from .pipeline import build_pipeline
from .progress import Progress
from .ros.convert import adaptation_status_to_msg, bodies_to_msg

log = logging.getLogger("hmr_ros")

TOPIC_BODIES = "/hmr/bodies"
TOPIC_STATUS = "/hmr/adaptation_status"
STATUS = "hmr_ros/msg/AdaptationStatus"


def replay(bag: str | Path, out_dir: str | Path, config: PipelineConfig | None = None,
           adapt: bool = True, protocol: str = "async", limit: int | None = None,
           video: bool = True, topics: dict[str, str] | None = None,
           progress: bool = True) -> dict:
    config = config or PipelineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with BagReader(bag) as reader:
        chosen = detect_topics(reader, **(topics or {}))
        total = next((t.count for t in reader.topics() if t.name == chosen.image), None)
        if limit is not None and total is not None:
            total = min(total, limit)
        print(f"replaying {reader.path}: images {chosen.image}, camera_info "
              f"{chosen.camera_info or '-'}, keypoints {chosen.keypoints or '-'}, ground truth "
              f"{chosen.ground_truth or '-'}")
        if not chosen.keypoints:
            log.warning("the bag has no hmr_ros/msg/Keypoints2DArray topic: without 2D "
                        "keypoints (or an in-process detector) no person can be cropped")
        pipeline = build_pipeline(config, adapt=adapt, start=False)
        ev = StreamEvaluator(pipeline.body) if chosen.ground_truth else None
        sink = FrameSink(out / "overlay.mp4", fps=25.0) if video else None
        latencies, n_people, skipped = [], 0, 0
        t0 = time.perf_counter()
        with BagWriter(out / "estimates") as writer, Progress(total, "replay",
                                                              enabled=progress) as bar:
            f = writer.factory
            frames = read_frames(reader, chosen, limit)
            for frame, result in run_online(pipeline, frames, protocol if adapt else "async"):
                frame_id = frame.camera.frame_id if frame.camera else "camera_optical_frame"
                writer.write(TOPIC_BODIES, BODIES, bodies_to_msg(
                    f, result.people, frame.stamp_ns, frame_id, result.model_version,
                    "hmr_ros"), frame.stamp_ns)
                if pipeline.adaptation is not None:
                    msg = adaptation_status_to_msg(f, pipeline.adaptation.status(),
                                                   frame.stamp_ns)
                    msg.header.frame_id = frame_id
                    writer.write(TOPIC_STATUS, STATUS, msg, frame.stamp_ns)
                latencies.append(result.latency_ms)
                n_people += len(result.people)
                skipped += len(result.skipped)
                vals = ev.add(frame, result) if ev is not None else {}
                if sink is not None:
                    camera = pipeline.camera_for(frame)
                    sink.add(draw_people(frame.image, result.people, pipeline.body.faces,
                                         camera, label=f"v{result.model_version}"))
                bar.update(1, **({"pa_mpjpe": vals["pa_mpjpe"]} if "pa_mpjpe" in vals else {}))
        elapsed = time.perf_counter() - t0
        status = pipeline.adaptation.status() if pipeline.adaptation is not None else None
        pipeline.close()
    video_path = sink.close() if sink is not None else None
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    summary = {
        "bag": str(bag), "topics": chosen.__dict__, "frames": len(latencies),
        "people": n_people, "skipped_people": skipped, "adapt": adapt,
        "protocol": protocol if adapt else "none", "method": config.adapt.method,
        "elapsed_s": elapsed, "fps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {"p50": float(np.percentile(lat, 50)),
                       "p95": float(np.percentile(lat, 95))},
        "adaptation": None if status is None else status.__dict__,
        "metrics": ev.summary() if ev is not None else None,
        "outputs": {"bag": str(out / "estimates"),
                    "video": str(video_path) if video_path else None},
        "machine": machine_info(),
    }
    write_json(out / "metrics.json", summary)
    print(f"{len(latencies)} frames, {n_people} body estimates in {elapsed:.1f} s "
          f"({summary['fps']:.1f} fps), inference p50 {summary['latency_ms']['p50']:.1f} ms")
    if status is not None:
        print(f"adaptation {status.method}: {status.steps} steps, version {status.version}, "
              f"{status.rollbacks} rollbacks")
    if ev is not None:
        m = summary["metrics"]
        print(f"MPJPE {m['mpjpe']:.1f} mm, PA-MPJPE {m['pa_mpjpe']:.1f} mm, PVE "
              f"{m.get('pve', float('nan')):.1f} mm, ACCEL {m['accel']:.1f} mm/frame^2")
    print(f"wrote {out / 'estimates'}, {out / 'metrics.json'}"
          + (f", {video_path}" if video_path else ""))
    return summary
