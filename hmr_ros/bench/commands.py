"""`hmr-ros bench ...`: the benchmark subcommands' arguments and their dispatch (each bench's
module is imported only when it runs)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import PipelineConfig


def run(args: argparse.Namespace, config: PipelineConfig | None) -> int:
    """Run the parsed `hmr-ros bench BENCH`; `config` is the pipeline config of the benches
    that take one."""
    if args.bench == "model":
        from . import model

        model.run(args.out or "bench/results/model_cpu.json", args.presets, args.repeats,
                  args.threads)
        return 0
    if args.bench == "render":
        from . import render

        render.run(args.out or "bench/results/render_cpu.json", repeats=args.repeats)
        return 0
    if args.bench == "adapt":
        from . import adapt

        adapt.main(args, config)
        return 0
    if args.bench == "tto":
        from . import tto

        tto.main(args, config)
        return 0
    if args.bench == "temporal":
        from . import temporal

        temporal.main(args, config)
        return 0
    if args.bench == "flow":
        from . import flow

        flow.run(args.out or "bench/results/flow_cpu.json", tuple(args.domains), args.seed,
                 args.duration, args.repeats, adapt_method=args.adapt_method)
        return 0
    if args.bench == "infer":
        from . import infer

        infer.main(args)
        return 0
    if args.bench == "scopes":
        from . import scopes

        scopes.run([Path(p) for p in args.lockstep], [Path(p) for p in args.background],
                   Path(args.out_dir))
        return 0
    if args.bench == "gpu":
        from . import gpu

        return gpu.main(args)
    if args.bench == "soak":
        from . import soak

        soak.run(args.minutes, config, args.domain, args.seed, args.sample,
                 args.segment, args.scale, args.tag, args.out_dir)
        return 0
    if args.bench == "node":
        from . import node

        node.run(args.out_dir, args.tag, args.fps, args.width, args.height, args.seconds,
                 tuple(args.cases), args.repeats, args.seed, args.work,
                 dict(kv.split(":=", 1) for kv in args.launch_arg), args.fastdds_transports,
                 people=args.people, camera_only=args.camera_only, video=args.video,
                 rate=args.rate)
        return 0
    raise AssertionError(args.bench)


def add_parsers(sub, add_config_flags: Callable[..., None],
                handler: Callable[[argparse.Namespace], int]) -> None:
    """The `bench` subcommand and its benches on `sub` (the `hmr-ros` subparsers);
    `add_config_flags` is the CLI's --weights/--config/--set, `handler` its dispatcher."""
    p = sub.add_parser("bench", help="benchmarks; each writes JSON under bench/results/")
    bench = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    b = bench.add_parser("model", help="regressor presets and body model: params, latency")
    b.add_argument("--presets", nargs="*", default=None, help="default: all presets")
    b.add_argument("--repeats", type=int, default=20)
    b.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    b.add_argument("--out", default=None, help="JSON path (default bench/results/...)")
    b = bench.add_parser("render", help="synthetic-world rendering speed on one core")
    b.add_argument("--repeats", type=int, default=20)
    b.add_argument("--out", default=None, help="JSON path (default bench/results/...)")

    b = bench.add_parser("adapt", help="BOA's ablation on synthetic target domains")
    b.add_argument("--domains", nargs="+", default=["pw3d_like"])
    b.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002],
                   help="stream seeds to report on (tune on others)")
    b.add_argument("--duration", type=float, default=10.0, help="seconds per stream")
    b.add_argument("--methods", nargs="*", default=None,
                   help="none framewise joint two_stage boa_1st boa_2nd (default: all)")
    b.add_argument("--protocol", choices=("before", "after"), default="before",
                   help="before: predict each frame before adapting on it (default); "
                        "after: BOA's protocol, adapt on the frame then predict it")
    b.add_argument("--workers", type=int, default=2, help="parallel processes")
    b.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    b.add_argument("--background-only", action="store_true",
                   help="only the timing: steps/s of the worker beside camera-rate inference "
                        "and the inference p95 with/without it, on every stream (writes "
                        "adapt_background[_TAG].json)")
    b.add_argument("--repeats", type=int, default=1,
                   help="with --background-only: runs per stream (the median is reported)")
    b.add_argument("--out-dir", default="bench/results")
    b.add_argument("--tag", default="", help="suffix of the output file names")
    b.add_argument("--cache", default="runs/cache", help="where rendered streams are kept")
    add_config_flags(b, method=False)

    b = bench.add_parser("tto", help="DualNet's claim: per-frame test-time optimisation "
                                     "after k steps, and online adaptation over the first "
                                     "1/3/10 s, from the normal and the DualNet start")
    b.add_argument("--domains", nargs="+", default=["pw3d_like", "robot_cam"])
    b.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002],
                   help="stream seeds to report on (tune on others)")
    b.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 5, 14],
                   help="test-time steps per frame")
    b.add_argument("--variants", nargs="*", default=["normal", "normal_aux", "dualnet_2d",
                                                     "dualnet"],
                   help="per-frame rows: normal normal_aux dualnet_2d dualnet (start x loss), "
                        "control (needs --control-weights)")
    b.add_argument("--online-variants", nargs="*", default=["normal", "dualnet_2d", "dualnet"],
                   help="starts (and losses) of the online rows")
    b.add_argument("--online-methods", nargs="*", default=["framewise", "boa_2nd"],
                   help="online methods from each start (none to skip: pass nothing)")
    b.add_argument("--tto-seconds", type=float, default=2.0,
                   help="the per-frame part scores the first seconds of each stream")
    b.add_argument("--tto-scope", default=None, choices=("all", "layer4_head", "head", "norm"),
                   help="weights the per-frame steps change (default all, as EFT and DualNet)")
    b.add_argument("--tto-lr", type=float, default=None,
                   help="Adam lr of the per-frame steps (default 1e-4, tuned on seeds 100, 101)")
    b.add_argument("--duration", type=float, default=10.0, help="seconds per stream (online)")
    b.add_argument("--dualnet-weights", default="",
                   help="the DualNet start (default: the shipped weights/hmr_small_dualnet.pt)")
    b.add_argument("--dualnet-aux", default="",
                   help="its auxiliary network (default: beside it, <weights>.aux.pt)")
    b.add_argument("--dualnet-weight", type=float, default=1.0,
                   help="adapt.dualnet.weight of the variants with the auxiliary term")
    b.add_argument("--control-weights", default="",
                   help="the control variant's start: the normal start trained as long "
                        "without the inner step (hmr-ros train-meta --inner-lr 0)")
    b.add_argument("--join", nargs="+", default=None, metavar="JSON",
                   help="instead of running: join earlier bench tto results of the same "
                        "settings into one (tables and plot rebuilt)")
    b.add_argument("--workers", type=int, default=2, help="parallel processes")
    b.add_argument("--out-dir", default="bench/results")
    b.add_argument("--tag", default="", help="suffix of the output file names")
    b.add_argument("--cache", default="runs/cache", help="where rendered streams are kept")
    add_config_flags(b, method=False)

    b = bench.add_parser("temporal", help="temporal refinement (TAR): causal, lookahead 2/4, "
                                          "branch ablation, with and without BOA")
    b.add_argument("--domains", nargs="+", default=["pw3d_like", "robot_cam"])
    b.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002],
                   help="stream seeds to report on (tune on others)")
    b.add_argument("--duration", type=float, default=10.0, help="seconds per stream")
    b.add_argument("--methods", nargs="+", default=["none", "boa_2nd"],
                   help="adaptation methods under the stage (none = frozen)")
    b.add_argument("--modes", nargs="*", default=None,
                   help="causal lookahead2 lookahead4 causal_global_only causal_local_only "
                        "causal_reset "
                        "(default: all)")
    b.add_argument("--refiner", default="", help="refiner checkpoint (default: bundled)")
    b.add_argument("--max-frames", type=int, default=0,
                   help="score only the first N frames of each stream (0: all)")
    b.add_argument("--workers", type=int, default=2, help="parallel processes")
    b.add_argument("--out-dir", default="bench/results")
    b.add_argument("--tag", default="", help="suffix of the output file names")
    b.add_argument("--cache", default="runs/cache", help="where rendered streams are kept")
    add_config_flags(b, method=False)

    b = bench.add_parser("flow", help="DIS optical flow between person crops: ms per pair "
                         "and end-point error against the renderer's exact flow")
    b.add_argument("--domains", nargs="+", default=["pw3d_like", "robot_cam"])
    b.add_argument("--seed", type=int, default=1000)
    b.add_argument("--duration", type=float, default=1.0, help="seconds of stream per domain")
    b.add_argument("--repeats", type=int, default=5, help="timed calls per pair and preset")
    b.add_argument("--adapt-method", default="boa_2nd",
                   help="also check the model after this method adapted on the frames "
                        "(none: the frozen model only)")
    b.add_argument("--out", default=None, help="JSON path (default bench/results/...; "
                   "the table goes next to it as .md)")

    b = bench.add_parser("infer", help="inference latency and throughput per backend")
    b.add_argument("--backends", nargs="*", default=None,
                   help="torch, onnxruntime, tensorrt (default: all available here)")
    b.add_argument("--presets", nargs="*", default=None, help="default: hmr_small hmr_r50")
    b.add_argument("--batch", type=int, nargs="*", default=[1, 4], help="people per call")
    b.add_argument("--repeats", type=int, default=30)
    b.add_argument("--threads", type=int, default=1, help="CPU threads per backend")
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    b.add_argument("--out", default=None, help="JSON path (default bench/results/...)")
    b = bench.add_parser("scopes", help="the adaptation-scope ablation: lock-step and "
                                        "real-time bench adapt results in one table and plot")
    b.add_argument("--lockstep", nargs="*", default=[], help="bench adapt JSON files")
    b.add_argument("--background", nargs="*", default=[],
                   help="bench adapt --background-only JSON files")
    b.add_argument("--out-dir", default="bench/results")
    b = bench.add_parser("gpu", help="unattended GPU readiness check: torch CUDA, ONNX "
                                     "Runtime CUDA and TensorRT latency, a TensorRT refit "
                                     "with adapted weights, BOA steps/s (says what it could "
                                     "not do)")
    b.add_argument("--repeats", type=int, default=30, help="timed calls per latency row")
    b.add_argument("--duration", type=float, default=3.0,
                   help="seconds of synthetic stream per BOA steps/s row")
    b.add_argument("--out", default=None, help="JSON path (default bench/results/gpu.json)")
    b = bench.add_parser("soak", help="adaptation in the background on a long stream that "
                                      "never repeats: RSS, threads, steps, rollbacks")
    b.add_argument("--minutes", type=float, default=30.0)
    b.add_argument("--domain", default="pw3d_like")
    b.add_argument("--seed", type=int, default=5000, help="first segment's seed (+1 each)")
    b.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    b.add_argument("--segment", type=float, default=20.0, help="seconds per stream segment")
    b.add_argument("--scale", type=float, default=0.5, help="render scale of the domain")
    b.add_argument("--tag", default="cpu", help="writes bench/results/soak_<tag>.json/.md")
    b.add_argument("--out-dir", default="bench/results")
    add_config_flags(b)
    b = bench.add_parser("node", help="the ROS node through launch and DDS (needs the ROS 2 "
                                      "workspace): rates, drops, latency")
    b.add_argument("--fps", type=float, default=30.0)
    b.add_argument("--width", type=int, default=640)
    b.add_argument("--height", type=int, default=480)
    b.add_argument("--seconds", type=float, default=10.0)
    b.add_argument("--cases", nargs="*", default=["adapt", "no_adapt", "adapt_no_markers"],
                   help="adapt, no_adapt, adapt_no_markers, adapt_no_hri (REP-155 output off), "
                        "adapt_keypoints_first (each frame's keypoints sent before its image)")
    b.add_argument("--repeats", type=int, default=1, help="cases are interleaved per repeat")
    b.add_argument("--seed", type=int, default=5, help="stream seed")
    b.add_argument("--people", type=int, default=1, help="people in the synthetic stream")
    b.add_argument("--camera-only", action="store_true",
                   help="no keypoints topic: the node finds people itself (the [mediapipe] "
                        "extra)")
    b.add_argument("--video", default=None,
                   help="play this video file as the camera instead (camera only), e.g. "
                        "/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    b.add_argument("--rate", type=float, default=None,
                   help="with --video: frames per second (default: the file's)")
    b.add_argument("--tag", default="cpu", help="writes bench/results/node_<tag>.json/.md")
    b.add_argument("--out-dir", default="bench/results")
    b.add_argument("--work", default=None, help="bags and logs (default runs/bench_node)")
    b.add_argument("--launch-arg", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra adapt.launch.py argument (repeatable)")
    b.add_argument("--fastdds-transports", default="",
                   help="FASTDDS_BUILTIN_TRANSPORTS of node and player, e.g. LARGE_DATA "
                        "(default: the environment's, else Fast DDS' UDP + shared memory)")
    p.set_defaults(handler=handler)
