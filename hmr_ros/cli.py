"""The `hmr-ros` command.

Each subcommand parses its arguments here and imports its implementation lazily, so
`hmr-ros --help` stays fast and a broken optional dependency only affects its own command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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


def _train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, config_with, train

    cfg = config_with(TrainConfig(), preset=args.preset, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      threads=args.threads)
    report = train(cfg, args.data, args.run, val_path=args.val, out=args.out,
                   resume=args.resume)
    final = report.get("final", {})
    print(f"trained {report['steps']} steps on {report['train_size']} crops; final loss "
          f"{final.get('total', float('nan')):.4f}, held-out PA-MPJPE "
          f"{final.get('val_pa_mpjpe', float('nan')):.1f} mm")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _train_temporal(args: argparse.Namespace) -> int:
    from .train_temporal import main

    return main(args)


def _train_pose_vae(args: argparse.Namespace) -> int:
    from .pose_vae_train import train_pose_vae

    command = ("hmr-ros train-pose-vae --out " + args.out + f" --steps {args.steps}"
               f" --seed {args.seed}")
    report = train_pose_vae(args.out, steps=args.steps, seed=args.seed, command=command)
    h = report["held_out"]
    print(f"pose VAE: held-out reconstruction {h['reconstruction_deg_mean']:.2f} deg per joint "
          f"(p95 {h['reconstruction_deg_p95']:.2f}); prior samples within limits "
          f"{100 * h['prior_samples_within_limits']:.1f}%; wrote {args.out}")


def _train_meta(args: argparse.Namespace) -> int:
    from .train_meta import MetaTrainConfig, config_with, parse_overrides, train_meta

    cfg = config_with(MetaTrainConfig(), preset=args.preset, init=args.init,
                      aux_init=args.aux_init, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, aux_lr=args.aux_lr,
                      inner_lr=args.inner_lr, order=args.order, seed=args.seed,
                      threads=args.threads, **parse_overrides(args.set or []))
    report = train_meta(cfg, args.data, args.run, val_path=args.val, out=args.out,
                        resume=args.resume, out_fp16=args.out_fp16)
    final = report.get("final", {})
    print(f"meta-trained {report['steps']} steps on {report['train_size']} crops; outer loss "
          f"{final.get('outer', float('nan')):.4f}, held-out PA-MPJPE "
          f"{final.get('val_pa_mpjpe', float('nan')):.1f} mm (auxiliary "
          f"{final.get('val_aux_pa_mpjpe', float('nan')):.1f} mm)")
    if args.out:
        print(f"wrote {args.out} and {args.out}.aux.pt")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.commands import run

    return run(args, _config(args) if args.bench in NEEDS_CONFIG else None)


def _export(args: argparse.Namespace) -> int:
    """`hmr-ros export`: 0 on success, 1 on a failed export, 2 when TensorRT is missing."""
    from .model.errors import ExportError, TensorRTUnavailable
    from .model.export import export_onnx, export_tensorrt, import_tensorrt

    fmt = getattr(args, "format", "onnx")
    max_batch = max(1, int(getattr(args, "batch", 1) or 1))
    if fmt == "tensorrt":
        # Before any slow work: without TensorRT there is nothing this command can do.
        try:
            import_tensorrt()
        except TensorRTUnavailable as e:
            print(f"hmr-ros export: cannot build a TensorRT engine: {e}", file=sys.stderr)
            return 2
    from .model.checkpoint import CheckpointError
    from .model.weights import load_regressor

    try:
        loaded = load_regressor(args.weights or None)
    except (FileNotFoundError, CheckpointError) as e:
        print(f"hmr-ros export: cannot load the regressor weights: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    # The engine's ONNX (and its weight-name map, which refitting by name needs) goes next to
    # the engine: `model.engine` -> `model.onnx`.
    onnx_path = out if fmt == "onnx" else out.with_name(out.stem + ".onnx")
    if fmt == "tensorrt" and onnx_path == out:
        onnx_path = out.with_name(out.name + ".onnx")
    try:
        record = export_onnx(loaded.model, onnx_path, max_batch=max_batch)
    except ExportError as e:
        print(f"hmr-ros export: {e}", file=sys.stderr)
        return 1
    size_mb = record.path.stat().st_size / 1e6
    print(f"wrote {record.path} ({size_mb:.1f} MB, opset {record.opset}, input "
          f"{record.input_name} (B, 3, {record.input_size}, {record.input_size}), "
          f"outputs {', '.join(record.output_names)})")
    print(f"wrote {record.names_path} ({len(record.names)} weights mapped to initializers)")
    if fmt == "onnx":
        return 0
    try:
        build = export_tensorrt(record.path, out, fp16=bool(args.fp16), max_batch=max_batch)
    except TensorRTUnavailable as e:  # pragma: no cover - checked above
        print(f"hmr-ros export: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"hmr-ros export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {build.engine_path} (TensorRT {build.trt_version}, "
          f"{'fp16' if build.fp16 else 'fp32'}, batch 1..{build.max_batch}, refittable, "
          f"{build.seconds:.1f} s)")
    return 0


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
    # The default since issue 14; kept so that scripts written for the opt-in still run.
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

    p = sub.add_parser("train", help="pretrain a regressor on a synthetic training set")
    p.add_argument("--data", required=True, help="training set .npz (hmr-ros synth --trainset)")
    p.add_argument("--val", default=None, help="held-out .npz for PA-MPJPE during training")
    p.add_argument("--run", required=True, help="run folder (last.pt, log.json, loss.png)")
    p.add_argument("--out", default=None, help="final checkpoint path")
    p.add_argument("--preset", default=None, help="regressor preset (default hmr_small)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    p.add_argument("--resume", action="store_true", help="continue from <run>/last.pt")
    p.set_defaults(handler=_train)

    p = sub.add_parser("train-temporal", help="train the temporal refiner (TAR) on synthetic "
                                              "sequences with cached frozen features")
    p.add_argument("--run", default="runs/temporal", help="run folder (feature cache)")
    p.add_argument("--out", default="weights/tar_small_h36m.pt", help="refiner checkpoint "
                   "(a .json report is written next to it)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per sequence")
    p.add_argument("--workers", type=int, default=2, help="processes rendering sequences")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_train_temporal)

    p = sub.add_parser("train-pose-vae", help="train the pose VAE DAPA perturbs poses with "
                       "(on the synthetic motion library)")
    p.add_argument("--out", default="weights/pose_vae.npz")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_train_pose_vae)

    p = sub.add_parser("train-meta", help="DualNet meta-training: a start point trained to be "
                       "adapted (test-time step inside training, auxiliary network)")
    p.add_argument("--data", required=True, help="training set .npz (hmr-ros synth --trainset)")
    p.add_argument("--val", default=None, help="held-out .npz for PA-MPJPE during training")
    p.add_argument("--run", required=True, help="run folder (last.pt, log.json, report.json)")
    p.add_argument("--out", default=None, help="final checkpoint (auxiliary beside: .aux.pt)")
    p.add_argument("--init", default=None, help="checkpoint both networks start from")
    p.add_argument("--aux-init", default=None, help="the auxiliary network's own start")
    p.add_argument("--preset", default=None, help="regressor preset without --init")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="outer Adam lr of the main network")
    p.add_argument("--aux-lr", type=float, default=None, help="Adam lr of the auxiliary one")
    p.add_argument("--inner-lr", type=float, default=None, help="test-time SGD step")
    p.add_argument("--order", type=int, choices=(1, 2), default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any MetaTrainConfig field, e.g. --set w_aux_joints=2")
    p.add_argument("--resume", action="store_true", help="continue from <run>/last.pt")
    p.add_argument("--out-fp16", action="store_true",
                   help="store the final checkpoints' weights in float16 (half the size)")
    p.set_defaults(handler=_train_meta)

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

    p = sub.add_parser("export", help="export the regressor to ONNX or a TensorRT engine")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("--weights", default="", help="checkpoint (default: bundled regressor)")
    p.add_argument("--out", required=True, help="output .onnx or .engine path")
    p.add_argument("--batch", type=int, default=1, help="maximum batch (people per call)")
    p.add_argument("--fp16", action="store_true", help="TensorRT: build in half precision")
    p.set_defaults(handler=_export)
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
    from .adapt.prior import PriorFileError
    from .body.smpl_io import SMPLFileError
    from .config import ConfigError
    from .data.video import VideoError
    from .detect.base import DetectorUnavailable
    from .messages.bag import BagError
    from .model.checkpoint import CheckpointError
    from .model.config import ConfigError as ModelConfigError
    from .model.errors import BackendUnavailable, ExportError
    from .temporal.checkpoint import RefinerCheckpointError
    from .world.domain import DomainError

    return (PriorFileError, SMPLFileError, ConfigError, BagError, DomainError, VideoError,
            DetectorUnavailable, CheckpointError, ModelConfigError, BackendUnavailable,
            ExportError, FileNotFoundError, RefinerCheckpointError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
