"""The node for real: `launch/adapt.launch.py` under a LaunchService, a synthetic bag played
into it from another process at its recorded rate (reliable QoS), and this test process as a
consumer with real rclpy, Fast DDS and a real tf2 listener. No fakes.

The scenario runs once per module (fixture `run`); the tests below read what it recorded, in
file order, while the node is still up (services, parameters), and the last one stops it with
a Ctrl-C. Skipped without ROS 2; a failure where HMR_ROS_REQUIRE_ROS=1 (the ROS suite).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ros_harness import NODE, Consumer, Launched, require_ros, ros_env, write_stream

pytestmark = pytest.mark.ros

FPS, SECONDS = 10.0, 20.0
CAMERA = "/e2e_cam"


@dataclass
class Run:
    tmp: Path
    launched: Launched
    consumer: Consumer
    player: subprocess.Popen
    play_json: Path
    bag: Path
    _record: dict | None = None

    def record(self, timeout: float = 120.0) -> dict:
        """The player's record (waits for the player to finish)."""
        if self._record is None:
            out, _ = self.player.communicate(timeout=timeout)
            assert self.player.returncode == 0, f"player failed:\n{out}\n{self.launched.log()}"
            self._record = json.loads(self.play_json.read_text())
        return self._record


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    require_ros()
    tmp = tmp_path_factory.mktemp("e2e")
    bag = write_stream(tmp / "stream", fps=FPS, seconds=SECONDS)
    env = ros_env()
    domain = int(env["ROS_DOMAIN_ID"])
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    launched = Launched("adapt.launch.py", {"camera": CAMERA, "image_qos": "reliable"}, env,
                        cwd=tmp, log=tmp / "launch.log")
    consumer = Consumer(domain)
    play_json = tmp / "play.json"
    player = subprocess.Popen(
        [sys.executable, "-m", "hmr_ros.ros.player", str(bag), "--remap", f"/camera={CAMERA}",
         "--node", NODE, "--out", str(play_json), "--linger", "2", "--ready-timeout", "120"],
        env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    r = Run(tmp, launched, consumer, player, play_json, bag)
    try:
        yield r
    finally:
        if player.poll() is None:
            player.kill()
        consumer.close()
        launched.stop()


def _stamp(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


# ------------------------------------------------------------------ while the bag plays


def test_adaptation_versions_increase_while_playing(run):
    first = run.consumer.wait_for("status", lambda m: m.steps > 0, timeout=120)
    assert first is not None, "no adaptation step reported:\n" + run.launched.log()[-3000:]
    later = run.consumer.wait_for("status", lambda m: m.model_version > first.model_version,
                                  timeout=20)
    assert later is not None and later.enabled and later.method == "boa_2nd"
    assert later.steps > first.steps


def test_set_adaptation_false_pauses_it(run):
    from std_srvs.srv import SetBool

    res = run.consumer.call(SetBool, f"{NODE}/set_adaptation", SetBool.Request(data=False))
    assert res.success, res.message
    paused = run.consumer.wait_for("status", lambda m: not m.enabled, timeout=5)
    assert paused is not None and paused.state == 2  # STATE_PAUSED
    time.sleep(1.5)  # frames keep coming; a step in flight may still land
    before = run.consumer.wait_for("status", lambda m: True, timeout=3)
    time.sleep(2.0)
    after = run.consumer.wait_for("status", lambda m: True, timeout=3)
    assert run.player.poll() is None, "the bag ended before the pause could be observed"
    assert after.model_version == before.model_version and after.steps == before.steps
    assert run.consumer.get_parameter("adapt.enabled") is False  # service and parameter agree
    res = run.consumer.call(SetBool, f"{NODE}/set_adaptation", SetBool.Request(data=True))
    assert res.success


def test_reset_changes_the_version_and_save_writes_a_checkpoint(run):
    from std_srvs.srv import Trigger

    from hmr_ros.model import load_checkpoint

    before = run.consumer.wait_for("status", lambda m: True, timeout=3).model_version
    res = run.consumer.call(Trigger, f"{NODE}/reset_adaptation", Trigger.Request())
    assert res.success, res.message
    reset_to = int(re.search(r"model version (\d+)", res.message).group(1))
    assert reset_to > before  # a reset is a new version, never an old number again
    after = run.consumer.wait_for("status", lambda m: m.model_version >= reset_to, timeout=5)
    assert after is not None
    # The default path, relative to the node's working directory (a fresh one: runs/ does
    # not exist yet).
    res = run.consumer.call(Trigger, f"{NODE}/save_adaptation", Trigger.Request())
    assert res.success, res.message
    saved = run.tmp / "runs" / "adapted.pt"
    loaded = load_checkpoint(saved)
    assert loaded.meta["method"] == "boa_2nd" and loaded.meta["model_version"] >= 1


def test_parameter_updates_are_applied_or_refused_with_a_reason(run):
    ok, refused, bad_type = (run.consumer.set_parameters(marker_rate=2.5)[0],
                             run.consumer.set_parameters(image_topic="/elsewhere")[0],
                             run.consumer.set_parameters(marker_alpha=3.0)[0])
    assert ok.successful and run.consumer.get_parameter("marker_rate") == 2.5
    assert not refused.successful and "read at start only" in refused.reason
    assert run.consumer.get_parameter("image_topic") == f"{CAMERA}/image_raw"
    assert not bad_type.successful and "marker_alpha" in bad_type.reason


# ------------------------------------------------------------------ after the bag


def test_every_frame_gets_bodies_with_its_stamp_and_stable_ids(run):
    rec = run.record()
    sent = rec["published"]
    answered = [k for k in sent if k in rec["received"]]
    assert rec["images_sent"] == int(FPS * SECONDS)
    assert len(answered) >= 0.95 * len(sent), (
        f"{len(answered)}/{len(sent)} frames answered\n" + run.launched.log()[-3000:])
    ids = [tuple(rec["ids"][k]) for k in answered if rec["ids"][k]]
    assert len(ids) >= 0.9 * len(answered)
    assert len(set(ids)) == 1, f"ids changed: {sorted(set(ids))}"
    # What the consumer got carries the image's stamp too (none invented).
    stamps = {_stamp(m) for _, m in run.consumer.seen.copy("bodies")}
    assert stamps <= {int(k) for k in sent} and len(stamps) >= 0.95 * len(sent)


def test_tf_frames_resolve_where_the_body_message_puts_them(run):
    from rclpy.time import Time

    from hmr_ros.body.joints import SMPL_JOINT_NAMES

    run.record()
    bodies = [m for _, m in run.consumer.seen.copy("bodies") if m.bodies]
    msg = bodies[-1]  # the newest: its transforms are inside the buffer's 10 s
    body = msg.bodies[0]
    joints = np.array([[p.x, p.y, p.z] for p in body.joints])
    camera = msg.header.frame_id
    when = Time(nanoseconds=_stamp(msg))
    head = SMPL_JOINT_NAMES.index("head")
    deadline = time.monotonic() + 10
    while not run.consumer.tf_buffer.can_transform(camera, f"head_b{body.id}", when) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    tf_body = run.consumer.tf_buffer.lookup_transform(camera, f"body_b{body.id}", when)
    tf_head = run.consumer.tf_buffer.lookup_transform(camera, f"head_b{body.id}", when)

    def xyz(t):
        v = t.transform.translation
        return np.array([v.x, v.y, v.z])

    mid_hip = (joints[SMPL_JOINT_NAMES.index("left_hip")] +
               joints[SMPL_JOINT_NAMES.index("right_hip")]) / 2
    np.testing.assert_allclose(xyz(tf_body), mid_hip, atol=1e-6)
    np.testing.assert_allclose(xyz(tf_head), joints[head], atol=1e-6)  # via body_<id>
    q = tf_body.transform.rotation
    assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1) < 1e-9


def test_markers_are_the_body_meshes(run):
    """Markers go out as bytes serialized from numpy (ros/marker_cdr.py): what arrives is a
    MarkerArray whose triangles lie on the body of the same stamp."""
    from hmr_ros.body import BodyModel

    run.record()
    markers = run.consumer.seen.copy("markers")
    assert markers, "no ~/markers although subscribed"
    bodies = {_stamp(m): m for _, m in run.consumer.seen.copy("bodies") if m.bodies}
    checked = 0
    for _, arr in markers:
        clear, *meshes = arr.markers
        assert clear.action == 3 and len(meshes) == len(bodies.get(_stamp(clear), arr).bodies)
        for mesh in meshes:
            assert mesh.type == 11 and len(mesh.points) == 3 * len(BodyModel().faces)
            body = bodies[_stamp(mesh)].bodies[0]
            joints = np.array([[p.x, p.y, p.z] for p in body.joints])
            pts = np.array([[p.x, p.y, p.z] for p in mesh.points])
            assert np.isfinite(pts).all()
            assert np.linalg.norm(pts.mean(0) - joints.mean(0)) < 0.3  # on that body
            checked += 1
    assert checked >= 3


def test_faces_reach_a_late_subscriber(run):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import UInt32MultiArray

    from hmr_ros.body import BodyModel

    got = threading.Event()
    faces: list[Any] = []

    def on_faces(msg):
        faces.append(msg)
        got.set()

    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = run.consumer.node.create_subscription(UInt32MultiArray, f"{NODE}/mesh_faces",
                                                on_faces, qos)
    try:
        assert got.wait(10), "no latched faces for a subscriber that came late"
    finally:
        run.consumer.node.destroy_subscription(sub)
    data = np.asarray(faces[0].data, dtype=np.int64).reshape(-1, 3)
    np.testing.assert_array_equal(data, BodyModel().faces)


def test_diagnostics_go_from_ok_to_a_warning_when_images_stop(run):
    rec = run.record()
    estimator = f"{NODE.strip('/')}: estimator"

    def level(msg):
        return next((int.from_bytes(s.level, "little") if isinstance(s.level, bytes)
                     else int(s.level), s.message)
                    for s in msg.status if s.name == estimator)

    diags = run.consumer.seen.copy("diagnostics")
    during = [level(m) for t, m in diags if rec["play_started"] + 2 < t < rec["play_ended"]]
    assert during and all(lvl == 0 for lvl, _ in during), during
    warned = run.consumer.wait_for("diagnostics",
                                   lambda m: level(m)[0] == 1 and "no images" in level(m)[1],
                                   timeout=10)
    assert warned is not None, "no warning after the images stopped"


def test_ctrl_c_ends_the_node_within_two_seconds(run):
    run.record()
    code, seconds = run.launched.interrupt()
    log = run.launched.log()
    assert code == 0, log[-3000:]
    assert seconds < 2.0, f"launch took {seconds:.2f} s to exit after SIGINT"
    assert "process has finished cleanly" in log and "SIGTERM" not in log, log[-2000:]
