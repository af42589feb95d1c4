"""`hmr-ros bench tto`: DualNet's claim on our world. Does a start point
meta-trained to be adapted (`hmr-ros train-meta`) improve with more test-time steps where a
normally trained one first improves and then degrades, and does it adapt faster online?

Two parts, every stream through the one stream runner (`bench.adapt._job`):

- per-frame test-time optimisation (EFT's and DualNet's protocol): for each frame, back to the
  start weights, k Adam steps of the single-frame loss L_F on that frame alone
  (`adapt.reset_each_frame`, method `framewise`, lock-step protocol `after`), then predict
  it; k = 0 is the start itself. Scored on the first `tto_seconds` of each stream.
- online adaptation (B1 = framewise, BOA 2nd) from each start on the whole stream, protocol
  `before`; the error over the first 1, 3 and 10 seconds says which start adapts faster.

A variant is a start and a test-time loss: `normal` (the bundled regressor, L_F),
`normal_aux` (the bundled regressor, L_F + the DualNet auxiliary network's pseudo-SMPL term),
`dualnet_2d` (the DualNet start, L_F) and `dualnet` (the DualNet start with the pseudo-SMPL
term: the paper's test-time loss, the loss its inner step was trained with). The 2x2 separates
what the start brings from what the auxiliary term brings. `control` (L_F) starts from the
normal start trained as long on the same batches without the inner step
(`--control-weights`): what meta-training adds beyond more training.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import PipelineConfig
from ..jsonio import write_json
from ..provenance import footnote, provenance
from .adapt import _job, stream_frames
from .table import markdown_table


@dataclass(frozen=True)
class Variant:
    """A start point and a test-time loss."""

    name: str
    start: str  # normal (the bundled regressor, or --weights) | dualnet | control
    aux_term: bool  # L_F + dualnet_weight * the pseudo-SMPL term


VARIANTS = {v.name: v for v in (Variant("normal", "normal", False),
                                Variant("normal_aux", "normal", True),
                                Variant("dualnet_2d", "dualnet", False),
                                Variant("dualnet", "dualnet", True),
                                # The normal start trained as long on the same batches with
                                # no inner step (train-meta --inner-lr 0): what the DualNet
                                # start owes to meta-training rather than to more training.
                                Variant("control", "control", False))}
WINDOWS_S = (1.0, 3.0, 10.0)
# Per-frame optimisation fine-tunes the whole network (EFT, DualNet) with Adam; 1e-4 by the
# rule of docs/adaptation_tuning.md ("DualNet"): the lowest PA-MPJPE averaged over k = 5 and
# 14 on the tuning streams (pw3d_like seeds 100, 101) from the normal start, among scope all
# at 1e-5 / 1e-4 / 3e-4 and layer4_head at 1e-5 / 1e-4 / 1e-3.
TTO_SCOPE = "all"
TTO_LR = 1e-4


def variant_config(cfg: PipelineConfig, v: Variant, dualnet_weights: str, dualnet_aux: str,
                   dualnet_weight: float, control_weights: str = "") -> PipelineConfig:
    """`cfg` with the variant's start (inference.weights) and loss (adapt.dualnet.*)."""
    weights = {"normal": cfg.inference.weights, "dualnet": dualnet_weights,
               "control": control_weights}[v.start]
    dualnet = dataclasses.replace(cfg.adapt.dualnet, aux=dualnet_aux,
                                  weight=dualnet_weight if v.aux_term else 0.0)
    adapt = dataclasses.replace(cfg.adapt, dualnet=dualnet)
    return dataclasses.replace(cfg, inference=dataclasses.replace(cfg.inference,
                                                                  weights=weights), adapt=adapt)


def tto_config(cfg: PipelineConfig, k: int, scope: str = TTO_SCOPE, lr: float = TTO_LR
               ) -> tuple[str, PipelineConfig]:
    """The method and config of k per-frame Adam steps of `lr` on the weights of `scope`
    (k = 0: the start itself). The guard's drift check is off: it compares the student with
    its mean teacher, and per-frame optimisation has none (the teacher restarts at every
    frame). A step it rejected would repeat identically (same weights, optimiser and frame)
    and be rejected k times, leaving that frame at k = 0. The finiteness and loss checks
    stay."""
    adapt = dataclasses.replace(cfg.adapt, schedule="every_frame", steps_per_frame=max(k, 1),
                                reset_each_frame=True, batch_frames=1, scope=scope,
                                outer_lr=lr, guard=dataclasses.replace(cfg.adapt.guard,
                                                                       disagreement=1e3))
    return ("framewise" if k > 0 else "none"), dataclasses.replace(cfg, adapt=adapt)


def window_means(row: dict, fps: float, windows: tuple[float, ...]) -> dict[str, dict]:
    """Mean MPJPE and PA-MPJPE over the scored frames of the first w seconds, per window."""
    pf = row["per_frame"]
    index = np.asarray(pf["index"])
    out = {}
    for w in windows:
        keep = index < round(w * fps)
        out[f"{w:g}s"] = {m: float(np.mean(np.asarray(pf[m])[keep])) if keep.any()
                          else float("nan") for m in ("mpjpe", "pa_mpjpe")}
    return out


def _mean(values: list[float]) -> float:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def run(domains: list[str], seeds: list[int], ks: list[int], variants: list[str],
        online_methods: list[str], online_variants: list[str], cfg: PipelineConfig,
        out_dir: Path, dualnet_weights: str, dualnet_aux: str, dualnet_weight: float,
        tto_seconds: float = 2.0, duration: float = 10.0, workers: int = 2,
        cache: Path | None = Path("runs/cache"), tag: str = "", tto_scope: str = TTO_SCOPE,
        tto_lr: float = TTO_LR, control_weights: str = "") -> dict:
    """Run both parts on every domain and seed (see the module docstring), print a line per
    run and the tables, and write `tto[_TAG].{json,md,png}` under `out_dir`."""
    from ..world.domain import load_domain

    online_variants = online_variants if online_methods else []
    unknown = sorted((set(variants) | set(online_variants)) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    if not Path(dualnet_weights).exists() and any(
            VARIANTS[v].start == "dualnet" for v in variants + online_variants):
        raise SystemExit(f"no DualNet start at {dualnet_weights} (hmr-ros train-meta --out)")
    if not (control_weights and Path(control_weights).exists()) and any(
            VARIANTS[v].start == "control" for v in variants + online_variants):
        raise SystemExit(f"the control variant needs --control-weights (got "
                         f"{control_weights!r}): hmr-ros train-meta --inner-lr 0")
    t0 = time.perf_counter()
    fps = {d: load_domain(d).fps for d in domains}
    for d in domains:  # render (and cache) every stream once, up front
        for s in seeds:
            stream_frames(d, s, duration, cache)
    cache_s = str(cache) if cache else None
    jobs, labels = [], []
    for name in variants:
        vcfg = variant_config(cfg, VARIANTS[name], dualnet_weights, dualnet_aux, dualnet_weight,
                              control_weights)
        for k in ks:
            method, kcfg = tto_config(vcfg, k, tto_scope, tto_lr)
            for d in domains:
                limit = int(round(tto_seconds * fps[d]))
                for s in seeds:
                    jobs.append((d, s, duration, method, kcfg, "after", cache_s, limit))
                    labels.append({"part": "tto", "variant": name, "k": k})
    for name in online_variants:
        vcfg = variant_config(cfg, VARIANTS[name], dualnet_weights, dualnet_aux, dualnet_weight,
                              control_weights)
        for method in online_methods:
            for d in domains:
                for s in seeds:
                    jobs.append((d, s, duration, method, vcfg, "before", cache_s))
                    labels.append({"part": "online", "variant": name, "method": method})
    print(f"bench tto: {len(jobs)} runs ({len(domains)} domains x {len(seeds)} seeds; "
          f"per-frame k in {ks} for {variants} on the first {tto_seconds:g} s; online "
          f"{online_methods} for {online_variants} on {duration:g} s)", flush=True)
    rows: list[dict] = []

    def done(label: dict, row: dict) -> None:
        row = {**label, **{k: v for k, v in row.items() if k != "per_frame_pa_mpjpe"}}
        if row["part"] == "online":
            row["windows"] = window_means(row, fps[row["domain"]], WINDOWS_S)
        rows.append(row)
        what = f"k={row['k']}" if row["part"] == "tto" else row["method"]
        print(f"  {row['domain']} seed {row['seed']} {row['variant']} {what}: PA-MPJPE "
              f"{row['pa_mpjpe']:.1f} MPJPE {row['mpjpe']:.1f} ({len(rows)}/{len(jobs)})",
              flush=True)

    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            # imap keeps the jobs' order, so each result meets its label.
            for label, row in zip(labels, pool.imap(_job, jobs)):
                done(label, row)
    else:
        for label, job in zip(labels, jobs):
            done(label, _job(job))
    payload = {"benchmark": "tto", "domains": domains, "seeds": seeds, "ks": ks,
               "tto_seconds": tto_seconds, "tto_scope": tto_scope, "tto_lr": tto_lr,
               "duration_s": duration, "windows_s": WINDOWS_S,
               "dualnet_weights": dualnet_weights, "dualnet_aux": dualnet_aux,
               "control_weights": control_weights,
               "dualnet_weight": dualnet_weight, "config": dataclasses.asdict(cfg.adapt),
               "weights": cfg.inference.weights or "bundled",
               "tto": _tto_table(rows, domains, variants, ks),
               "online": _online_table(rows, domains, online_variants, online_methods),
               "runs": rows, **provenance()}
    payload["elapsed_s"] = time.perf_counter() - t0
    _write(payload, out_dir, tag)
    return payload


def join(paths: list[Path], out_dir: Path, tag: str = "") -> dict:
    """One result from several `bench tto` runs of the same protocol (e.g. the normal start's
    rows run while the DualNet start was training): their runs together, the tables rebuilt,
    the first run's settings and provenance. Runs of different settings are refused."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    first = parts[0]
    keys = ("domains", "seeds", "tto_seconds", "tto_scope", "tto_lr", "duration_s", "config")
    for p, part in zip(paths[1:], parts[1:]):
        diff = [k for k in keys if part[k] != first[k]]
        if diff:
            raise SystemExit(f"{p} differs from {paths[0]} in {diff}: not one benchmark")
    # The DualNet start and term weight the rows used: those of the parts whose variants use
    # them (a normal-start part records defaults it never applied).
    uses = [p for p in parts if any(VARIANTS[r["variant"]].start == "dualnet"
                                    or VARIANTS[r["variant"]].aux_term for r in p["runs"])]
    if len({(p["dualnet_weights"], p["dualnet_weight"]) for p in uses}) > 1:
        raise SystemExit("the parts used different DualNet starts or dualnet_weight values")
    used = (uses or parts)[0]
    rows = [r for part in parts for r in part["runs"]]
    ks = sorted({int(k) for part in parts for k in part["ks"]})
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["part"] == "tto"))
    online = list(dict.fromkeys(r["variant"] for r in rows if r["part"] == "online"))
    methods = list(dict.fromkeys(r["method"] for r in rows if r["part"] == "online"))
    payload = {**first, "ks": ks, "joined": [str(p) for p in paths],
               "dualnet_weights": used["dualnet_weights"], "dualnet_aux": used["dualnet_aux"],
               "dualnet_weight": used["dualnet_weight"],
               "control_weights": next((p.get("control_weights", "") for p in parts
                                        if p.get("control_weights")), ""),
               "tto": _tto_table(rows, first["domains"], variants, ks),
               "online": _online_table(rows, first["domains"], online, methods),
               "runs": rows, "elapsed_s": sum(p["elapsed_s"] for p in parts)}
    _write(payload, out_dir, tag)
    return payload


def _write(payload: dict, out_dir: Path, tag: str) -> None:
    suffix = f"_{tag}" if tag else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / f"tto{suffix}.json", payload)
    text = format_tables(payload)
    (out_dir / f"tto{suffix}.md").write_text(text + "\n")
    print(text)
    _plot(payload, out_dir / f"tto{suffix}.png")


def _tto_table(rows, domains, variants, ks) -> dict:
    """{domain: {variant: {k: {metric: mean over seeds, "per_seed": [...]}}}}"""
    out: dict = {}
    for d in domains:
        out[d] = {}
        for v in variants:
            out[d][v] = {}
            for k in ks:
                sel = sorted((r for r in rows if r["part"] == "tto" and r["domain"] == d
                              and r["variant"] == v and r["k"] == k), key=lambda r: r["seed"])
                out[d][v][str(k)] = {m: _mean([r[m] for r in sel]) for m in
                                     ("mpjpe", "pa_mpjpe")}
                out[d][v][str(k)]["per_seed_pa_mpjpe"] = [r["pa_mpjpe"] for r in sel]
                out[d][v][str(k)]["rollbacks"] = int(sum(r["rollbacks"] for r in sel))
    return out


def _online_table(rows, domains, variants, methods) -> dict:
    """{domain: {variant: {method: {window: {metric: mean over seeds}}}}}"""
    out: dict = {}
    for d in domains:
        out[d] = {}
        for v in variants:
            out[d][v] = {}
            for m in methods:
                sel = [r for r in rows if r["part"] == "online" and r["domain"] == d
                       and r["variant"] == v and r["method"] == m]
                out[d][v][m] = {f"{w:g}s": {x: _mean([r["windows"][f"{w:g}s"][x] for r in sel])
                                             for x in ("mpjpe", "pa_mpjpe")}
                                for w in WINDOWS_S}
                out[d][v][m]["rollbacks"] = int(sum(r["rollbacks"] for r in sel))
    return out


def format_tables(payload: dict) -> str:
    ks = payload["ks"]
    lines = ["# Per-frame test-time optimisation: PA-MPJPE / MPJPE (mm) after k steps",
             "",
             f"Seeds {payload['seeds']}, first {payload['tto_seconds']:g} s of each stream, "
             f"protocol `after` with a reset to the start before every frame; "
             f"scope {payload['tto_scope']}, Adam lr {payload['tto_lr']:g}; dualnet_weight "
             f"{payload['dualnet_weight']:g} where the variant has the auxiliary term.", ""]
    for d, table in payload["tto"].items():
        lines += [f"## {d}", ""]
        lines += markdown_table(
            ["variant"] + [f"k={k}" for k in ks],
            [[v] + [f"{by_k[str(k)]['pa_mpjpe']:.1f} / {by_k[str(k)]['mpjpe']:.1f}" for k in ks]
             for v, by_k in table.items()])
        lines.append("")
    if any(payload["online"].get(d) for d in payload["online"]):
        wins = [f"{w:g}s" for w in payload["windows_s"]]
        lines += ["# Online adaptation from each start: PA-MPJPE / MPJPE (mm) over the first "
                  "1, 3 and 10 s", "",
                  f"Protocol `before`, {payload['duration_s']:g} s streams, "
                  f"adapt.scope {payload['config']['scope']}, outer lr "
                  f"{payload['config']['outer_lr']:g}.", ""]
        for d, table in payload["online"].items():
            lines += [f"## {d}", ""]
            lines += markdown_table(
                ["start, method"] + wins + ["rollbacks"],
                [[f"{v}, {m}"] + [f"{cell[w]['pa_mpjpe']:.1f} / {cell[w]['mpjpe']:.1f}"
                                  for w in wins] + [cell["rollbacks"]]
                 for v, by_m in table.items() for m, cell in by_m.items()])
            lines.append("")
    lines.append(footnote(payload.get("environment")))
    return "\n".join(lines)


def _plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(payload["tto"])
    ks = payload["ks"]
    fig, axes = plt.subplots(2, len(domains), figsize=(5 * len(domains), 7), squeeze=False)
    for j, d in enumerate(domains):
        for i, metric in enumerate(("pa_mpjpe", "mpjpe")):
            ax = axes[i][j]
            for v, by_k in payload["tto"][d].items():
                ax.plot(ks, [by_k[str(k)][metric] for k in ks], marker="o", label=v)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.set_xlabel("test-time steps per frame (k)")
            ax.set_ylabel(f"{'PA-MPJPE' if metric == 'pa_mpjpe' else 'MPJPE'} (mm)")
            ax.set_title(d)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Per-frame test-time optimisation from the normal and the DualNet start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args, cfg: PipelineConfig) -> dict:
    """`hmr-ros bench tto` with the parsed arguments and the configuration they give."""
    from ..model.weights import DUALNET_WEIGHTS
    from ..resources import resource_dir

    if args.join:
        return join([Path(p) for p in args.join], Path(args.out_dir), args.tag)
    weights = args.dualnet_weights or str(resource_dir("weights") / DUALNET_WEIGHTS)
    aux = args.dualnet_aux or weights + ".aux.pt"  # train-meta writes it beside the start
    return run(args.domains, args.seeds, args.ks, args.variants, args.online_methods,
               args.online_variants, cfg, Path(args.out_dir), weights, aux,
               args.dualnet_weight, tto_seconds=args.tto_seconds, duration=args.duration,
               workers=args.workers, cache=Path(args.cache) if args.cache else None,
               tag=args.tag, tto_scope=args.tto_scope or TTO_SCOPE,
               tto_lr=args.tto_lr if args.tto_lr is not None else TTO_LR,
               control_weights=args.control_weights)
