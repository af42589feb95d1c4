"""The `hmr-ros` command.

Each subcommand parses its arguments here (the training commands in `cli_train.py`, `export`
in `cli_export.py`, the benchmarks in `bench/commands.py`) and imports its implementation
lazily, so `hmr-ros --help` stays fast and a broken optional dependency only affects its own
command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .cli_export import add_export_parser
from .cli_train import add_train_parsers

Handler = Callable[[argparse.Namespace], int]
NEEDS_CONFIG = ("adapt", "tto", "temporal", "soak")  # bench commands that take --set/--config


def _body_model(args: argparse.Namespace) -> int:
    from .body.synthetic import build_synthetic_smpl
    from .npzio import write_npz

    arrays = build_synthetic_smpl()
    out = Path(args.out)
    if args.check:
        if not out.is_file():
            print(f"{out} does not exist", file=sys.stderr)
            return 1
        tmp = out.with_name(out.name + ".check")
        write_npz(tmp, arrays)
        same = tmp.read_bytes() == out.read_bytes()
        tmp.unlink()
        print(f"{out}: {'identical to' if same else 'DIFFERS from'} a fresh build")
        return 0 if same else 1
    write_npz(out, arrays)
    print(f"wrote {out}: {arrays['v_template'].shape[0]} vertices, {arrays['f'].shape[0]} faces, "
          f"{out.stat().st_size} bytes")
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    from .body import BodyModel
    from .model.config import PRESETS
    from .model.hmr import HMR
    from .version import __version__

    body = BodyModel(args.body_model)
    print(f"hmr_ros {__version__}, torch {torch.__version__}")
    print(f"body model: {body.path} ({body.num_vertices} vertices, "
          f"{len(body.faces)} faces, {'synthetic' if body.synthetic else 'SMPL'})")
    for name, cfg in PRESETS.items():
        n = sum(p.numel() for p in HMR(cfg).parameters())
        print(f"regressor preset {name}: {n / 1e6:.2f} M parameters, input {cfg.input_size} px")
    return 0


def _config(args: argparse.Namespace):
    """PipelineConfig from --config (YAML of section.field keys or nested sections), the
    common flags and --set key=value overrides (applied last)."""
    from .config import PipelineConfig, load_config_file, parse_value, replace_path

    cfg = PipelineConfig()
    if getattr(args, "config", None):
        cfg = load_config_file(args.config, cfg)
    if getattr(args, "weights", ""):
        cfg = replace_path(cfg, "inference.weights", args.weights)
    if getattr(args, "method", None):
        cfg = replace_path(cfg, "adapt.method", args.method)
    if getattr(args, "detector", None):
        cfg = replace_path(cfg, "detector.kind", args.detector)
    if getattr(args, "focal", None) is not None:
        cfg = replace_path(cfg, "detector.focal", float(args.focal))
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        cfg = replace_path(cfg, key.strip(), parse_value(value))
    return cfg


def _add_config_flags(p: argparse.ArgumentParser, method: bool = True) -> None:
    p.add_argument("--weights", default="", help="checkpoint (default: bundled regressor)")
    if method:
        p.add_argument("--method", default=None,
                       help="adaptation method: none framewise joint two_stage boa_1st "
                            "boa_2nd (default boa_2nd)")
    p.add_argument("--config", default=None, help="YAML with config values (section.field)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config value, e.g. --set adapt.outer_lr=1e-5")


def _replay(args: argparse.Namespace) -> int:
    from .replay import replay

    topics = {k: v for k, v in (("image", args.image_topic),
                                 ("camera_info", args.camera_info_topic),
                                 ("keypoints", args.keypoints_topic),
                                 ("ground_truth", args.ground_truth_topic)) if v}
    replay(args.bag, args.out, _config(args), adapt=not args.no_adapt,
           protocol=args.protocol, limit=args.limit, video=not args.no_video, topics=topics,
           baseline=not args.no_baseline, fps=args.fps)
    return 0


def _live(args: argparse.Namespace) -> int:
    from .replay import live

    live(args.camera, args.out, _config(args), adapt=not args.no_adapt, frames=args.frames,
         show=args.show)
    return 0


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    """Detector and intrinsics for inputs without keypoints or CameraInfo."""
    p.add_argument("--detector", default=None,
                   choices=("auto", "none", "mediapipe", "mediapipe_hog"),
                   help="2D keypoints for inputs without them: auto (default: mediapipe_hog "
                        "where OpenCV has HOG, else mediapipe; none for bags with keypoints), "
                        "mediapipe (BlazePose, one person), mediapipe_hog (HOG person boxes + "
                        "tracks, BlazePose per box: several people), none")
    p.add_argument("--focal", type=float, default=None, metavar="PX",
                   help="focal length in px for inputs without CameraInfo (default: a "
                        "60 deg horizontal field of view, detector.default_hfov_deg)")


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo

    demo(args.out, seconds=args.seconds, seed=args.seed, domain=args.domain,
         config=_config(args), video=not args.no_video, lockstep=args.lockstep)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .world.domain import load_domain

    domain = load_domain(args.domain)
    if args.trainset:
        from .synth import write_trainset

        path = write_trainset(domain.name if not args.domain.endswith(".yaml") else domain,
                              args.trainset, args.out, seed=args.seed,
                              input_size=args.input_size, workers=args.workers)
        print(f"wrote {args.trainset} training crops of {domain.name} to {path}")
        return 0
    from .synth import write_stream_bag
    from .world.scene import SyntheticSequence

    seq = SyntheticSequence(domain, seed=args.seed, duration_s=args.duration,
                            n_people=args.people)
    path = write_stream_bag(seq, args.out, storage=args.storage)
    print(f"wrote {len(seq)} frames of {domain.name} ({seq.camera.width}x{seq.camera.height}, "
          f"{domain.fps:g} fps, seed {args.seed}) to {path}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .eval.run import main as run

    if not args.bags and not args.domain:
        print("give a bag or --domain", file=sys.stderr)
        return 2
    run(args.bags, args.domain or [], args.seeds, args.duration, args.weights, args.out,
        args.limit)
    return 0


def _score(args: argparse.Namespace) -> int:
    from .eval.bag_eval import main as score

    argv = [args.bag] + (["--bodies", args.bodies] if args.bodies else []) \
        + (["--ground-truth", args.ground_truth] if args.ground_truth else []) \
        + (["--out", args.out] if args.out else [])
    return score(argv)


def _bench(args: argparse.Namespace) -> int:
    from .bench.commands import run

    return run(args, _config(args) if args.bench in NEEDS_CONFIG else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hmr-ros",
        description="Human mesh recovery with online adaptation, without ROS.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("body-model", help="build the bundled synthetic SMPL-format body model")
    p.add_argument("--out", default="weights/smpl_synthetic.npz", help="output .npz path")
    p.add_argument("--check", action="store_true",
                   help="rebuild in memory and compare with --out byte for byte")
    p.set_defaults(handler=_body_model)

    p = sub.add_parser("info", help="print versions, the body model and regressor presets")
    p.add_argument("--body-model", default=None,
                   help="SMPL .pkl/.npz or folder (default: bundled synthetic)")
    p.set_defaults(handler=_info)

    p = sub.add_parser("synth", help="render a synthetic stream to a bag, or a training set")
    p.add_argument("--domain", default="pw3d_like",
                   help="domain name in config/domains/ or a YAML path (default pw3d_like)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output bag directory (or .npz with --trainset)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of stream")
    p.add_argument("--people", type=int, default=1, help="people in the stream")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--trainset", type=int, default=0, metavar="N",
                   help="write N training crops (.npz) instead of a stream")
    p.add_argument("--input-size", type=int, default=128, help="crop size for --trainset")
    p.add_argument("--workers", type=int, default=1, help="render processes for --trainset")
    p.set_defaults(handler=_synth)

    p = sub.add_parser("demo", help="frozen vs adapted regressor on a synthetic stream")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seconds", type=float, default=7.0, help="stream length (default 7 s)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--domain", default="pw3d_like")
    p.add_argument("--no-video", action="store_true", help="skip the overlay video")
    p.add_argument("--lockstep", action="store_true",
                   help="each frame predicted, then adapted on (protocol before, "
                        "deterministic; default: the stream plays at its frame rate with "
                        "adaptation in the background, as on a robot)")
    # Real time is the default; the flag stays accepted so that older scripts still run.
    p.add_argument("--realtime", action="store_true", help=argparse.SUPPRESS)
    _add_config_flags(p)
    p.set_defaults(handler=_demo)

    p = sub.add_parser("replay", help="run a bag, a video file or a folder of images through "
                                      "the pipeline")
    p.add_argument("bag", metavar="INPUT",
                   help="rosbag2 folder or .mcap/.db3 file, a video file, or a folder of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-adapt", action="store_true", help="frozen regressor only")
    p.add_argument("--protocol", choices=("async", "before", "after"), default="async",
                   help="async: adaptation in the background as on the robot (default); "
                        "before/after: lock-step, reproducible")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--no-video", action="store_true", help="skip the overlay video")
    p.add_argument("--image-topic", default="")
    p.add_argument("--camera-info-topic", default="")
    p.add_argument("--keypoints-topic", default="")
    p.add_argument("--ground-truth-topic", default="")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of a folder of images (default 30) or override of a video's")
    p.add_argument("--no-baseline", action="store_true",
                   help="with adaptation, skip the frozen regressor run on the same crops that "
                        "the 2D keypoint error report compares against")
    _add_input_flags(p)
    _add_config_flags(p)
    p.set_defaults(handler=_replay)

    p = sub.add_parser("live", help="a webcam through the pipeline, adapting in the background")
    p.add_argument("--camera", default="0",
                   help="OpenCV camera index (default 0); a video file or stream URL also works")
    p.add_argument("--out", default=None,
                   help="write overlay.mp4, estimates/ and metrics.json here (default: nothing)")
    p.add_argument("--frames", type=int, default=None, help="stop after this many images")
    p.add_argument("--no-adapt", action="store_true", help="frozen regressor only")
    p.add_argument("--show", action="store_true",
                   help="show the overlay in a window (needs an OpenCV build with a GUI; q quits)")
    _add_input_flags(p)
    _add_config_flags(p)
    p.set_defaults(handler=_live)

    add_train_parsers(sub)

    p = sub.add_parser("eval", help="evaluate the frozen regressor on domains or bags")
    p.add_argument("bags", nargs="*", help="rosbag2 folders or files with ground truth")
    p.add_argument("--domain", nargs="*", default=None,
                   help="synthetic domains to evaluate (e.g. h36m_like pw3d_like)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    p.add_argument("--duration", type=float, default=6.0, help="seconds per synthetic stream")
    p.add_argument("--weights", default="", help="checkpoint (default: bundled regressor)")
    p.add_argument("--limit", type=int, default=None, help="at most this many bag frames")
    p.add_argument("--out", default=None, help="JSON results path")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("score", help="score a recording of the ROS node's ~/bodies against "
                                     "ground truth in the same bag (docs/ros.md)")
    p.add_argument("bag", help="bag recorded with ros2 bag record")
    p.add_argument("--bodies", default="", help="estimate topic (default: auto)")
    p.add_argument("--ground-truth", default="", help="ground-truth topic (default: auto)")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    p.set_defaults(handler=_score)

    from .bench.commands import add_parsers

    add_parsers(sub, _add_config_flags, _bench)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except _user_errors() as err:
        # Problems with the user's input or installation get one clear line, not a traceback.
        print(f"hmr-ros {args.command}: error: {err}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """What `main` prints as one line: every user error of the package, and a missing file."""
    from .errors import HmrRosError

    return (HmrRosError, FileNotFoundError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
