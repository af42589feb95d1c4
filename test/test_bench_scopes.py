"""`hmr-ros bench scopes` joins lock-step and real-time results by configuration."""

from __future__ import annotations

import json

from hmr_ros.bench import scopes


def _lockstep(path, scope, lr, pa):
    res = {"pa_mpjpe": pa, "mpjpe": 2 * pa, "pve": 2 * pa, "accel": 9.0,
           "steps_per_second": 4.0, "rollbacks": 1}
    path.write_text(json.dumps({"config": {"scope": scope, "outer_lr": lr}, "seeds": [1000],
                                "results": {"pw3d_like": {"boa_2nd": res},
                                            "robot_cam": {"boa_2nd": res}}}))
    return path


def test_rows_join_by_scope_rate_and_method(tmp_path):
    a = _lockstep(tmp_path / "a.json", "all", 3e-5, 55.0)
    b = _lockstep(tmp_path / "b.json", "head", 3e-4, 50.0)
    bg = tmp_path / "bg.json"
    bg.write_text(json.dumps({
        "config": {"scope": "head", "outer_lr": 3e-4}, "method": "boa_2nd", "seeds": [1000],
        "median": {"background_steps_per_second": 9.5, "p95_ratio": 1.1,
                   "realtime": {"pw3d_like": {"pa_mpjpe": 61.0, "mpjpe": 120.0}}}}))
    payload = scopes.run([a, b], [bg], tmp_path / "out")
    rows = {(r["scope"], r["outer_lr"]): r for r in payload["rows"]}
    assert set(rows) == {("all", 3e-5), ("head", 3e-4)}
    assert rows[("head", 3e-4)]["background_steps_per_second"] == 9.5
    assert rows[("head", 3e-4)]["lockstep"]["robot_cam"]["pa_mpjpe"] == 50.0
    assert "realtime" not in rows[("all", 3e-5)]
    md = (tmp_path / "out" / "adapt_scope.md").read_text()
    assert "| head | 0.0003 | boa_2nd | 50.0 / 100.0 | 61.0 / 120.0 | 50.0 / 100.0 | - / - |" in md
    assert "| all | 3e-05 | boa_2nd | 55.0 / 110.0 | - / - |" in md
    assert (tmp_path / "out" / "adapt_scope.png").stat().st_size > 0
