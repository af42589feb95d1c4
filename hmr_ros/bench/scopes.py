"""`hmr-ros bench scopes`: the adaptation-scope ablation in one table and plot.

It joins two kinds of `bench adapt` output per configuration (scope, outer rate, method):
the lock-step ablation (`adapt_<tag>.json`: deterministic errors and lock-step steps/s) and
the real-time run (`adapt_background_<tag>.json`: errors when each frame is predicted with the
weights published by then, the worker's steps/s beside 30 fps inference, the inference p95
ratio with/without it). Writes `adapt_scope.json`, `.md` and `.png` (PA-MPJPE against
background steps/s, one point per configuration and domain).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..jsonio import write_json
from ..provenance import footnote, provenance
from .table import markdown_table


def _key(cfg: dict, method: str) -> tuple[str, float, str]:
    return cfg["scope"], float(cfg["outer_lr"]), method


def combine(lockstep: list[Path], background: list[Path]) -> list[dict]:
    """One row per (scope, outer lr, method) found in the files, with what each file gives."""
    rows: dict[tuple[str, float, str], dict] = {}
    for path in lockstep:
        data = json.loads(Path(path).read_text())
        for domain, methods in data["results"].items():
            for method, res in methods.items():
                row = rows.setdefault(_key(data["config"], method), {})
                row.setdefault("lockstep", {})[domain] = {
                    k: res[k] for k in ("pa_mpjpe", "mpjpe", "pve", "accel", "steps_per_second",
                                        "rollbacks")}
                row["lockstep_seeds"] = data["seeds"]
    for path in background:
        data = json.loads(Path(path).read_text())
        row = rows.setdefault(_key(data["config"], data["method"]), {})
        row["realtime"] = data["median"]["realtime"]
        row["background_steps_per_second"] = data["median"]["background_steps_per_second"]
        row["p95_ratio"] = data["median"]["p95_ratio"]
        row["realtime_seeds"] = data["seeds"]
    out = []
    for (scope, lr, method), row in sorted(rows.items()):
        out.append({"scope": scope, "outer_lr": lr, "method": method, **row})
    return out


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def format_table(rows: list[dict], domains: list[str]) -> str:
    lines = ["# Adaptation scope ablation (`hmr-ros bench scopes`)", "",
             "Lock-step: protocol `before`, one step per frame (deterministic). Real time: the "
             "stream paced at 30 fps, adaptation in the background, each frame predicted with "
             "the weights published by then (medians/means over the streams; timing-dependent). "
             "PA-MPJPE and MPJPE in mm.", ""]
    header = ["scope", "outer lr", "method"]
    for d in domains:
        header += [f"{d} lock-step PA-MPJPE / MPJPE", f"{d} real-time PA-MPJPE / MPJPE"]
    header += ["lock-step steps/s", "background steps/s", "inference p95 ratio", "rollbacks"]
    body = []
    for r in rows:
        cells = [r["scope"], f"{r['outer_lr']:g}", r["method"]]
        for d in domains:
            ls = r.get("lockstep", {}).get(d, {})
            rt = r.get("realtime", {}).get(d, {})
            cells.append(f"{_f(ls.get('pa_mpjpe'))} / {_f(ls.get('mpjpe'))}")
            cells.append(f"{_f(rt.get('pa_mpjpe'))} / {_f(rt.get('mpjpe'))}")
        ls_all = r.get("lockstep", {})
        sps = [v["steps_per_second"] for v in ls_all.values()]
        cells.append(_f(float(np.mean(sps)) if sps else None))
        cells.append(_f(r.get("background_steps_per_second"), 2))
        cells.append(_f(r.get("p95_ratio"), 2))
        cells.append(str(sum(v["rollbacks"] for v in ls_all.values())) if ls_all else "-")
        body.append(cells)
    return "\n".join(lines + markdown_table(header, body))


def _plot(rows: list[dict], domains: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = dict(zip(domains, "os^v"))
    for r in rows:
        if "background_steps_per_second" not in r:
            continue
        for d in domains:
            pa = r.get("realtime", {}).get(d, {}).get("pa_mpjpe")
            if pa is None:
                continue
            ax.scatter(r["background_steps_per_second"], pa, marker=markers[d])
            ax.annotate(f"{r['scope']}@{r['outer_lr']:g} ({d})",
                        (r["background_steps_per_second"], pa), fontsize=7,
                        xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("adaptation steps/s in the background (30 fps inference, 2 cores)")
    ax.set_ylabel("real-time PA-MPJPE (mm)")
    ax.set_title("Adaptation scope: accuracy against background speed")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(lockstep: list[Path], background: list[Path], out_dir: Path) -> dict:
    rows = combine(lockstep, background)
    domains = sorted({d for r in rows for d in list(r.get("lockstep", {}))
                      + list(r.get("realtime", {}))})
    payload = {"benchmark": "adapt_scope", "rows": rows, "domains": domains,
               "sources": {"lockstep": [str(p) for p in lockstep],
                           "background": [str(p) for p in background]}, **provenance()}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "adapt_scope.json", payload)
    table = format_table(rows, domains)
    note = footnote(payload.get("environment"))
    (out_dir / "adapt_scope.md").write_text(table + ("\n\n" + note if note else "") + "\n")
    _plot(rows, domains, out_dir / "adapt_scope.png")
    print(table)
    return payload
