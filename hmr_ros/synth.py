"""`hmr-ros synth`: synthetic streams as rosbag2 files, and compact training sets.

Stream bags hold what a robot would record plus the truth:
`/camera/image_raw` (sensor_msgs/Image, rgb8), `/camera/camera_info`, `/camera/keypoints`
(hmr_ros/Keypoints2DArray from the simulated detector) and `/ground_truth/bodies`
(hmr_ros/SMPLBodyArray with the true SMPL parameters and joints, camera frame), all stamped
with the frame's time and framed in the camera's optical frame.

Training sets are `.npz` files of crops at the regressor's input size with their labels
(see `TrainingCrop`), rendered in worker processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .body import BodyModel
from .messages.bag import BODIES, CAMERA_INFO, IMAGE, KEYPOINTS, BagWriter
from .messages.bodies import bodies_to_msg
from .messages.camera import camera_to_msg
from .messages.image import image_to_msg
from .messages.keypoints import detections_to_msg
from .progress import Progress
from .world.domain import DomainConfig, load_domain
from .world.motion import generate_motion
from .world.scene import PersonView, SyntheticSequence, render_training_crop

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_KEYPOINTS = "/camera/keypoints"
TOPIC_GROUND_TRUTH = "/ground_truth/bodies"


@dataclass(frozen=True)
class _TruthView:
    """Adapter giving a ground-truth PersonView the fields bodies_to_msg reads."""

    view: PersonView

    @property
    def id(self) -> int:
        return self.view.id

    @property
    def params(self):
        return self.view.params

    @property
    def joints(self) -> np.ndarray:
        return self.view.points3d[:24]

    @property
    def vertices(self) -> None:
        return None

    @property
    def bbox_xyxy(self) -> np.ndarray:
        return self.view.box if self.view.box is not None else np.zeros(4, np.float32)

    @property
    def confidence(self) -> float:
        return 1.0


def write_stream_bag(seq: SyntheticSequence, out: str | Path, storage: str = "mcap",
                     progress: bool = True) -> Path:
    """Render every frame of `seq` into a new bag at `out`; returns the path."""
    out = Path(out)
    with BagWriter(out, storage) as bag, Progress(len(seq), f"synth {out.name}",
                                                  enabled=progress) as bar:
        f = bag.factory
        frame_id = seq.camera.frame_id
        for i in range(len(seq)):
            sf = seq.frame(i)
            fr = sf.frame
            t = fr.stamp_ns
            bag.write(TOPIC_CAMERA_INFO, CAMERA_INFO, camera_to_msg(f, seq.camera, t), t)
            bag.write(TOPIC_IMAGE, IMAGE, image_to_msg(f, fr.image, t, frame_id), t)
            bag.write(TOPIC_KEYPOINTS, KEYPOINTS,
                      detections_to_msg(f, fr.detections, t, frame_id), t)
            truth = [_TruthView(v) for v in sf.people]
            bag.write(TOPIC_GROUND_TRUTH, BODIES,
                      bodies_to_msg(f, truth, t, frame_id, 0, "ground_truth"), t)
            bar.update(1)
    return out


def write_video_bag(video: str | Path, out: str | Path, fps: float | None = None,
                    limit: int | None = None, storage: str = "mcap",
                    frame_id: str = "camera_optical_frame") -> Path:
    """A video file as a camera's bag: Image and CameraInfo (the video's assumed focal, as
    `hmr-ros replay` takes it) per frame, stamped at `fps` (default: the file's), no
    keypoints: a robot with only a camera."""
    from .data.video import VideoReader
    from .stream.sources import video_frames

    out = Path(out)
    with VideoReader(video, fps=fps, limit=limit) as reader, BagWriter(out, storage) as bag:
        f = bag.factory
        for fr in video_frames(reader):
            t = fr.stamp_ns
            bag.write(TOPIC_CAMERA_INFO, CAMERA_INFO, camera_to_msg(f, fr.camera, t), t)
            bag.write(TOPIC_IMAGE, IMAGE, image_to_msg(f, fr.image, t, frame_id), t)
    return out


# ------------------------------------------------------------------------ training sets

TRAINSET_KEYS = ("image", "pose", "betas", "transl", "points3d", "points2d", "visible", "box",
                 "K")


def _render_chunk(args: tuple[str, int, int, int, int, float]) -> dict[str, np.ndarray]:
    domain_name, seed, start, count, input_size, clip_s = args
    # Worker processes render single-threaded: the machine's cores are the parallelism.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    domain = load_domain(domain_name)
    body = BodyModel()
    rng = np.random.default_rng([seed, start])
    motion = generate_motion(int(rng.integers(1 << 31)), clip_s, domain.fps,
                             domain.people.actions)
    crops = [render_training_crop(domain, rng, body, motion, input_size) for _ in range(count)]
    return {k: np.stack([getattr(c, k) for c in crops]) for k in TRAINSET_KEYS}


def write_trainset(domain: DomainConfig | str, n: int, out: str | Path, seed: int = 0,
                   input_size: int = 128, workers: int = 1, chunk: int = 200,
                   progress: bool = True) -> Path:
    """Render `n` training crops of a domain into `out` (.npz). Each chunk of `chunk` crops
    samples one long motion clip with its own seed, so the result does not depend on the
    number of workers."""
    name = domain if isinstance(domain, str) else domain.name
    jobs = [(name, seed, start, min(chunk, n - start), input_size, 60.0)
            for start in range(0, n, chunk)]
    parts: list[dict[str, np.ndarray]] = []
    with Progress(n, f"trainset {name}", enabled=progress) as bar:
        if workers <= 1:
            for job in jobs:
                parts.append(_render_chunk(job))
                bar.update(job[3])
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for part in pool.imap(_render_chunk, jobs):
                    parts.append(part)
                    bar.update(len(part["image"]))
    data = {k: np.concatenate([p[k] for p in parts]) for k in TRAINSET_KEYS}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, domain=np.asarray(name), seed=np.asarray(seed), **data)
    tmp.replace(out)
    return out
