"""One-off measurement: how much do the synthetic streams change between OpenCV builds?

Run `dump` once in each environment (each with one OpenCV distribution), then `compare` in one
of them:

    python bench/opencv_frames.py dump /tmp/cv50.pkl      # e.g. opencv-python-headless 5.0
    python bench/opencv_frames.py dump /tmp/cv51.pkl      # e.g. opencv-contrib-python 5.1
    python bench/opencv_frames.py compare /tmp/cv50.pkl /tmp/cv51.pkl

`dump` renders the first frames of a few benchmark streams (`hmr-ros bench adapt` renders the
same ones), the regressor's input crops of those frames, and records the first calls of every
cv2 function the renderer and the cropper make (inputs and output). `compare` reports pixel
differences of frames and crops, and replays the first file's recorded calls in the current
environment, so each operation is compared on identical inputs.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections import defaultdict

import cv2
import numpy as np

OPS = ("remap", "GaussianBlur", "resize", "warpAffine")
STREAMS = (("pw3d_like", 1000), ("pw3d_like", 1001), ("robot_cam", 1000), ("robot_cam", 1001))
KEEP_CALLS = 6


def _record(calls: dict) -> None:
    for name in OPS:
        real = getattr(cv2, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            out = _real(*args, **kwargs)
            if len(calls[_name]) < KEEP_CALLS:
                calls[_name].append((args, kwargs, out))
            return out

        setattr(cv2, name, wrapper)


def dump(path: str, frames: int) -> None:
    from hmr_ros.config import PipelineConfig
    from hmr_ros.data.crop import crop_image
    from hmr_ros.envcheck import owners
    from hmr_ros.pipeline import build_pipeline
    from hmr_ros.world.domain import load_domain
    from hmr_ros.world.scene import SyntheticSequence

    calls: dict = defaultdict(list)
    _record(calls)
    pipeline = build_pipeline(PipelineConfig(), adapt=False, start=False)
    size = pipeline.backend.input_size
    out = {"opencv": cv2.__version__, "owners": [o.distribution for o in owners("cv2")],
           "streams": {}}
    for domain, seed in STREAMS:
        seq = SyntheticSequence(load_domain(domain), seed=seed, duration_s=frames / 30.0 + 1.0)
        imgs, crops = [], []
        for i in range(frames):
            f = seq.frame(i).frame
            imgs.append(f.image)
            crops += [crop_image(f.image, pipeline.crop_box(d), size) for d in f.detections]
        out["streams"][f"{domain}/{seed}"] = {"frames": np.stack(imgs), "crops": np.stack(crops)}
        print(f"{domain} seed {seed}: {frames} frames {imgs[0].shape}, {len(crops)} crops",
              flush=True)
    pipeline.close()
    out["calls"] = dict(calls)
    with open(path, "wb") as fh:
        pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"OpenCV {cv2.__version__} ({', '.join(out['owners'])}): wrote {path}")


def _stats(a: np.ndarray, b: np.ndarray) -> str:
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return (f"max {d.max():.4g}, mean {d.mean():.4g}, differing values "
            f"{100.0 * np.mean(d > 0):.3g}%, differing pixels "
            f"{100.0 * np.mean(d.reshape(*d.shape[:-1], -1).max(-1) > 0):.3g}%")


def compare(path_a: str, path_b: str) -> None:
    with open(path_a, "rb") as fh:
        a = pickle.load(fh)
    with open(path_b, "rb") as fh:
        b = pickle.load(fh)
    print(f"A: OpenCV {a['opencv']} {a['owners']}  B: OpenCV {b['opencv']} {b['owners']}")
    print("\nWhole frames and crops, A vs B:")
    for key, sa in a["streams"].items():
        sb = b["streams"][key]
        print(f"  {key:16s} frames {sa['frames'].shape}: {_stats(sa['frames'], sb['frames'])}")
        print(f"  {key:16s} crops  {sa['crops'].shape}: {_stats(sa['crops'], sb['crops'])}")
    print(f"\nA's recorded cv2 calls replayed here (OpenCV {cv2.__version__}) on A's inputs:")
    for name, recorded in a["calls"].items():
        for k, (args, kwargs, out) in enumerate(recorded):
            mine = getattr(cv2, name)(*args, **kwargs)
            arr = args[0]
            print(f"  {name:12s} #{k} in {arr.dtype} {arr.shape}: {_stats(out, mine)}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--frames", type=int, default=30)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args(argv)
    if args.cmd == "dump":
        dump(args.out, args.frames)
    else:
        compare(args.a, args.b)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
