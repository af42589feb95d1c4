"""`hmr-ros bench adapt` gives the same bits for one configuration however it is scheduled:
alone in a fresh process, after another method in the same process, beside another method
in a pool of two workers, and while two processes keep both cores busy (a loaded machine
changes timing, never results: the lock-step protocol has no clock in it)."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys

from micro import MICRO

from hmr_ros.bench import adapt
from hmr_ros.config import PipelineConfig, replace_path
from hmr_ros.model import HMR, save_checkpoint

COMPARED = adapt.METRICS + ("detected", "steps", "rollbacks", "per_frame_pa_mpjpe")


def test_one_configuration_gives_bit_identical_metrics_however_scheduled(tmp_path):
    import torch

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", HMR(MICRO))
    cfg = replace_path(PipelineConfig(), "inference.weights", str(tmp_path / "m.pt"))
    cfg = replace_path(cfg, "adapt.min_keypoints", 4)
    cache = tmp_path / "cache"
    adapt.stream_frames("robot_cam", 3, 0.3, cache)  # render once; every run reads it
    job = ("robot_cam", 3, 0.3, "boa_2nd", cfg, "before", str(cache))
    other = ("robot_cam", 3, 0.3, "joint", cfg, "before", str(cache))

    with mp.get_context("spawn").Pool(1) as pool:
        alone = pool.apply(adapt._job, (job,))
    adapt._job(other)
    after_other = adapt._job(job)
    payload = adapt.run(["robot_cam"], [3], 0.3, ["joint", "boa_2nd"], cfg, "before",
                        tmp_path / "out", workers=2, latency=False, cache=cache)
    pooled = next(r for r in payload["runs"] if r["method"] == "boa_2nd")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = adapt._job(job)
    finally:
        for b in burners:
            b.kill()
            b.wait()

    assert alone["steps"] == 9 and len(alone["per_frame_pa_mpjpe"]) == 9
    for key in COMPARED:
        assert alone[key] == after_other[key] == pooled[key] == loaded[key], key
    # The aggregate of one seed is that seed's value, bit for bit.
    res = payload["results"]["robot_cam"]["boa_2nd"]
    assert res["pa_mpjpe"] == alone["pa_mpjpe"]
    assert res["per_seed"]["pa_mpjpe"] == [alone["pa_mpjpe"]]


def test_the_background_bench_reports_real_time_against_lock_step_and_frames_used(tmp_path):
    """`bench adapt --background-only`: per stream the lock-step errors of the same stream,
    the real-time / lock-step ratio and the samples adaptation used per stream second."""
    import torch

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", HMR(MICRO))
    cfg = replace_path(PipelineConfig(), "inference.weights", str(tmp_path / "m.pt"))
    cfg = replace_path(cfg, "adapt.min_keypoints", 4)
    cache = tmp_path / "cache"
    payload = adapt.background(["robot_cam"], [3], 0.3, "boa_2nd", cfg, tmp_path / "out", cache)
    (run,) = payload["runs"]
    lock = adapt._job(("robot_cam", 3, 0.3, "boa_2nd", cfg, "before", str(cache)))
    assert run["lockstep"]["pa_mpjpe"] == lock["pa_mpjpe"]  # the same stream, deterministic
    assert run["realtime_lockstep_ratio"] == run["with_worker"]["pa_mpjpe"] / lock["pa_mpjpe"]
    w = run["with_worker"]
    # One person a frame, one frame a step: at most the stream's frames, at its rate.
    assert 1 <= w["samples_used"] <= w["frames"]
    assert w["frames_used_per_second"] == w["samples_used"] / (w["frames"] / w["input_fps"])
    assert run["without_worker"]["samples_used"] == 0
    med = payload["median"]
    assert med["frames_used_per_second"] == run["frames_used_per_second"]
    assert med["realtime_lockstep_ratio"]["robot_cam"] == run["realtime_lockstep_ratio"]
