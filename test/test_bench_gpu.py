"""`hmr-ros bench gpu` on a machine without CUDA: every GPU part says why it could not run
and the run still writes its results; the parts' own code runs here on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from hmr_ros.bench import gpu
from hmr_ros.model.weights import load_regressor


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA report")
def test_without_cuda_every_gpu_part_says_why_and_the_run_writes_results(tmp_path):
    lines = []
    payload = gpu.run(out=tmp_path / "gpu.json", repeats=2, duration=0.5, log=lines.append)
    assert set(payload["could_not"]) == {"inference", "refit", "adapt"}
    assert all("CUDA" in why for why in payload["could_not"].values())
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["results"]["environment"]["cuda_available"] is False
    md = (tmp_path / "gpu.md").read_text()
    assert md.count("could not run") == 3 and any("could not" in x for x in lines)


def test_adaptation_parts_run_on_the_cpu():
    """The BOA steps/s row and the adapted weights a refit would get, on the CPU."""
    res = gpu._adapt(0.7, device="cpu", presets=("hmr_small",))
    assert [r["scope"] for r in res["rows"]] == sorted({r["scope"] for r in res["rows"]})
    assert all(r["steps"] > 0 and r["steps_per_second"] > 0 for r in res["rows"])
    model = load_regressor(None).model
    adapted = gpu._adapted_state(model, steps=2, device="cpu")
    assert adapted["steps"] >= 2
    source = model.state_dict()
    changed = [k for k, v in adapted["state"].items() if not torch.equal(v, source[k])]
    assert changed  # adapted weights differ from the source: a refit would change something
