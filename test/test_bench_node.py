"""`hmr-ros bench node` without starting ROS: the numbers it reports from a player record,
and its refusal, with the way out, where the ROS 2 workspace is missing."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from hmr_ros.bench.node import markdown, summarize


def _record(n=10, answered=(0, 1, 2, 3, 5, 6, 7, 8, 9), lat_ms=20.0):
    published = {str(1000 + i): 100.0 + i / 30 for i in range(n)}
    received = {str(1000 + i): 100.0 + i / 30 + (lat_ms + i) / 1e3 for i in answered}
    return {"published": published, "received": received, "play_started": 100.0,
            "play_ended": 100.0 + (n - 1) / 30, "diagnostics": {"latency p95 (ms)": "12.5"},
            "status_steps": [3, 5, 9], "status_versions": [1, 2, 2, 4], "cpu_s": 0.7,
            "late_ms_max": 4.0}


def test_summarize_rates_drops_latency_and_ratios():
    r = summarize(_record(), "adapt", 1)
    assert (r.images_sent, r.answered, r.dropped) == (10, 9, 1)
    assert r.input_hz == pytest.approx(30.0) and r.output_ratio == pytest.approx(0.9)
    lat = np.array([20.0 + i for i in (0, 1, 2, 3, 5, 6, 7, 8, 9)])
    assert r.latency_p50_ms == pytest.approx(np.percentile(lat, 50))
    assert r.latency_p95_ms == pytest.approx(np.percentile(lat, 95))
    assert r.pipeline_p95_ms == 12.5
    assert r.latency_over_pipeline_p95 == pytest.approx(np.percentile(lat, 95) / 12.5)
    assert (r.adaptation_steps, r.model_versions, r.player_cpu_s) == (6, 3, 0.7)


def test_summarize_without_answers_or_diagnostics_is_nan_not_a_crash():
    rec = _record(answered=())
    del rec["diagnostics"]
    r = summarize(rec, "no_adapt")
    assert r.answered == 0 and r.output_hz == 0.0 and np.isnan(r.latency_p95_ms)
    assert np.isnan(r.pipeline_p95_ms) and np.isnan(r.latency_over_pipeline_p95)


def test_markdown_reports_the_adaptation_ratio():
    rows = [summarize(_record(lat_ms=40.0), "adapt"), summarize(_record(), "no_adapt")]
    meta = {"width": 640, "height": 480, "fps": 30.0, "seconds": 8.0,
            "fastdds_transports": "DEFAULT", "command": "hmr-ros bench node"}
    text = markdown(rows, meta)
    ratio = rows[0].latency_p95_ms / rows[1].latency_p95_ms
    assert f"{ratio:.2f}" in text and "| adapt | 0 | 30.0 |" in text


def test_refuses_without_the_ros_workspace():
    try:
        have = importlib.util.find_spec("hmr_ros.msg") is not None
    except ModuleNotFoundError:
        have = False
    if have:
        pytest.skip("the ROS 2 workspace is sourced here: bench node would run")
    from hmr_ros.cli import main

    with pytest.raises(SystemExit, match="ros2_ws.sh"):
        main(["bench", "node", "--seconds", "1"])


def test_summarize_counts_bodies_ids_and_adaptation_samples():
    rec = _record()
    rec["ids"] = {str(1000 + i): ([1, 2] if i < 5 else [1, 3, 4]) for i in range(10)}
    rec["diagnostics"]["adaptation samples used"] = "27"
    r = summarize(rec, "adapt")
    answered = (0, 1, 2, 3, 5, 6, 7, 8, 9)
    assert r.bodies_per_message == pytest.approx(np.mean([2 if i < 5 else 3 for i in answered]))
    assert r.body_ids == 4
    assert r.adaptation_samples_per_second == pytest.approx(27 / (9 / 30))
    meta = {"width": 640, "height": 480, "fps": 30.0, "seconds": 8.0, "people": 3,
            "camera_only": True, "fastdds_transports": "DEFAULT", "command": "x"}
    assert "3 people, camera only" in markdown([r], meta)


def test_a_video_becomes_a_camera_bag_without_keypoints(samples, tmp_path):
    from hmr_ros.messages.bag import BagReader
    from hmr_ros.synth import write_video_bag

    out = write_video_bag(samples("vtest.avi"), tmp_path / "vtest_bag", fps=5.0, limit=4)
    with BagReader(out) as bag:
        topics = {t.name: t.msgtype for t in bag.topics()}
        stamps = [m.timestamp_ns for m in bag.raw_messages(["/camera/image_raw"])]
    assert topics == {"/camera/image_raw": "sensor_msgs/msg/Image",
                      "/camera/camera_info": "sensor_msgs/msg/CameraInfo"}
    assert np.diff(stamps).tolist() == [200_000_000] * 3  # 5 Hz, as asked


def test_a_video_camera_bag_is_as_long_as_asked(samples, tmp_path):
    from hmr_ros.bench.node import make_video_bag
    from hmr_ros.messages.bag import BagReader

    bag = make_video_bag(tmp_path / "v", samples("vtest.avi"), rate=10.0, seconds=0.5)
    with BagReader(bag) as reader:
        assert len(list(reader.raw_messages(["/camera/image_raw"]))) == 5
