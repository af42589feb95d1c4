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


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out
