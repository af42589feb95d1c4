"""Where the shared helpers live (issue 12): provenance and JSON writing are bottom-layer
modules that eval/, replay and demo use without importing bench/; the keypoint error is a
metric in eval/; backend errors import without the exporters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_IMPORTED = """
import importlib, json, sys
for mod in {mods!r}:
    importlib.import_module(mod)
print(json.dumps(sorted(m for m in sys.modules if m.startswith('hmr_ros'))))
"""


def _imported_by(*mods: str) -> set[str]:
    """The hmr_ros modules a fresh interpreter holds after importing `mods`."""
    res = subprocess.run([sys.executable, "-c", _IMPORTED.format(mods=list(mods))],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return set(json.loads(res.stdout.splitlines()[-1]))


def test_entry_points_below_bench_do_not_import_it():
    loaded = _imported_by("hmr_ros.eval.run", "hmr_ros.replay", "hmr_ros.demo",
                          "hmr_ros.provenance", "hmr_ros.jsonio")
    assert {"hmr_ros.provenance", "hmr_ros.jsonio", "hmr_ros.eval.keypoint_error"} <= loaded
    assert not {m for m in loaded if m.startswith("hmr_ros.bench")}, loaded


def test_lower_layers_stay_below():
    assert not {m for m in _imported_by("hmr_ros.detect") if m.startswith("hmr_ros.eval")}
    assert not {m for m in _imported_by("hmr_ros.provenance", "hmr_ros.jsonio")
                if m not in ("hmr_ros", "hmr_ros.provenance", "hmr_ros.jsonio",
                             "hmr_ros.envcheck")}
    assert "hmr_ros.model.export" not in _imported_by("hmr_ros.model.errors")


@pytest.mark.parametrize("gone", ["hmr_ros.bench.environment", "hmr_ros.detect.reprojection"])
def test_moved_modules_are_gone(gone):
    with pytest.raises(ModuleNotFoundError):
        __import__(gone)


def test_bench_timing_keeps_only_timing():
    from hmr_ros.bench import timing

    assert not hasattr(timing, "write_json") and not hasattr(timing, "machine_info")
    calls = []
    t = timing.time_calls(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and t.n == 4 and 0 <= t.min_ms <= t.p50_ms <= t.p95_ms


def test_provenance_blocks_and_footnote():
    from hmr_ros.provenance import footnote, machine_info, provenance

    prov = provenance()
    assert set(prov) == {"machine", "environment"}
    assert set(machine_info()) == set(prov["machine"]) >= {"cpu_count", "torch", "cuda"}
    env = prov["environment"]
    note = footnote(env)
    assert note.startswith("Environment: torch ") and env["opencv"]["build_sha256"] in note
    assert footnote(None) == "" and footnote({}) == ""


def test_write_json_is_strict_and_leaves_no_temporary(tmp_path):
    import numpy as np

    from hmr_ros.jsonio import write_json

    path = write_json(tmp_path / "sub" / "r.json",
                      {"x": np.float32(0.5), "y": [float("nan")], "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 0.5, "y": [None], "p": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})


def test_export_errors_keep_their_hierarchy():
    from hmr_ros.model.backends import BackendUnavailable as FromBackend
    from hmr_ros.model.errors import BackendUnavailable, ExportError, TensorRTUnavailable

    assert issubclass(TensorRTUnavailable, BackendUnavailable)
    assert FromBackend is BackendUnavailable  # the backends raise the same class
    assert issubclass(ExportError, RuntimeError)
    assert not issubclass(ExportError, BackendUnavailable)
