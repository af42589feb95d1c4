"""The `hmr-ros` training commands: `train`, `train-temporal`, `train-pose-vae`, `train-meta`.

Their arguments are parsed here; each implementation is imported only when its command runs.
"""

from __future__ import annotations

import argparse


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


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """The four training subcommands, in the order `hmr-ros --help` lists them."""
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
