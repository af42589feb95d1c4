"""`hmr-ros train`: pretrain a regressor on a synthetic training set (the source domain).

Losses as in SPIN's supervised part: rotation matrices of the 24 joints, betas, root-centred
3D points (24 joints and 22 landmarks) and their 2D reprojection in normalised crop
coordinates through the full-perspective camera built from the real intrinsics. Adam with a
warm-up and cosine decay, photometric augmentation, deterministic by seed, resumable from
`<run>/last.pt`, progress on stderr, a JSON log and a loss-curve PNG.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import jsonio
from .adapt.losses import project_to_crop
from .body import BodyModel, map_points
from .eval.metrics import mpjpe, pa_mpjpe
from .geometry import axis_angle_to_matrix, matrix_to_rot6d, translation_to_crop_cam
from .model import HMR, MeanParams, get_preset, save_checkpoint
from .model.checkpoint import read_checkpoint_file
from .progress import Progress

log = logging.getLogger("hmr_ros")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "hmr_small"
    steps: int = 6000
    batch_size: int = 48
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 2
    w_pose: float = 1.0
    w_betas: float = 0.01
    w_3d: float = 5.0
    w_2d: float = 5.0
    w_cam: float = 1.0
    augment: bool = True
    eval_every: int = 500
    log_every: int = 25


@dataclass
class TrainSet:
    """A training set in memory: images (N, R, R, 3) uint8 and labels (see TrainingCrop)."""

    images: Tensor
    rotmat: Tensor  # (N, 24, 3, 3)
    betas: Tensor
    points3d: Tensor  # (N, 46, 3) camera frame
    points2d: Tensor  # (N, 46, 2) crop coords
    box: Tensor  # (N, 3)
    K: Tensor  # (N, 3, 3)
    transl: Tensor  # (N, 3)
    domain: str

    @classmethod
    def load(cls, path: str | Path) -> TrainSet:
        with np.load(path) as d:
            pose = torch.from_numpy(d["pose"].astype(np.float32))
            return cls(
                images=torch.from_numpy(d["image"]),
                rotmat=axis_angle_to_matrix(pose),
                betas=torch.from_numpy(d["betas"].astype(np.float32)),
                points3d=torch.from_numpy(d["points3d"].astype(np.float32)),
                points2d=torch.from_numpy(d["points2d"].astype(np.float32)),
                box=torch.from_numpy(d["box"].astype(np.float32)),
                K=torch.from_numpy(d["K"].astype(np.float32)),
                transl=torch.from_numpy(d["transl"].astype(np.float32)),
                domain=str(d["domain"]),
            )

    def __len__(self) -> int:
        return len(self.images)

    def mean_params(self) -> MeanParams:
        """Mean 6D pose, betas and crop camera of the labels: the regressor's start."""
        cam = translation_to_crop_cam(self.transl, self.box, self.K)
        return MeanParams(pose=matrix_to_rot6d(self.rotmat).mean(0).reshape(144),
                          shape=self.betas.mean(0), cam=cam.mean(0))


def augment(images: Tensor, gen: torch.Generator) -> Tensor:
    """Photometric augmentation of (B, 3, R, R) images in [0, 1]: brightness, contrast,
    colour gains, grey, blur and noise (geometry is left alone: the labels depend on it)."""
    b = images.shape[0]

    def u(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=gen)

    x = images * u(0.7, 1.3, 1, 1, 1) * u(0.9, 1.1, 3, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.7, 1.3, 1, 1, 1) + mean
    grey = (torch.rand(b, 1, 1, 1, generator=gen) < 0.1).float()
    x = grey * x.mean(1, keepdim=True).expand_as(x) + (1 - grey) * x
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16.0
        w = k.expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), w, groups=3)
    x = x + torch.randn(x.shape, generator=gen) * u(0.0, 0.03, 1, 1, 1)
    return x.clamp(0.0, 1.0)


@dataclass
class LossTerms:
    total: Tensor
    pose: Tensor
    betas: Tensor
    joints3d: Tensor
    keypoints2d: Tensor
    cam: Tensor

    def items(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


def supervised_loss(model: HMR, body: BodyModel, batch: dict[str, Tensor],
                    cfg: TrainConfig) -> LossTerms:
    out = model(batch["images"])
    pred = body.forward_rotmat(out.rotmat, out.betas).points  # (B, 46, 3) model origin
    gt3d = batch["points3d"]
    p3 = pred - pred[:, :1]
    g3 = gt3d - gt3d[:, :1]
    l3d = F.smooth_l1_loss(p3, g3, beta=0.05)
    # Reproject through the real camera (a floor on s keeps the depth finite early on).
    xy = project_to_crop(pred, out.cam, batch["box"], batch["K"])
    l2d = F.smooth_l1_loss(xy, batch["points2d"], beta=0.05)
    lpose = F.mse_loss(out.rotmat, batch["rotmat"])
    lbetas = F.mse_loss(out.betas, batch["betas"])
    lcam = F.relu(0.2 - out.cam[:, 0]).pow(2).mean()
    total = (cfg.w_pose * lpose + cfg.w_betas * lbetas + cfg.w_3d * l3d + cfg.w_2d * l2d
             + cfg.w_cam * lcam)
    return LossTerms(total, lpose, lbetas, l3d, l2d, lcam)


def _batch(data: TrainSet, idx: Tensor, cfg: TrainConfig, gen: torch.Generator | None
           ) -> dict[str, Tensor]:
    images = data.images[idx].permute(0, 3, 1, 2).float() / 255.0
    if gen is not None and cfg.augment:
        images = augment(images, gen)
    return {"images": images, "rotmat": data.rotmat[idx], "betas": data.betas[idx],
            "points3d": data.points3d[idx], "points2d": data.points2d[idx],
            "box": data.box[idx], "K": data.K[idx]}


@torch.no_grad()
def evaluate_set(model: HMR, body: BodyModel, data: TrainSet, batch_size: int = 64
                 ) -> dict[str, float]:
    """MPJPE (hip-centred) and PA-MPJPE in mm over LSP-14 joints of a labelled crop set."""
    was = model.training
    model.eval()
    errs, pa = [], []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        out = model(data.images[idx].permute(0, 3, 1, 2).float() / 255.0)
        pred = map_points(body.forward_rotmat(out.rotmat, out.betas).points, "lsp14")
        gt = map_points(data.points3d[idx], "lsp14")
        errs.append(mpjpe(pred, gt, root=(2, 3)))
        pa.append(pa_mpjpe(pred, gt))
    model.train(was)
    return {"mpjpe": float(np.concatenate(errs).mean()),
            "pa_mpjpe": float(np.concatenate(pa).mean())}


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def train(cfg: TrainConfig, train_path: str | Path, run_dir: str | Path,
          val_path: str | Path | None = None, out: str | Path | None = None,
          resume: bool = False, progress: bool = True, stop_after: int | None = None) -> dict:
    """Train and write `<run_dir>/last.pt` (resumable), `log.json`, `loss.png`, and the final
    checkpoint `out` (our format, config beside the weights). Returns the final report.

    `stop_after` ends this invocation at that step (as an interruption would) after saving
    `last.pt`; a later call with `resume=True` continues exactly where it stopped.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = TrainSet.load(train_path)
    val = TrainSet.load(val_path) if val_path else None
    body = BodyModel()
    model = HMR(get_preset(cfg.preset), mean_params=data.mean_params())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    step = 0
    last = run / "last.pt"
    if resume and last.exists():
        # Tensors and plain types only (see _atomic_save): nothing in a run folder can run code.
        state = read_checkpoint_file(last)
        if state["config"] != asdict(cfg):
            log.warning("resuming with a different config than the run was started with")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])  # dropout draws from the global generator
        step = state["step"]
        history = state["history"]
        print(f"resumed {run} at step {step}")
    model.train()
    t0 = time.perf_counter()
    n = len(data)
    with Progress(cfg.steps, "train", enabled=progress) as bar:
        bar.n = step
        while step < cfg.steps:
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg)
            idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
            terms = supervised_loss(model, body, _batch(data, idx, cfg, gen), cfg)
            opt.zero_grad(set_to_none=True)
            terms.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                entry = {"step": step, "lr": _lr(step - 1, cfg), **terms.items(),
                         "elapsed_s": time.perf_counter() - t0}
                if val is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                    entry.update({f"val_{k}": v for k, v in
                                  evaluate_set(model, body, val).items()})
                history.append(entry)
                bar.update(cfg.log_every if step % cfg.log_every == 0 else step - bar.n,
                           loss=entry["total"], **{k: entry[k] for k in entry
                                                   if k.startswith("val_pa")})
            interrupted = stop_after is not None and step >= stop_after
            if step % cfg.eval_every == 0 or step == cfg.steps or interrupted:
                _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                              "step": step, "history": history, "config": asdict(cfg)}, last)
            if interrupted and step < cfg.steps:
                return {"config": asdict(cfg), "train_size": n, "steps": step,
                        "final": history[-1] if history else {}, "interrupted": True}
    (run / "log.json").write_text(jsonio.dumps({"config": asdict(cfg), "history": history},
                                               indent=1))
    _plot(history, run / "loss.png")
    final = history[-1] if history else {}
    report = {"config": asdict(cfg), "train_set": str(train_path), "val_set": str(val_path),
              "train_size": n, "steps": step, "final": final}
    if out is not None:
        model.eval()
        save_checkpoint(out, model, meta={
            "source": "hmr-ros train", "domain": data.domain, "train_size": n,
            "steps": step, "seed": cfg.seed, "model_version": 0,
            "val_pa_mpjpe_mm": float(final.get("val_pa_mpjpe", float("nan"))),
        })
        report["checkpoint"] = str(out)
    return report


def _atomic_save(obj: dict, path: Path) -> None:
    # Tensors, ints, floats, str, lists and dicts only: resume reads it with weights_only=True.
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _plot(history: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed; no loss plot (pip install matplotlib)")
        return
    if not history:
        return
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("total", "pose", "joints3d", "keypoints2d"):
        axes[0].plot(steps, [h[key] for h in history], label=key)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training losses")
    axes[0].legend()
    val = [h for h in history if "val_pa_mpjpe" in h]
    if val:
        axes[1].plot([h["step"] for h in val], [h["val_mpjpe"] for h in val], "o-",
                     label="MPJPE")
        axes[1].plot([h["step"] for h in val], [h["val_pa_mpjpe"] for h in val], "o-",
                     label="PA-MPJPE")
        axes[1].set_ylabel("mm (LSP-14, held-out source crops)")
        axes[1].set_xlabel("step")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def config_with(cfg: TrainConfig, **overrides: object) -> TrainConfig:
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
