"""The node with only a camera, and the order of a frame's messages, through real DDS:
`launch/adapt.launch.py` under a LaunchService, bags played from another process
(`hmr_ros.ros.player`, reliable QoS), this process as a consumer with real rclpy.

- A real street video (OpenCV's vtest.avi, 2-4 walkers) as a camera without keypoints: the
  node's own detector finds, follows and meshes the walkers with ids that hold.
- A synthetic stream with keypoints, played image-first and keypoints-first into one node
  with adaptation off: the same bodies for every frame, whichever message came first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ros_harness import NODE, Consumer, Launched, require_ros, ros_env, write_stream

pytestmark = pytest.mark.ros

CAMERA = "/cam_only"


def _play(bag: Path, env: dict, tmp: Path, name: str, *extra: str) -> dict:
    out = tmp / f"{name}.json"
    done = subprocess.run(
        [sys.executable, "-m", "hmr_ros.ros.player", str(bag), "--remap", f"/camera={CAMERA}",
         "--node", NODE, "--out", str(out), "--linger", "3", "--ready-timeout", "180", *extra],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_the_camera_only_node_meshes_and_follows_the_walkers_of_a_street_video(
        tmp_path, samples):
    require_ros()
    pytest.importorskip("mediapipe", reason="the ROS workspace installs the [mediapipe] extra")
    from hmr_ros.synth import write_video_bag

    # 24 frames of vtest.avi at 4 Hz (6 s): the three walkers of its start, one entering.
    bag = write_video_bag(samples("vtest.avi"), tmp_path / "vtest", fps=4.0, limit=24)
    env = ros_env()
    launched = Launched("adapt.launch.py", {"camera": CAMERA, "image_qos": "reliable",
                                            "keypoints_topic": "none", "markers": "false"},
                        env, cwd=tmp_path, log=tmp_path / "launch.log")
    try:
        rec = _play(bag, env, tmp_path, "vtest", "--exclude", "/camera/keypoints")
        log = launched.log()[-3000:]
    finally:
        launched.stop()
    sent = rec["published"]
    answered = [k for k in sorted(sent, key=int) if k in rec["received"]]
    assert rec["images_sent"] == 24
    # HOG runs in its own thread: nobody is known before its first run ends, and a new
    # track needs two detections (tracker.min_hits) before it is output.
    assert len(answered) >= 12, f"{len(answered)}/24 answered\n{log}"
    counts = [len(rec["ids"][k]) for k in answered]
    with_people = [c for c in counts if c]  # the first answers come before anyone is known
    assert len(with_people) >= 10 and np.mean(with_people) >= 1.5, (counts, log)
    # Ids hold: each id that appears is seen in several frames, and the walkers of the
    # start keep theirs to the end (no id per frame, no churn).
    seen = Counter(i for k in answered for i in rec["ids"][k])
    assert len(seen) <= 7, seen
    steady = [i for i, n in seen.items() if n >= len(answered) // 3]
    assert len(steady) >= 2, seen
    last = answered[-4:]
    assert all(set(steady) & set(rec["ids"][k]) for k in last), (steady, rec["ids"])


def test_a_frame_gives_the_same_bodies_whichever_message_arrives_first(tmp_path):
    require_ros()
    bag = write_stream(tmp_path / "stream", fps=10.0, seconds=3.0)
    env = ros_env()
    consumer = Consumer(int(env["ROS_DOMAIN_ID"]))
    launched = Launched("adapt.launch.py", {"camera": CAMERA, "image_qos": "reliable",
                                            "adapt": "false", "markers": "false"},
                        env, cwd=tmp_path, log=tmp_path / "launch.log")
    bodies = {}
    try:
        for order, extra in (("image_first", ()), ("keypoints_first", ("--keypoints-first",))):
            start = time.monotonic()
            rec = _play(bag, env, tmp_path, order, *extra)
            got = [m for t, m in consumer.seen.copy("bodies") if t >= start]
            bodies[order] = {_stamp(m): m for m in got if m.bodies}
            answered = [k for k in rec["published"] if k in rec["received"]]
            # Keypoints sent just before a large image reach the node late, in bursts (a
            # transport effect, docs/ros.md): fewer frames are answered in that order, but
            # those answered must carry the same bodies.
            least = 0.9 if order == "image_first" else 0.2
            assert len(answered) >= least * len(rec["published"]), (order, len(answered),
                                                                    launched.log()[-2000:])
    finally:
        consumer.close()
        launched.stop()
    common = sorted(set(bodies["image_first"]) & set(bodies["keypoints_first"]))
    assert len(common) >= 6, len(common)
    for stamp in common:
        a, b = bodies["image_first"][stamp].bodies, bodies["keypoints_first"][stamp].bodies
        assert len(a) == len(b) == 1
        ja = np.array([[p.x, p.y, p.z] for p in a[0].joints])
        jb = np.array([[p.x, p.y, p.z] for p in b[0].joints])
        np.testing.assert_allclose(ja, jb, atol=1e-5)
        np.testing.assert_allclose(np.array(a[0].body_pose), np.array(b[0].body_pose),
                                   atol=1e-5)
