"""DualNet meta-training: a source model trained to be a good start for test-time
optimisation, with an auxiliary network that supplies pseudo-SMPL targets.

Two regressors of the same architecture: the main network f_w and the auxiliary f_u. Per
training batch:

- inner step (the test-time optimisation, MAML-style):
  w' = w - inner_lr * grad_w L_test(w), where L_test is what can be computed at test time:
  2D keypoint reprojection and the pose / shape priors (as in `adapt/losses.py`), plus a
  pseudo-SMPL term that pulls f_w's vertices, joints, rotations and betas towards f_u's
  prediction for the same crops (each with its own weight);
- outer step: the supervised loss of `train.supervised_loss` evaluated at w' updates w with
  Adam, through the inner step (second order, `create_graph=True`) or with the first-order
  approximation dL/dw' (the authors' choice); f_u is trained by its own supervised loss
  (Adam, its own learning rate), and in second order, when `aux_detach` is off, also by the
  outer loss through its targets.

Parameters are handled functionally (`torch.func.functional_call` on a params dict), as
`adapt.methods.Adapter.bilevel_gradient` does, so the inner step never touches the module's
own tensors. The inner step is batched (one step on the batch's mean test-time loss), as in
the authors' code.

`train_meta` runs the loop like `train.train`: deterministic by seed, resumable from
`<run>/last.pt`, progress on stderr, a JSON log and report, the main network's checkpoint.
The settings are in `train_meta_config.py`, the meta-gradient and the trainer in
`meta_gradient.py`; their names are importable from here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from . import jsonio
from .body import BodyModel
from .meta_gradient import (
    MetaGradient,
    MetaTrainer,
    Params,
    aux_targets,
    inner_loss,
    inner_step,
    meta_gradient,
    meta_objective,
    params_of,
)
from .model import HMR, ModelConfig, get_preset, load_checkpoint, save_checkpoint
from .model.checkpoint import read_checkpoint_file
from .progress import Progress
from .train import TrainSet, _atomic_save, _batch, _lr, evaluate_set
from .train_meta_config import MetaTrainConfig, config_with, parse_overrides

__all__ = [
    "MetaGradient",
    "MetaTrainConfig",
    "MetaTrainer",
    "Params",
    "aux_targets",
    "config_with",
    "inner_loss",
    "inner_step",
    "meta_gradient",
    "meta_objective",
    "params_of",
    "parse_overrides",
    "train_meta",
    "with_keypoints",
]

log = logging.getLogger("hmr_ros")


def with_keypoints(batch: dict[str, Tensor], cfg: MetaTrainConfig,
                   gen: torch.Generator | None) -> dict[str, Tensor]:
    """The batch with its test-time 2D targets "keypoints2d" (B, 46, 2): the true 2D points,
    with Gaussian noise of `cfg.keypoint_noise` (crop units) as a detector would add."""
    kp = batch["points2d"]
    if cfg.keypoint_noise > 0 and gen is not None:
        kp = kp + cfg.keypoint_noise * torch.randn(kp.shape, generator=gen)
    return {**batch, "keypoints2d": kp}


def _networks(cfg: MetaTrainConfig, data: TrainSet, model_config: ModelConfig | None
              ) -> tuple[HMR, HMR]:
    """f_w from `cfg.init`, f_u from `cfg.aux_init` (else `cfg.init`); a network without a
    checkpoint is fresh, drawn from the global generator (main first: deterministic by
    seed)."""
    arch = model_config or get_preset(cfg.preset)
    model = load_checkpoint(cfg.init).model if cfg.init else HMR(
        arch, mean_params=data.mean_params())
    # A copy of the main start makes the pseudo-SMPL targets the main network's own
    # prediction (no gradient at first); `aux_init` gives the auxiliary network its own.
    aux_start = cfg.aux_init or cfg.init
    aux = load_checkpoint(aux_start).model if aux_start else HMR(
        arch, mean_params=data.mean_params())
    return model.train(), aux.train()


def train_meta(cfg: MetaTrainConfig, train_path: str | Path, run_dir: str | Path,
               val_path: str | Path | None = None, out: str | Path | None = None,
               resume: bool = False, progress: bool = True, stop_after: int | None = None,
               model_config: ModelConfig | None = None, out_fp16: bool = False) -> dict:
    """Meta-train and write `<run_dir>/last.pt` (resumable), `log.json`, `report.json` and the
    main network's checkpoint `out` (the auxiliary one beside it as `<out>.aux.pt`).

    `stop_after` ends this invocation at that step after saving `last.pt`; a later call with
    `resume=True` continues exactly where it stopped. `out_fp16` stores the two final
    checkpoints' weights in float16 (half the size: the shipped pair fits weights/'s budget);
    `last.pt` keeps float32."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = TrainSet.load(train_path)
    val = TrainSet.load(val_path) if val_path else None
    body = BodyModel()
    model, aux = _networks(cfg, data, model_config)
    trainer = MetaTrainer(model, aux, body, cfg)
    outer_cfg = cfg.outer()
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    step = 0
    last = run / "last.pt"
    if resume and last.exists():
        state = read_checkpoint_file(last)  # weights_only: nothing in a run folder runs code
        if state["config"] != asdict(cfg):
            log.warning("resuming with a different config than the run was started with")
        trainer.load(state)
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], state["history"]
        print(f"resumed {run} at step {step}")
    t0 = time.perf_counter()
    n = len(data)
    with Progress(cfg.steps, "train-meta", enabled=progress) as bar:
        bar.n = step
        while step < cfg.steps:
            trainer.set_lr(_lr(step, outer_cfg) / cfg.lr)
            idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
            batch = with_keypoints(_batch(data, idx, outer_cfg, gen), cfg, gen)
            terms = trainer.step(batch)
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                entry = {"step": step, "lr": _lr(step - 1, outer_cfg), **terms,
                         "elapsed_s": time.perf_counter() - t0}
                if val is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                    entry.update({f"val_{k}": v for k, v in
                                  evaluate_set(model, body, val).items()})
                    entry.update({f"val_aux_{k}": v for k, v in
                                  evaluate_set(aux, body, val).items()})
                history.append(entry)
                bar.update(cfg.log_every if step % cfg.log_every == 0 else step - bar.n,
                           outer=entry["outer"], **{k: entry[k] for k in entry
                                                    if k == "val_pa_mpjpe"})
            interrupted = stop_after is not None and step >= stop_after
            if step % cfg.eval_every == 0 or step == cfg.steps or interrupted:
                _atomic_save({**trainer.state(), "generator": gen.get_state(),
                              "torch_rng": torch.get_rng_state(), "step": step,
                              "history": history, "config": asdict(cfg)}, last)
            if interrupted and step < cfg.steps:
                return {"config": asdict(cfg), "train_size": n, "steps": step,
                        "final": history[-1] if history else {}, "interrupted": True}
    final = history[-1] if history else {}
    report = {"config": asdict(cfg), "train_set": str(train_path), "val_set": str(val_path),
              "train_size": n, "steps": step, "final": final,
              "seconds": time.perf_counter() - t0}
    (run / "log.json").write_text(jsonio.dumps({"config": asdict(cfg), "history": history},
                                               indent=1))
    if out is not None:
        meta = {"source": "hmr-ros train-meta (DualNet)", "domain": data.domain,
                "train_size": n, "steps": step, "seed": cfg.seed, "model_version": 0,
                "val_pa_mpjpe_mm": float(final.get("val_pa_mpjpe", float("nan")))}
        model.eval()
        aux.eval()
        dtype = torch.float16 if out_fp16 else None
        save_checkpoint(out, model, meta=meta, dtype=dtype)
        aux_path = Path(str(out) + ".aux.pt")
        save_checkpoint(aux_path, aux, meta={**meta, "role": "dualnet auxiliary"}, dtype=dtype)
        report["checkpoint"], report["aux_checkpoint"] = str(out), str(aux_path)
    (run / "report.json").write_text(jsonio.dumps(report, indent=1))
    return report
