"""The `hmr-ros` command's small subcommands."""

from __future__ import annotations

import json

from hmr_ros.cli import main


def test_info_lists_presets_and_body(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "1564 vertices" in out and "hmr_small" in out and "hmr_r50: 26.98 M" in out


def test_bench_model_writes_json(tmp_path, capsys):
    out = tmp_path / "model.json"
    assert main(["bench", "model", "--presets", "hmr_tiny", "--repeats", "2",
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    (row,) = data["presets"]
    assert row["preset"] == "hmr_tiny" and row["params"] == 382829
    assert row["forward"]["n"] == 2 and row["forward"]["p50_ms"] > 0
    assert data["body_model"]["vertices"] == 1564
    assert "machine" in data and data["machine"]["cpu_count"] >= 1
    _assert_environment(data["environment"])


def _assert_environment(env: dict) -> None:
    import cv2
    import numpy
    import torch

    assert env["torch"] == torch.__version__ and env["numpy"] == numpy.__version__
    assert env["smplx"] == "0.1.28"
    cv = env["opencv"]
    assert cv["version"] == cv2.__version__ and len(cv["build_sha256"]) == 16
    assert [d.split("==")[0] for d in cv["distributions"]] == ["opencv-contrib-python"]


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_bench_render_writes_fps(tmp_path):
    out = tmp_path / "render.json"
    assert main(["bench", "render", "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    sizes = {(r["width"], r["height"]) for r in data["results"]}
    assert sizes == {(256, 256), (640, 480)}
    assert all(r["fps"] > 0 for r in data["results"])


def test_bench_adapt_runs_the_ablation_and_writes_tables(tmp_path):
    import torch

    from hmr_ros.model import HMR, ModelConfig, save_checkpoint

    torch.manual_seed(0)
    micro = ModelConfig(name="micro", block="basic", layers=(1, 1, 1, 1), width=8,
                        norm="group", gn_groups=4, head_hidden=32, n_iter=2, input_size=32,
                        dropout=0.0)
    save_checkpoint(tmp_path / "m.pt", HMR(micro))
    assert main(["bench", "adapt", "--domains", "robot_cam", "--seeds", "3", "--duration",
                 "0.3", "--methods", "none", "framewise", "--workers", "1",
                 "--out-dir", str(tmp_path), "--tag", "t", "--weights", str(tmp_path / "m.pt"),
                 "--cache", str(tmp_path / "cache"),
                 "--set", "adapt.min_keypoints=4"]) == 0
    data = json.loads((tmp_path / "adapt_t.json").read_text())
    res = data["results"]["robot_cam"]
    assert res["none"]["steps"] == 0 and res["framewise"]["steps"] == 9
    assert data["latency"]["with_worker"]["frames"] == 9
    table = (tmp_path / "adapt_t.md").read_text()
    assert "| frozen |" in table and "| B1: L_F |" in table and "ratio" in table
    _assert_environment(data["environment"])
    cv = data["environment"]["opencv"]
    assert f"OpenCV {cv['version']} ({cv['distributions'][0]}; build {cv['build_sha256']})" \
        in table
    assert res["framewise"]["per_seed"]["pa_mpjpe"] == [res["framewise"]["pa_mpjpe"]]


def test_ablation_table_compares_with_frozen_only_when_it_ran():
    from hmr_ros.bench.adapt import format_table

    row = {"mpjpe": 200.0, "pa_mpjpe": 75.0, "pve": 190.0, "accel": 40.0,
           "steps_per_second": 7.0, "rollbacks": 0}
    payload = {"seeds": [1], "duration_s": 2.0, "protocol": "before",
               "results": {"pw3d_like": {"framewise": row}}}
    assert "| B1: L_F | 200.0 | 75.0 | n/a |" in format_table(payload)
    payload["results"]["pw3d_like"] = {"none": dict(row, pa_mpjpe=100.0), "framewise": row}
    table = format_table(payload)
    assert "| frozen | 200.0 | 100.0 | +0.0% |" in table
    assert "| B1: L_F | 200.0 | 75.0 | -25.0% |" in table
