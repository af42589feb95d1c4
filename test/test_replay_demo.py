"""`hmr-ros replay`, `hmr-ros demo` and the online protocols, end to end on small streams."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from rosbags.highlevel import AnyReader

from hmr_ros.adapt.augment import SourceReplay
from hmr_ros.cli import main
from hmr_ros.config import PipelineConfig, replace_path, updated
from hmr_ros.messages.bag import BagError
from hmr_ros.messages.definitions import hmr_typestore
from hmr_ros.pipeline import build_pipeline
from hmr_ros.source_replay import replay_for
from hmr_ros.stream.runner import run_online
from hmr_ros.world.domain import load_domain
from hmr_ros.world.scene import SyntheticSequence


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("bag") / "stream"
    assert main(["synth", "--domain", "robot_cam", "--seed", "12", "--duration", "0.3",
                 "--out", str(out)]) == 0
    return out


def _cfg(weights, **adapt) -> PipelineConfig:
    cfg = replace_path(PipelineConfig(), "inference.weights", str(weights))
    return dataclasses.replace(cfg, adapt=updated(
        cfg.adapt, {"min_keypoints": 4, "outer_lr": 1e-3, **adapt}))


def test_replay_writes_estimates_metrics_and_pictures(bag, weights, tmp_path, capsys):
    out = tmp_path / "replay"
    assert main(["replay", str(bag), "--out", str(out), "--weights", str(weights),
                 "--protocol", "before", "--set", "adapt.min_keypoints=4",
                 "--set", "adapt.method=boa_1st"]) == 0
    printed = capsys.readouterr().out
    assert "PA-MPJPE" in printed and "adaptation boa_1st: 9 steps" in printed
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frames"] == 9 and summary["people"] == 9
    assert summary["adaptation"]["steps"] == 9 and summary["metrics"]["detected"] == 1.0
    assert np.isfinite(summary["metrics"]["pa_mpjpe"])
    assert (out / "overlay.png").stat().st_size > 1000
    # The output bag holds one SMPLBodyArray per image, stamped like the images.
    seq = SyntheticSequence(load_domain("robot_cam"), seed=12, duration_s=0.3)
    with AnyReader([out / "estimates"], default_typestore=hmr_typestore()) as r:
        msgs = [(c.topic, r.deserialize(raw, c.msgtype)) for c, _, raw in r.messages()]
    bodies = [m for t, m in msgs if t == "/hmr/bodies"]
    status = [m for t, m in msgs if t == "/hmr/adaptation_status"]
    assert len(bodies) == 9 and len(status) == 9
    for i, m in enumerate(bodies):
        assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == seq.stamp_ns(i)
        (b,) = m.bodies
        assert b.id == 1 and len(b.joints) == 24
    # Lock-step versions: frame i was predicted with the weights adapted on frames < i.
    assert [m.model_version for m in bodies] == list(range(9))
    assert status[-1].steps == 9 and status[-1].method == "boa_1st"


def test_replay_without_adaptation_keeps_version_zero(bag, weights, tmp_path):
    out = tmp_path / "frozen"
    assert main(["replay", str(bag), "--out", str(out), "--weights", str(weights),
                 "--no-adapt", "--no-video"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["adaptation"] is None and summary["protocol"] == "none"
    assert not (out / "overlay.png").exists()


def test_replay_of_a_bag_without_images_says_which_topics_it_has(weights, tmp_path, capsys):
    from pathlib import Path

    from hmr_ros.replay import replay

    fixture = Path(__file__).parent / "fixtures" / "rosbag2" / "humble_v5_sqlite3_sensor_msgs"
    with pytest.raises(BagError, match=r"no sensor_msgs/msg/Image.*my_temperature"):
        replay(fixture, tmp_path / "x", PipelineConfig())
    # The command says the same in one line on stderr, without a traceback, and exits 2.
    assert main(["replay", str(fixture), "--out", str(tmp_path / "x"), "--weights",
                 str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hmr-ros replay: error: ") and "my_temperature" in err
    assert "Traceback" not in err


def test_protocols_before_after_async(weights):
    seq = SyntheticSequence(load_domain("robot_cam"), seed=13, duration_s=0.2)
    frames = [seq.frame(i).frame for i in range(len(seq))]
    results = {}
    for protocol in ("before", "after"):
        torch.manual_seed(1)
        pipe = build_pipeline(_cfg(weights, method="framewise"), start=False)
        results[protocol] = [r for _, r in run_online(pipe, frames, protocol)]
        pipe.close()
    before, after = results["before"], results["after"]
    assert [r.model_version for r in before] == list(range(len(frames)))
    assert [r.model_version for r in after] == list(range(1, len(frames) + 1))
    # Frame 0 'before' is the source model; 'after' already adapted on it.
    assert not np.allclose(before[0].people[0].joints, after[0].people[0].joints)
    pipe = build_pipeline(_cfg(weights, method="framewise", schedule="latest"), start=False)
    out = [r for _, r in run_online(pipe, frames, "async")]
    pipe.close()
    assert len(out) == len(frames) and all(len(r.people) == 1 for r in out)


def test_the_source_replay_set_comes_from_the_caller(weights):
    """With adapt.replay.count > 0 the entry point renders the set (`replay_for`) and hands it to
    `build_pipeline`, which refuses to build a worker without it."""
    cfg = _cfg(weights, method="framewise", **{"replay.count": 2})
    with pytest.raises(ValueError, match="adapt.replay.count = 2"):
        build_pipeline(cfg, adapt=True, start=False)
    assert replay_for(cfg, adapt=False) is None
    assert replay_for(replace_path(cfg, "adapt.method", "none"), adapt=True) is None
    with build_pipeline(cfg, adapt=False) as pipe:  # no worker: no set needed
        assert pipe.adaptation is None
    replay = replay_for(cfg, adapt=True)
    assert replay["images"].shape[0] == 2 and replay["images"].dtype == torch.uint8
    assert replay["rotmat"].shape == (2, 24, 3, 3) and replay["points3d"].shape[:2] == (2, 46)
    with build_pipeline(cfg, adapt=True, start=False, replay=replay) as pipe:
        assert pipe.adaptation.augmenter(SourceReplay).data is replay


def test_demo_prints_running_errors_and_writes_outputs(weights, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--seconds", "0.4", "--out", str(out), "--weights", str(weights),
                 "--set", "adapt.min_keypoints=4", "--no-video", "--lockstep"]) == 0
    printed = capsys.readouterr().out
    assert "running PA-MPJPE  frozen" in printed and "adapted" in printed
    summary = json.loads((out / "demo.json").read_text())
    assert summary["frames"] == 12 and summary["adaptation"]["steps"] == 12
    assert summary["protocol"] == "before"
    assert np.isfinite(summary["frozen"]["pa_mpjpe"]) and np.isfinite(
        summary["adapted"]["pa_mpjpe"])


def test_the_realtime_demo_plays_at_the_stream_rate_adapting_in_the_background(
        weights, tmp_path, capsys):
    """The default. Frames and the frozen estimates are made first (here in two processes,
    the default, so the parallel path runs in the suite); the play is paced; the video is drawn
    after it."""
    out = tmp_path / "demo_rt"
    assert main(["demo", "--seconds", "1.2", "--out", str(out), "--weights", str(weights),
                 "--set", "adapt.min_keypoints=4"]) == 0
    printed = capsys.readouterr().out
    assert "in the background" in printed and "rendered 36 frames" in printed
    summary = json.loads((out / "demo.json").read_text())
    assert summary["protocol"] == "async" and summary["frames"] == 36
    # Paced: the play is never faster than the stream (36 frames at 30 fps).
    assert summary["timings"]["play_s"] >= 1.2
    assert set(summary["timings"]) == {"render_s", "play_s", "video_s"}
    assert (out / "demo.mp4").stat().st_size > 0 or (out / "demo.png").exists()
    # The frozen estimates from the render processes equal the frozen model's in-process.
    lock = tmp_path / "demo_lock"
    assert main(["demo", "--seconds", "1.2", "--out", str(lock), "--weights", str(weights),
                 "--set", "adapt.min_keypoints=4", "--no-video", "--lockstep"]) == 0
    frozen_lock = json.loads((lock / "demo.json").read_text())["frozen"]
    assert summary["frozen"]["pa_mpjpe"] == pytest.approx(frozen_lock["pa_mpjpe"], abs=1e-6)
    assert summary["adaptation"]["state"] in ("running", "idle", "stopped", "paused")
    assert np.isfinite(summary["frozen"]["pa_mpjpe"]) and np.isfinite(
        summary["adapted"]["pa_mpjpe"])


def test_replay_with_no_estimate_ends_cleanly_with_strict_json(bag, weights, tmp_path, capsys):
    """Every person unusable: replay ended with KeyError 'mpjpe' after its warnings, and
    metrics.json held bare NaN (not JSON)."""
    out = tmp_path / "none"
    assert main(["replay", str(bag), "--out", str(out), "--weights", str(weights),
                 "--no-adapt", "--no-video", "--set", "inference.min_keypoints=1000"]) == 0
    printed = capsys.readouterr().out
    assert "MPJPE - mm, PA-MPJPE - mm" in printed and "no estimate was scored" in printed
    text = (out / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert summary["people"] == 0 and summary["skipped_people"] == 9
    assert summary["metrics"]["mpjpe"] is None and summary["metrics"]["detected"] == 0.0
