"""The report of `hmr-ros bench adapt`: the markdown table (means with their bootstrap
intervals over seeds, the paired difference to the best method, per-seed values, the latency
beside the worker) and the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..provenance import footnote
from .spread import RESAMPLES, Interval, paired_difference
from .table import markdown_table

LABELS = {"none": "frozen", "framewise": "B1: L_F", "joint": "B3: L_F + L_T",
          "two_stage": "two-stage", "boa_1st": "BOA 1st order", "boa_2nd": "BOA 2nd order"}

SPREAD_METRICS = ("mpjpe", "pa_mpjpe")  # the columns shown with their interval


def _interval(r: dict, key: str) -> Interval | None:
    d = r.get("interval", {}).get(key)
    return Interval(**d) if d and d["n"] >= 2 else None


def _best(res: dict, key: str) -> str:
    finite = {m: r[key] for m, r in res.items() if np.isfinite(r.get(key, np.nan))}
    return min(finite, key=finite.get) if finite else ""


def _cell(res: dict, m: str, key: str) -> str:
    """Mean, its interval when there is one, and `~` when the interval overlaps the
    interval of the best method in this column."""
    iv, best = _interval(res[m], key), _best(res, key)
    if iv is None:
        return f"{res[m][key]:.1f}"
    best_iv = _interval(res[best], key) if best else None
    mark = " ~" if m != best and best_iv is not None and iv.overlaps(best_iv) else ""
    return f"{iv.mean:.1f} [{iv.low:.1f}, {iv.high:.1f}]{mark}"


def _vs_best(res: dict, m: str) -> str:
    """Paired bootstrap of the per-seed PA-MPJPE difference to the best method."""
    best = _best(res, "pa_mpjpe")
    if m == best:
        return "best"
    a, b = res[m], res[best]
    d = paired_difference(dict(zip(a["seeds"], a["per_seed"]["pa_mpjpe"])),
                          dict(zip(b["seeds"], b["per_seed"]["pa_mpjpe"])))
    return f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]"


def format_table(payload: dict) -> str:
    lines = []
    for d, res in payload["results"].items():
        base = res.get("none", {}).get("pa_mpjpe", float("nan"))
        spread = all(_interval(r, "pa_mpjpe") is not None for r in res.values())
        lines += [f"### {d} (seeds {payload['seeds']}, {payload['duration_s']:g} s streams, "
                  f"protocol `{payload['protocol']}`)", ""]
        rows = []
        for m, r in res.items():
            # Without a frozen run in the same table there is nothing to compare against.
            rel = (f"{100.0 * (r['pa_mpjpe'] / base - 1.0):+.1f}%" if np.isfinite(base)
                   else "n/a")
            rows.append([LABELS[m], _cell(res, m, "mpjpe"), _cell(res, m, "pa_mpjpe"), rel,
                         f"{r['pve']:.1f}", f"{r['accel']:.1f}", f"{r['steps_per_second']:.1f}",
                         r["rollbacks"]] + ([_vs_best(res, m)] if spread else []))
        lines += markdown_table(["method", "MPJPE", "PA-MPJPE", "vs frozen", "PVE", "ACCEL",
                                 "steps/s", "rollbacks"]
                                + (["PA-MPJPE vs best, paired"] if spread else []), rows)
        lines.append("")
        if spread:
            n = len(next(iter(res.values()))["seeds"])
            lines += [f"Means over {n} seeds; [low, high]: 95% percentile bootstrap interval "
                      f"of the mean over seeds ({RESAMPLES:,} resamples of the seeds, fixed "
                      "RNG seed). `~`: the interval overlaps the best method's in that column, "
                      "so the difference is within the spread over seeds. PA-MPJPE vs best: "
                      "mean per-seed difference to the best method and its bootstrap interval "
                      "over seeds (paired: the same streams).", "",
                      "PA-MPJPE per seed:", ""]
            lines += markdown_table(
                ["method"] + res[m]["seeds"],
                [[LABELS[m]] + [f"{v:.1f}" for v in r["per_seed"]["pa_mpjpe"]]
                 for m, r in res.items()])
            lines.append("")
    if "latency" in payload:
        lat = payload["latency"]
        lines += ["Inference latency on a stream paced at camera rate (ms):", ""]
        lines += markdown_table(
            ["", "p50", "p95"],
            [["without worker", f"{lat['without_worker']['p50_ms']:.1f}",
              f"{lat['without_worker']['p95_ms']:.1f}"],
             ["with worker adapting", f"{lat['with_worker']['p50_ms']:.1f}",
              f"{lat['with_worker']['p95_ms']:.1f}"],
             ["ratio", f"{lat['p50_ratio']:.2f}", f"{lat['p95_ratio']:.2f}"]])
        lines.append("")
        if "background_steps_per_second" in lat:  # absent from older results
            lines += [f"Adaptation beside it: {lat['background_steps_per_second']:.2f} "
                      f"accepted steps/s.", ""]
    note = footnote(payload.get("environment"))
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def plot_ablation(payload: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    domains = list(payload["results"])
    fig, axes = plt.subplots(1, len(domains) + 1, figsize=(5 * (len(domains) + 1), 4))
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, domains):
        res = payload["results"][d]
        names = [LABELS[m] for m in res]
        ax.bar(range(len(res)), [r["pa_mpjpe"] for r in res.values()], color="tab:blue")
        ax.set_xticks(range(len(res)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("PA-MPJPE (mm)")
        ax.set_title(d)
    ax = axes[-1]
    for m in payload["results"][domains[0]]:
        runs = [r for r in payload["runs"] if r["domain"] == domains[0] and r["method"] == m]
        if not runs:
            continue
        per = np.nanmean([np.asarray(r["per_frame_pa_mpjpe"]) for r in runs
                          if len(r["per_frame_pa_mpjpe"]) == len(runs[0]["per_frame_pa_mpjpe"])],
                         axis=0)
        k = max(1, len(per) // 20)
        smooth = np.convolve(per, np.ones(k) / k, mode="valid")
        ax.plot(smooth, label=LABELS[m])
    ax.set_xlabel("frame")
    ax.set_ylabel("PA-MPJPE (mm, running)")
    ax.set_title(f"{domains[0]}: error over the stream")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
