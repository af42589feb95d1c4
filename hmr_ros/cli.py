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


def _body_model(args: argparse.Namespace) -> int:
    from .body.synthetic import build_synthetic_smpl, write_npz

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


def _bench(args: argparse.Namespace) -> int:
    if args.bench == "model":
        from .bench import model

        model.run(args.out or "bench/results/model_cpu.json", args.presets, args.repeats,
                  args.threads)
        return 0
    raise AssertionError(args.bench)


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

    p = sub.add_parser("bench", help="benchmarks; each writes JSON under bench/results/")
    bench = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    b = bench.add_parser("model", help="regressor presets and body model: params, latency")
    b.add_argument("--presets", nargs="*", default=None, help="default: all presets")
    b.add_argument("--repeats", type=int, default=20)
    b.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    b.add_argument("--out", default=None, help="JSON path (default bench/results/...)")
    p.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
