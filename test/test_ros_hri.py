"""The node as a ROS4HRI (REP-155) body provider, through launch, Fast DDS and real rclpy: a
ROS4HRI-style consumer finds bodies on /humans/bodies/tracked, follows each body's topics and
sees them go when the track ends; and another ROS4HRI detector's skeletons as the node's input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ros_harness import NODE, Consumer, Launched, require_ros, ros_env, write_stream

pytestmark = pytest.mark.ros

CAMERA = "/hri_cam"


def _play(bag: Path, out: Path, env: dict) -> dict:
    res = subprocess.run(
        [sys.executable, "-m", "hmr_ros.ros.player", str(bag), "--remap", f"/camera={CAMERA}",
         "--node", NODE, "--out", str(out), "--linger", "2.0", "--ready-timeout", "120"],
        env=env, cwd=out.parent, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(out.read_text())


class Ros4HriConsumer:
    """What libhri does: follow /humans/bodies/tracked, subscribe to each new body's topics."""

    def __init__(self, consumer: Consumer) -> None:
        from hri_msgs.msg import IdsList

        self.c = consumer
        self.lock = threading.Lock()
        self.tracked: list[tuple[float, list[str]]] = []
        self.msgs: dict[tuple[str, str], list] = {}
        self.subs: dict[str, list] = {}
        consumer.node.create_subscription(IdsList, "/humans/bodies/tracked", self._tracked, 50)

    def _tracked(self, msg) -> None:
        from hri_msgs.msg import BodyPosture, NormalizedRegionOfInterest2D, Skeleton2D

        ids = list(msg.ids)
        with self.lock:
            self.tracked.append((time.monotonic(), ids))
        for body in ids:
            if body in self.subs:
                continue
            self.subs[body] = [
                self.c.node.create_subscription(
                    cls, f"/humans/bodies/{body}/{name}",
                    lambda m, key=(body, name): self._add(key, m), 50)
                for name, cls in (("roi", NormalizedRegionOfInterest2D),
                                  ("skeleton2d", Skeleton2D), ("posture", BodyPosture))]

    def _add(self, key, msg) -> None:
        with self.lock:
            self.msgs.setdefault(key, []).append(msg)

    def get(self, body: str, name: str) -> list:
        with self.lock:
            return list(self.msgs.get((body, name), []))


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _with_person_leaving(bag: Path, out: Path, keep: float = 0.5) -> Path:
    """The bag with nobody in the keypoints after the first `keep` of the stream."""
    from hmr_ros.messages.bag import BagReader, BagWriter

    with BagReader(bag) as r, BagWriter(out) as w:
        types = {t.name: t.msgtype for t in r.topics()}
        msgs = list(r.messages(list(types)))
        cut = msgs[0].timestamp_ns + keep * (msgs[-1].timestamp_ns - msgs[0].timestamp_ns)
        for m in msgs:
            if types[m.topic] == "hmr_ros/msg/Keypoints2DArray" and m.timestamp_ns > cut:
                m.msg.people = []
            w.write(m.topic, types[m.topic], m.msg, m.timestamp_ns)
    return out


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    require_ros()
    tmp = tmp_path_factory.mktemp("hri")
    # A person who sits down (and, halfway through, leaves the keypoints).
    bag = _with_person_leaving(write_stream(tmp / "stream", fps=10.0, seconds=6.0, seed=3,
                                            actions=("sit",)), tmp / "leaving")
    env = ros_env()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    launched = Launched("adapt.launch.py", {"camera": CAMERA, "image_qos": "reliable",
                                            "adapt": "false"}, env, cwd=tmp,
                        log=tmp / "launch.log")
    consumer = Consumer(int(env["ROS_DOMAIN_ID"]))
    hri = Ros4HriConsumer(consumer)
    try:
        rec = _play(bag, tmp / "play.json", env)
        time.sleep(1.0)
        yield rec, consumer, hri, launched, bag
    finally:
        consumer.close()
        launched.stop()


def test_a_ros4hri_consumer_finds_the_body_and_its_topics_agree_with_our_bodies(provider):
    rec, consumer, hri, launched, bag = provider
    from hmr_ros.messages.bag import BagReader
    from hmr_ros.messages.camera import msg_to_camera
    from hmr_ros.messages.hri import get_joint_set

    with BagReader(bag) as r:
        camera = msg_to_camera(next(iter(r.messages(["/camera/camera_info"]))).msg)
    seen = {i for _, ids in hri.tracked for i in ids}
    assert seen, launched.log()[-3000:]
    (body,) = seen
    assert body[0].isalpha()
    numeric = int(body[1:])
    bodies = {_stamp(m): m for _, m in consumer.seen.copy("bodies")}
    skeletons = hri.get(body, "skeleton2d")
    rois = {_stamp(m) for m in hri.get(body, "roi")}
    assert len(skeletons) >= 10 and hri.get(body, "posture")
    names = get_joint_set("rep155_18").joint_names
    from hmr_ros.body.joints import SMPL_JOINT_NAMES

    checked = 0
    for sk in skeletons:
        ours = bodies.get(_stamp(sk))
        assert ours is not None, "a skeleton without a body message of the same stamp"
        assert _stamp(sk) in rois
        (b,) = [b for b in ours.bodies if b.id == numeric]
        for joint in ("right_elbow", "left_wrist", "right_knee", "left_ankle"):
            j = b.joints[SMPL_JOINT_NAMES.index(joint)]
            u, v, w = camera.K @ np.array([j.x, j.y, j.z])
            p = sk.skeleton[names.index(joint)]
            if p.c > 0:
                np.testing.assert_allclose([p.x, p.y], [u / w / camera.width,
                                                        v / w / camera.height], atol=1e-4)
                checked += 1
    assert checked >= 20
    assert all(m.posture in (0, 1, 2, 3, 4) for m in hri.get(body, "posture"))
    # TF names the body as the topics do.
    when = consumer.tf_buffer.get_latest_common_time(
        next(iter(bodies.values())).header.frame_id, f"body_{body}")
    assert when is not None


def test_a_sitting_body_is_reported_as_sitting(provider):
    """The stream's person sits (robot_cam, action `sit`): sitting is the posture reported
    most, from our estimated 3D joints (hri_msgs/BodyPosture.SITTING = 2)."""
    rec, consumer, hri, launched, bag = provider
    (body,) = {i for _, ids in hri.tracked for i in ids}
    postures = [m.posture for m in hri.get(body, "posture")]
    counts = {code: postures.count(code) for code in set(postures)}
    assert max(counts, key=counts.get) == 2, counts
    assert counts[2] >= 0.4 * len(postures), counts


def test_per_body_topics_go_when_the_track_ends(provider):
    """The person leaves halfway: after the tracker's timeout the id leaves the tracked list
    and the node destroys the body's publishers."""
    rec, consumer, hri, launched, bag = provider
    (body,) = {i for _, ids in hri.tracked for i in ids}
    last = hri.tracked[-1][1]
    assert last == [], f"still tracked at the end: {last}"
    for name in ("roi", "cropped", "skeleton2d", "posture"):
        topic = f"/humans/bodies/{body}/{name}"
        assert consumer.node.count_publishers(topic) == 0, f"{topic} still has a publisher"


def _skeleton_bag(bag: Path, out: Path, body: str = "alice") -> Path:
    """The stream as a ROS4HRI detector would publish it: /humans/bodies/tracked and one
    Skeleton2D per body (normalised), instead of our keypoints message."""
    from hmr_ros.messages.bag import BagReader, BagWriter
    from hmr_ros.messages.hri import IDS_LIST, SKELETON, ids_to_msg, skeleton_to_msg
    from hmr_ros.messages.keypoints import msg_to_detections

    with BagReader(bag) as r, BagWriter(out) as w:
        types = {t.name: t.msgtype for t in r.topics()}
        info = next(iter(r.messages(["/camera/camera_info"]))).msg
        width, height = int(info.width), int(info.height)
        for m in r.messages(list(types)):
            if types[m.topic] != "hmr_ros/msg/Keypoints2DArray":
                w.write(m.topic, types[m.topic], m.msg, m.timestamp_ns)
                continue
            stamp = _stamp(m.msg)
            dets = msg_to_detections(m.msg)
            w.write("/humans/bodies/tracked", IDS_LIST,
                    ids_to_msg(w.factory, [body] if dets else [], stamp, "cam"), m.timestamp_ns)
            for d in dets[:1]:
                kp = _to_rep155(d.keypoints)
                pts = np.c_[kp.xy / [width, height], kp.confidence]
                w.write(f"/humans/bodies/{body}/skeleton2d", SKELETON,
                        skeleton_to_msg(w.factory, pts, stamp, "cam"),
                        m.timestamp_ns)
    return out


def _to_rep155(kp):
    from hmr_ros.body.joints import get_joint_set
    from hmr_ros.data.frame import Keypoints

    src = get_joint_set(kp.format).joint_names
    out_xy, out_c = [], []
    for name in get_joint_set("rep155_18").joint_names:
        if name == "neck":
            i, j = src.index("left_shoulder"), src.index("right_shoulder")
            out_xy.append((kp.xy[i] + kp.xy[j]) / 2)
            out_c.append(min(kp.confidence[i], kp.confidence[j]))
        else:
            out_xy.append(kp.xy[src.index(name)])
            out_c.append(kp.confidence[src.index(name)])
    return Keypoints("rep155_18", np.array(out_xy), np.array(out_c))


def test_ros4hri_skeletons_as_input_give_the_bodies_our_keypoints_give(tmp_path):
    """A ROS4HRI detector's skeletons (`hri_input`) through the real node give the bodies
    that the same points as our own keypoints message give (the engine on the same frames),
    and the body keeps the detector's id in TF."""
    require_ros()
    import yaml

    stream = write_stream(tmp_path / "stream", fps=10.0, seconds=2.0, seed=32)
    bag = _skeleton_bag(stream, tmp_path / "skeletons")
    params = tmp_path / "hri_input.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "hri_input": True, "keypoints_topic": "", "adapt.enabled": False}}}))
    env = ros_env()
    launched = Launched("adapt.launch.py", {"camera": CAMERA, "image_qos": "reliable",
                                            "keypoints_topic": "none",
                                            "params_file": str(params)}, env, cwd=tmp_path,
                        log=tmp_path / "launch.log")
    consumer = Consumer(int(env["ROS_DOMAIN_ID"]))
    try:
        _play(bag, tmp_path / "play.json", env)
        time.sleep(1.0)
        got = {_stamp(m): m for _, m in consumer.seen.copy("bodies") if m.bodies}
        assert len(got) >= 5, launched.log()[-3000:]
        tf_ok = consumer.tf_buffer.get_latest_common_time(
            next(iter(got.values())).header.frame_id, "body_alice")
        assert tf_ok is not None
    finally:
        consumer.close()
        launched.stop()
    # The same frames and points through our keypoints message, in the engine (no ROS).
    expected = _engine_bodies(stream)
    compared = 0
    for stamp, msg in got.items():
        if stamp not in expected:
            continue
        a, b = msg.bodies[0], expected[stamp]
        np.testing.assert_allclose(np.asarray(a.body_pose), np.asarray(b.body_pose), atol=1e-3)
        np.testing.assert_allclose([a.translation.x, a.translation.y, a.translation.z],
                                   [b.translation.x, b.translation.y, b.translation.z],
                                   atol=1e-3)
        compared += 1
    assert compared >= 5


def _engine_bodies(stream: Path) -> dict:
    from hmr_ros.config import PipelineConfig, replace_path
    from hmr_ros.data.frame import Detection
    from hmr_ros.messages.bag import BagReader
    from hmr_ros.messages.factory import RosbagsFactory
    from hmr_ros.messages.keypoints import detections_to_msg, msg_to_detections
    from hmr_ros.pipeline import build_pipeline
    from hmr_ros.ros.engine import NodeEngine
    from hmr_ros.ros.params import NodeConfig

    class Rec:
        def __init__(self):
            self.bodies = {}

        def publish(self, name, msg):
            if name == "bodies" and msg.bodies:
                self.bodies[_stamp(msg)] = msg.bodies[0]

        def send_transforms(self, transforms):
            pass

        def has_subscribers(self, name):
            return False

    cfg = replace_path(PipelineConfig(), "adapt.enabled", False)
    rec = Rec()
    with BagReader(stream) as r:
        f = RosbagsFactory(r.typestore)
        eng = NodeEngine(build_pipeline(cfg, adapt=False), cfg, NodeConfig(
            image_topic="/camera/image_raw", camera_info_topic="/camera/camera_info",
            keypoints_topic="/camera/keypoints"), f, rec)
        for m in r.messages([t.name for t in r.topics()]):
            if m.topic == "/camera/camera_info":
                eng.on_camera_info(m.msg)
            elif m.topic == "/camera/keypoints":
                dets = msg_to_detections(m.msg)[:1]
                rep = [Detection(d.id, _to_rep155(d.keypoints)) for d in dets]
                eng.on_keypoints(detections_to_msg(f, rep, _stamp(m.msg), "cam"))
                eng.step()
            elif m.topic == "/camera/image_raw":
                eng.on_image(m.msg)
                eng.step()
    eng.close()
    return rec.bodies
