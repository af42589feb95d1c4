"""`hmr-ros train-temporal`: train the temporal refiner on synthetic sequences.

1. Sequences of the training domains are rendered (seeds disjoint from the tuning seeds
   100-101 and the report seeds 1000-1004) and each frame's person is cropped as the pipeline
   crops it (square box from the simulated detector's keypoints); the FROZEN bundled regressor
   gives its features and estimate, cached to disk per sequence (`<run>/cache/*.npz`, fp16
   feature maps), so training never runs the backbone.
2. The refiner trains on windows of those features: each step one lookahead d in 0..max
   (one set of weights serves causal and lookahead modes), a branch switched off now and then
   (so the global-only / local-only ablation can be run on the same weights), loss
   sum_l 0.85^(L - l) L_l over the initial estimate and every refinement iteration, L_l =
   rotation matrices + betas + root-centred 3D joints + their 2D reprojection in the crop
   through the real intrinsics (TAR's terms; weights as `hmr-ros train`'s).

Deterministic in its seed; progress on stderr; a JSON report next to the weights.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import jsonio
from .npzio import read_npz
from .provenance import provenance

log = logging.getLogger("hmr_ros")


@dataclass(frozen=True)
class TemporalTrainConfig:
    domains: tuple[str, ...] = ("h36m_like", "hp3d_like")
    sequences: tuple[int, ...] = (28, 14)  # per domain
    val_sequences: tuple[int, ...] = (3, 2)
    duration: float = 3.0  # s per sequence
    seed0: int = 5000  # sequence seeds seed0 + 100 * domain index + k
    steps: int = 1500
    batch_size: int = 24
    lr: float = 1e-4  # 5e-4 made the refiner worse than the regressor by step 500
    max_future: int = 4
    past: int = 8
    local_past: int = 4
    drop_branch: float = 0.15  # per step: probability of training with one branch off
    w_pose: float = 1.0
    w_betas: float = 0.01
    w_3d: float = 5.0
    w_2d: float = 5.0
    gamma: float = 0.85  # TAR's iteration weighting 0.85^(L - l)
    seed: int = 0
    workers: int = 2
    eval_every: int = 250


def _sequence_job(args: tuple) -> str:
    domain, seed, duration, path = args
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    if Path(path).exists():
        return path
    from .body import BodyModel
    from .config import PipelineConfig
    from .data.crop import CropError, crop_image, person_box
    from .eval.evaluate import pose_bodies
    from .geometry import axis_angle_to_matrix
    from .model.backends.base import crops_to_tensor
    from .model.weights import load_regressor
    from .temporal.features import regress_with_features
    from .world.domain import load_domain
    from .world.scene import SyntheticSequence

    model = load_regressor().model.eval()
    body = BodyModel()
    inference = PipelineConfig().inference  # the pipeline's default crop settings
    seq = SyntheticSequence(load_domain(domain), seed=seed, duration_s=duration, body=body)
    size = model.config.input_size
    crops, boxes, valid, gts = [], [], [], []
    for i in range(len(seq)):
        fr = seq.frame(i).frame
        det = next((d for d in fr.detections if d.id == 1), None)
        box = None
        if det is not None:
            try:
                box = person_box(det, inference, fr.width, fr.height)
            except CropError:
                box = None
        valid.append(box is not None)
        if box is None:  # keep the frame (a gap in the track), filled from its neighbour
            box = boxes[-1] if boxes else np.array([fr.width / 2, fr.height / 2,
                                                    min(fr.width, fr.height)], np.float32)
        boxes.append(np.asarray(box, np.float32))
        crops.append(crop_image(fr.image, box, size))
        gts.append(fr.ground_truth[1])
    with torch.inference_mode():
        out, feats = regress_with_features(model, crops_to_tensor(np.stack(crops)))
        ids, bodies = pose_bodies(body, {k: g for k, g in enumerate(gts)})
    pose = torch.from_numpy(np.stack([g.full_pose() for g in gts]).astype(np.float32))
    est = torch.cat([out.pose6d.flatten(1), out.betas, out.cam], 1)
    K = np.repeat(seq.camera.K[None].astype(np.float32), len(seq), 0)
    np.savez_compressed(
        path, global_=feats.global_.numpy(), fmap=feats.fmap.numpy().astype(np.float16),
        est=est.numpy(), box=np.stack(boxes), K=K, valid=np.array(valid),
        gt_rotmat=axis_angle_to_matrix(pose.reshape(-1, 24, 3)).numpy(),
        gt_betas=np.stack([g.betas for g in gts]).astype(np.float32),
        gt_joints=bodies.joints.numpy())  # camera frame (24, 3)
    return path


def build_cache(cfg: TemporalTrainConfig, run: Path, progress: bool = True
                ) -> tuple[list[str], list[str]]:
    """(training, validation) cache files, rendering what is missing with `workers`."""
    from .progress import Progress

    cache = run / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    train, val, jobs = [], [], []
    for di, (domain, n, nv) in enumerate(zip(cfg.domains, cfg.sequences, cfg.val_sequences)):
        for k in range(n + nv):
            seed = cfg.seed0 + 100 * di + k
            path = str(cache / f"{domain}_s{seed}_{cfg.duration:g}s.npz")
            (train if k < n else val).append(path)
            jobs.append((domain, seed, cfg.duration, path))
    jobs = [j for j in jobs if not Path(j[3]).exists()]  # cached ones are kept
    with Progress(len(jobs), "temporal features", enabled=progress) as bar:
        if cfg.workers > 1 and len(jobs) > 1:
            with mp.get_context("spawn").Pool(cfg.workers) as pool:
                for _ in pool.imap_unordered(_sequence_job, jobs):
                    bar.update(1)
        else:
            for job in jobs:
                _sequence_job(job)
                bar.update(1)
    return train, val


def load_sequences(paths: list[str]) -> list[dict[str, np.ndarray]]:
    out = []
    for p in paths:
        d = read_npz(p)
        d["global"] = d.pop("global_")
        d["fmap"] = d["fmap"].astype(np.float32)
        out.append(d)
    return out


def _loss_terms(model, est: torch.Tensor, seqs_gt: dict[str, torch.Tensor], box, K,
                cfg: TemporalTrainConfig) -> dict[str, torch.Tensor]:
    from .temporal.kinematics import estimate_joints, project_to_crop

    rotmat, joints, cam = estimate_joints(model.joints, est)
    gt_j = seqs_gt["joints"]
    rel = joints - joints[:, :1]
    gt_rel = gt_j - gt_j[:, :1]
    uv = project_to_crop(joints, cam, box, K)
    # The truth's 2D: its camera-frame joints through the same K into the same crop.
    z = gt_j[..., 2:].clamp(min=0.1)
    gpx = torch.einsum("nij,nkj->nki", K, gt_j / z)[..., :2]
    half = (box[:, 2:] / 2)[:, None]
    gt_uv = (gpx - box[:, None, :2]) / half
    w = seqs_gt["weight"][:, None]
    return {"pose": (((rotmat - seqs_gt["rotmat"]) ** 2).flatten(1).mean(1) * w[:, 0]).mean(),
            "betas": (((est[:, 144:154] - seqs_gt["betas"]) ** 2).mean(1) * w[:, 0]).mean(),
            "3d": (((rel - gt_rel) ** 2).sum(-1).mean(1) * w[:, 0]).mean(),
            "2d": ((((uv - gt_uv) ** 2).sum(-1).mean(1)) * w[:, 0]).mean()}


def _batch(seqs, rng: np.random.Generator, cfg: TemporalTrainConfig, future: int, size: int):
    from .temporal.refine import WindowSpec, window_inputs

    spec = WindowSpec(cfg.past, cfg.local_past, future)
    picks: dict[int, list[int]] = {}
    for _ in range(size):
        s = int(rng.integers(len(seqs)))
        picks.setdefault(s, []).append(int(rng.integers(len(seqs[s]["est"]))))
    parts, gts = [], {"rotmat": [], "betas": [], "joints": [], "weight": []}
    for s, targets in picks.items():
        seq = seqs[s]
        n = len(seq["est"])
        t = np.asarray(targets)
        # Online the newest frame is the target's + d, or the stream's last at its end.
        newest = np.minimum(t + future, n - 1)
        parts.append(window_inputs(seq, t, newest, spec))
        gts["rotmat"].append(seq["gt_rotmat"][t])
        gts["betas"].append(seq["gt_betas"][t])
        gts["joints"].append(seq["gt_joints"][t])
        gts["weight"].append(seq["valid"][t].astype(np.float32))
    inputs = {k: (torch.cat([p[k] for p in parts]) if isinstance(parts[0][k], torch.Tensor)
                  and k != "offsets" else parts[0][k]) for k in parts[0]}
    gt = {k: torch.as_tensor(np.concatenate(v), dtype=torch.float32) for k, v in gts.items()}
    return inputs, gt


def evaluate_refiner(model, seqs, future: int, use_global: bool = True,
                     use_local: bool = True) -> dict[str, float]:
    """Held-out sequences: MPJPE (root-relative, mm) of the regressor's and the refiner's
    joints, and their ACCEL (mm/frame^2), every frame a target with causal/lookahead windows."""
    from .temporal.kinematics import estimate_joints
    from .temporal.refine import WindowSpec, run_refiner, window_inputs

    cfg = model.config
    spec = WindowSpec(min(cfg.max_past, 8), 4, future)
    err0, err1, acc0, acc1 = [], [], [], []
    with torch.inference_mode():
        for seq in seqs:
            n = len(seq["est"])
            t = np.arange(n)
            inputs = window_inputs(seq, t, np.minimum(t + future, n - 1), spec)
            out = run_refiner(model, inputs, use_global, use_local)[-1]
            gt = torch.as_tensor(seq["gt_joints"])
            gt = gt - gt[:, :1]
            for est, errs, accs in ((inputs["est"][:, spec.past], err0, acc0),
                                    (out, err1, acc1)):
                _, j, _ = estimate_joints(model.joints, est)
                j = j - j[:, :1]
                errs.append(((j - gt).norm(dim=-1).mean(1) * 1000).numpy())
                a = (j[2:] - 2 * j[1:-1] + j[:-2]) - (gt[2:] - 2 * gt[1:-1] + gt[:-2])
                accs.append((a.norm(dim=-1).mean(1) * 1000).numpy())
    return {"mpjpe_regressor": float(np.concatenate(err0).mean()),
            "mpjpe_refined": float(np.concatenate(err1).mean()),
            "accel_regressor": float(np.concatenate(acc0).mean()),
            "accel_refined": float(np.concatenate(acc1).mean())}


def train(cfg: TemporalTrainConfig, run: str | Path, out: str | Path,
          progress: bool = True) -> dict:
    from .body import BodyModel
    from .model.weights import load_regressor
    from .progress import Progress
    from .temporal.checkpoint import save_refiner
    from .temporal.features import map_shape
    from .temporal.model import TARConfig, TemporalRefiner
    from .temporal.refine import run_refiner

    run = Path(run)
    t_start = time.time()
    train_p, val_p = build_cache(cfg, run, progress)
    t_data = time.time() - t_start
    seqs, vals = load_sequences(train_p), load_sequences(val_p)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    regressor = load_regressor().model
    channels, _ = map_shape(regressor)
    tcfg = TARConfig(feat_dim=regressor.feature_dim, map_channels=channels,
                     max_past=cfg.past, max_future=cfg.max_future)
    model = TemporalRefiner(tcfg, BodyModel())
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.08)
    weights = {"pose": cfg.w_pose, "betas": cfg.w_betas, "3d": cfg.w_3d, "2d": cfg.w_2d}
    history, evals = [], []
    t_train = time.time()
    with Progress(cfg.steps, "train temporal", enabled=progress) as bar:
        for step in range(1, cfg.steps + 1):
            future = int(rng.integers(cfg.max_future + 1))
            branch = rng.random()
            use_g = not (branch < cfg.drop_branch / 2)
            use_l = not (cfg.drop_branch / 2 <= branch < cfg.drop_branch)
            inputs, gt = _batch(seqs, rng, cfg, future, cfg.batch_size)
            outs = run_refiner(model, inputs, use_g, use_l)
            L = len(outs) - 1
            total = torch.zeros(())
            last = {}
            for li, est in enumerate(outs):
                terms = _loss_terms(model, est, gt, inputs["box"], inputs["K"], cfg)
                total = total + cfg.gamma ** (L - li) * sum(weights[k] * v
                                                           for k, v in terms.items())
                last = terms
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            history.append({"step": step, "loss": float(total.detach()),
                            **{k: float(v.detach()) for k, v in last.items()}})
            bar.update(1, loss=f"{float(total.detach()):.4f}")
            if step % cfg.eval_every == 0 or step == cfg.steps:
                model.eval()
                ev = {"step": step,
                      **{f"d{d}": evaluate_refiner(model, vals, d) for d in (0, 2, 4)}}
                model.train()
                evals.append(ev)
                log.info("step %d: %s", step, ev)
    model.eval()
    report = {"command": "hmr-ros train-temporal", "config": asdict(cfg),
              "refiner": tcfg.to_dict(),
              "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "train_sequences": [Path(p).name for p in train_p],
              "val_sequences": [Path(p).name for p in val_p],
              "features_s": round(t_data, 1), "train_s": round(time.time() - t_train, 1),
              "held_out": evals[-1] if evals else {}, "evals": evals,
              "loss_every_25": history[::25], **provenance()}
    ablation = {}
    for name, g, loc in (("global_only", True, False), ("local_only", False, True)):
        ablation[name] = {f"d{d}": evaluate_refiner(model, vals, d, g, loc) for d in (0, 2)}
    report["held_out_ablation"] = ablation
    save_refiner(out, model, {"regressor": "hmr_small_h36m.pt", "train": asdict(cfg)})
    jsonio.write_json(Path(out).with_suffix(".json"), report)
    return report


def main(args) -> int:
    cfg = TemporalTrainConfig(steps=args.steps, workers=args.workers, seed=args.seed,
                              duration=args.duration)
    torch.set_num_threads(args.threads)
    report = train(cfg, args.run, args.out, progress=not args.quiet)
    print(jsonio.dumps(report["held_out"]) if hasattr(jsonio, "dumps") else report["held_out"])
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0
