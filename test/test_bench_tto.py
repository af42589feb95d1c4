"""`hmr-ros bench tto` (issue 17): per-frame test-time optimisation after k steps and online
adaptation windows, from a start and a test-time loss, through the stream runner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hmr_ros.bench import tto
from hmr_ros.config import PipelineConfig
from hmr_ros.model.weights import default_weights_path
from hmr_ros.world.domain import load_domain


def test_windows_average_the_first_seconds_of_scored_frames():
    row = {"per_frame": {"index": [0, 1, 2, 40, 95], "mpjpe": [10.0, 20.0, 30.0, 40.0, 50.0],
                         "pa_mpjpe": [1.0, 2.0, 3.0, 4.0, 5.0]}}
    w = tto.window_means(row, fps=30.0, windows=(0.1, 1.0, 2.0, 3.2))
    assert w["0.1s"]["mpjpe"] == pytest.approx(20.0)  # frames 0, 1, 2 (index < 3)
    assert w["1s"]["pa_mpjpe"] == pytest.approx(2.0)  # frame 40 is past 30
    assert w["2s"]["mpjpe"] == pytest.approx(25.0)
    assert w["3.2s"]["mpjpe"] == pytest.approx(30.0)  # frame 95 < 96
    empty = tto.window_means({"per_frame": {"index": [50], "mpjpe": [1.0],
                                            "pa_mpjpe": [1.0]}}, 30.0, (1.0,))
    assert np.isnan(empty["1s"]["mpjpe"])


def test_variants_and_k_map_onto_the_config():
    cfg = PipelineConfig()
    v = tto.variant_config(cfg, tto.VARIANTS["dualnet"], "d.pt", "d.pt.aux.pt", 2.0)
    assert v.inference.weights == "d.pt" and v.adapt.dualnet.weight == 2.0
    assert v.adapt.dualnet.aux == "d.pt.aux.pt"
    n = tto.variant_config(cfg, tto.VARIANTS["normal"], "d.pt", "a.pt", 2.0)
    assert n.inference.weights == cfg.inference.weights and n.adapt.dualnet.weight == 0.0
    assert tto.variant_config(cfg, tto.VARIANTS["normal_aux"], "d.pt", "a.pt",
                              2.0).adapt.dualnet.weight == 2.0
    method, k3 = tto.tto_config(cfg, 3, "head", 3e-4)
    assert method == "framewise" and k3.adapt.steps_per_frame == 3
    assert k3.adapt.scope == "head" and k3.adapt.outer_lr == 3e-4
    assert k3.adapt.reset_each_frame and k3.adapt.schedule == "every_frame"
    assert tto.tto_config(cfg, 0)[0] == "none"
    c = tto.variant_config(cfg, tto.VARIANTS["control"], "d.pt", "a.pt", 2.0, "c.pt")
    assert c.inference.weights == "c.pt" and c.adapt.dualnet.weight == 0.0


def test_a_small_run_scores_k_steps_and_online_windows(tmp_path):
    start = str(default_weights_path())  # stands in for a DualNet start and its auxiliary
    common = dict(tto_seconds=0.2, duration=0.4, workers=1, cache=tmp_path / "cache")
    # Two runs joined into one result, as the normal start's rows run beside training.
    tto.run(["h36m_like"], [5], [0, 2], ["normal"], ["framewise"], ["normal"],
            PipelineConfig(), tmp_path / "a", start, start, 1.0, **common)
    tto.run(["h36m_like"], [5], [0, 2], ["normal_aux"], [], ["normal"],
            PipelineConfig(), tmp_path / "b", start, start, 1.0, **common)
    out = tto.join([tmp_path / "a" / "tto.json", tmp_path / "b" / "tto.json"], tmp_path / "out")
    table = out["tto"]["h36m_like"]
    # k = 0 is the start itself whatever the loss; two steps per frame change the estimates,
    # and the auxiliary term changes the second step (its gradient is zero only at the start).
    assert table["normal"]["0"]["pa_mpjpe"] == table["normal_aux"]["0"]["pa_mpjpe"]
    assert table["normal"]["2"]["pa_mpjpe"] != table["normal"]["0"]["pa_mpjpe"]
    assert table["normal_aux"]["2"]["pa_mpjpe"] != table["normal"]["2"]["pa_mpjpe"]
    tto_runs = [r for r in out["runs"] if r["part"] == "tto" and r["k"] == 2]
    assert all(r["steps"] == 2 * len(r["per_frame"]["index"]) for r in tto_runs)
    fps = load_domain("h36m_like").fps
    assert all(len(r["per_frame"]["index"]) == round(0.2 * fps) for r in tto_runs)
    # The online run's first-second window is its whole 0.4 s stream.
    online = [r for r in out["runs"] if r["part"] == "online"]
    assert len(online) == 1 and online[0]["steps"] > 0
    assert online[0]["windows"]["1s"]["pa_mpjpe"] == pytest.approx(online[0]["pa_mpjpe"])
    saved = json.loads((tmp_path / "out" / "tto.json").read_text())
    assert saved["online"]["h36m_like"]["normal"]["framewise"]["1s"]["mpjpe"] == \
        pytest.approx(online[0]["mpjpe"])
    md = (tmp_path / "out" / "tto.md").read_text()
    assert "| normal_aux |" in md and "| normal, framewise |" in md
    assert (tmp_path / "out" / "tto.png").stat().st_size > 10_000


def test_results_of_other_settings_are_not_joined(tmp_path):
    base = {"domains": ["d"], "seeds": [1], "tto_seconds": 2.0, "tto_scope": "all",
            "tto_lr": 1e-4, "duration_s": 10.0,
            "dualnet_weight": 1.0, "config": {"outer_lr": 1e-4}, "runs": [], "ks": [0]}
    (tmp_path / "a.json").write_text(json.dumps(base))
    (tmp_path / "b.json").write_text(json.dumps({**base, "config": {"outer_lr": 1e-5}}))
    with pytest.raises(SystemExit, match="config"):
        tto.join([tmp_path / "a.json", tmp_path / "b.json"], tmp_path)


def test_a_missing_dualnet_start_is_named(tmp_path):
    with pytest.raises(SystemExit, match="no DualNet start"):
        tto.run(["h36m_like"], [5], [0], ["dualnet"], [], [], PipelineConfig(), tmp_path,
                str(tmp_path / "none.pt"), "", 1.0)
    with pytest.raises(SystemExit, match="control-weights"):
        tto.run(["h36m_like"], [5], [0], ["control"], [], [], PipelineConfig(), tmp_path,
                "", "", 1.0)
    with pytest.raises(SystemExit, match="unknown variants"):
        tto.run(["h36m_like"], [5], [0], ["eft"], [], [], PipelineConfig(), tmp_path,
                "", "", 1.0)
