"""The node: its ROS-free logic (`NodeEngine`, `FrameSync`, the recorded-bag evaluator) runs
here on rosbags messages; the rclpy wiring (`hmr_ros/ros/node.py`, the launch file) is tested
at the end with real rclpy in the ROS suite (scripts/ros2_ws.sh; skipped in the ROS-free
suite, a failure where HMR_ROS_REQUIRE_ROS=1). The node run as users run it, through launch and
DDS from another process, is test_ros_e2e.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ros_harness import require_ros

from hmr_ros import messages as cv
from hmr_ros.adapt.worker import AdaptStatus
from hmr_ros.body import BodyModel, map_points
from hmr_ros.config import PipelineConfig, replace_path
from hmr_ros.data.frame import CameraModel, Detection, Frame, Keypoints
from hmr_ros.detect import DetectorUnavailable, GroundTruthSource
from hmr_ros.messages.definitions import hmr_typestore
from hmr_ros.messages.factory import RosbagsFactory
from hmr_ros.model import HMR
from hmr_ros.model.backends import TorchBackend
from hmr_ros.model.config import get_preset
from hmr_ros.pipeline import Pipeline
from hmr_ros.ros.engine import (
    BODIES,
    CLOUD,
    DIAGNOSTICS,
    FACES,
    MARKERS,
    STATUS,
    NodeEngine,
)
from hmr_ros.ros.params import NodeConfig
from hmr_ros.stream.frames import FrameSync
from hmr_ros.world.domain import load_domain
from hmr_ros.world.scene import SyntheticSequence

ROOT = Path(__file__).resolve().parents[1]
W, H = 160, 120
K = np.array([[150.0, 0, (W - 1) / 2], [0, 150.0, (H - 1) / 2], [0, 0, 1]])


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def ts():
    return hmr_typestore("humble")


@pytest.fixture(scope="module")
def body():
    return BodyModel()


@pytest.fixture(scope="module")
def coco(body):
    """COCO-17 keypoints of a rest-pose body 3 m in front of the camera, facing it."""
    pose = torch.zeros(1, 72)
    pose[0, 0] = np.pi
    with torch.inference_mode():
        out = body.forward_axis_angle(pose, torch.zeros(1, 10), torch.tensor([[0, 0.2, 3.0]]))
    pts = map_points(out.points[0], "coco17").numpy().astype(np.float64)
    uv = (pts @ K.T)[:, :2] / pts[:, 2:]
    return uv.astype(np.float32)


class FakeWorker:
    alive = True  # as if started: the runner's async start leaves it alone

    def __init__(self):
        self.enabled, self.version, self.calls, self.resets = True, 4, [], 0

    def status(self):
        return AdaptStatus("running" if self.enabled else "paused", self.enabled, "boa_2nd",
                           self.version, 10, 1, 2.0, 0.5, 3, 0, 0, "", self.resets)

    def reset(self):
        self.calls.append("reset")
        self.version += 1
        return self.version

    def save(self, path=None):
        self.calls.append(("save", path))
        return Path(path or "runs/adapted.pt")

    def set_enabled(self, enabled):
        self.calls.append(("enabled", enabled))
        self.enabled = enabled

    def submit(self, samples):
        self.calls.append("submit")

    def stop(self):
        self.calls.append("stop")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HMR(get_preset("hmr_tiny"))


def make_pipeline(body, model, worker=None):
    return Pipeline(TorchBackend(model), body, PipelineConfig(), worker)


class Recorder:
    def __init__(self, subscribers=True):
        self.msgs: dict[str, list] = {}
        self.tf_calls: list[list] = []
        self.subscribers = subscribers

    def publish(self, name, msg):
        self.msgs.setdefault(name, []).append(msg)

    def send_transforms(self, transforms):
        self.tf_calls.append(list(transforms))

    def has_subscribers(self, name):
        return self.subscribers


class Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, msg):
        self.lines.append(("info", msg))

    def warning(self, msg):
        self.lines.append(("warning", msg))

    def error(self, msg):
        self.lines.append(("error", msg))

    def warnings(self, word):
        return [m for lvl, m in self.lines if lvl == "warning" and word in m]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def engine_for(body, model, ts, worker=None, clock=None, subscribers=True, config=None,
               source=None, **node_kw):
    node = NodeConfig(**{"image_topic": "/cam/image_raw", "camera_info_topic": "/cam/info",
                         "keypoints_topic": "/cam/keypoints", **node_kw})
    rec, log = Recorder(subscribers), Log()
    eng = NodeEngine(make_pipeline(body, model, worker), config or PipelineConfig(), node,
                     RosbagsFactory(ts), rec, log, clock or Clock(), keypoint_source=source)
    return eng, rec, log


def no_detector() -> PipelineConfig:
    return replace_path(PipelineConfig(), "detector.kind", "none")


def image_msg(ts, stamp, frame="cam_optical", encoding="rgb8"):
    img = np.full((H, W, 3), 90, np.uint8)
    return cv.image_to_msg(RosbagsFactory(ts), img, stamp, frame, encoding)


def kp_msg(ts, stamp, uv, ids=(7,)):
    dets = [Detection(i, Keypoints("coco17", uv + 3 * n, np.ones(17, np.float32)))
            for n, i in enumerate(ids)]
    return cv.detections_to_msg(RosbagsFactory(ts), dets, stamp, "cam_optical")


def info_msg(ts, w=W, h=H):
    return cv.camera_to_msg(RosbagsFactory(ts), CameraModel(K, w, h, "cam_optical"), 0)


# ------------------------------------------------------------------------ FrameSync


def test_sync_exact_match_and_newest_first():
    s = FrameSync()
    for t in (10, 20, 30):
        s.add_image(t, f"img{t}")
    assert s.pop() is None  # no keypoints yet
    s.add_keypoints(20, "kp20")
    m = s.pop()
    assert (m.stamp_ns, m.image, m.keypoints) == (20, "img20", "kp20")
    assert s.dropped == 1 and s.waiting == 1  # img10 dropped, img30 still waits
    s.add_keypoints(30, "kp30")
    s.add_keypoints(40, "kp40")  # keypoints may come first
    s.add_image(40, "img40")
    assert s.pop().image == "img40" and s.dropped == 2  # newest wins, img30 dropped


def test_sync_tolerance_and_nearest():
    s = FrameSync(tolerance_ns=5)
    s.add_image(100, "img")
    s.add_keypoints(93, "far")
    assert s.pop() is None
    s.add_keypoints(104, "near")
    s.add_keypoints(97, "nearer")
    m = s.pop()
    assert m.keypoints == "nearer" and m.offset_ns == -3


def test_sync_ring_limit_reset_and_no_keypoints_mode():
    s = FrameSync(image_buffer=2)
    for t in (1, 2, 3):
        s.add_image(t * 10**9, t)
    assert s.waiting == 2 and s.dropped == 1
    s.add_image(0, "restart")  # stamps jumped back (bag restarted): start over
    assert s.resets == 1 and s.waiting == 1
    free = FrameSync(need_keypoints=False)
    free.add_image(1, "a")
    free.add_image(2, "b")
    m = free.pop()
    assert m.image == "b" and m.keypoints is None and free.dropped == 1


def test_sync_wait_times_out_and_close_wakes():
    s = FrameSync()
    t0 = time.monotonic()
    assert s.wait(0.05) is None and time.monotonic() - t0 < 1.0
    threading.Timer(0.05, s.close).start()
    assert s.wait(5.0) is None
    got = []
    s2 = FrameSync()
    th = threading.Thread(target=lambda: got.append(s2.wait(5.0)))
    th.start()
    s2.add_image(5, "img")
    s2.add_keypoints(5, "kp")
    th.join(5.0)
    assert got and got[0].image == "img"


# ------------------------------------------------------------------------ NodeEngine


def test_engine_end_to_end_outputs(body, model, ts, coco):
    eng, rec, log = engine_for(body, model, ts)
    eng.on_camera_info(info_msg(ts))
    stamp = 1_700_000_000_123_000_000
    eng.on_keypoints(kp_msg(ts, stamp, coco, ids=(7, 9)))
    eng.on_image(image_msg(ts, stamp))
    assert eng.step() is True
    (bodies,) = rec.msgs[BODIES]
    assert cv.stamp_to_ns(bodies.header.stamp) == stamp
    assert bodies.header.frame_id == "cam_optical"
    assert [b.id for b in bodies.bodies] == [7, 9] and bodies.model_version == 0
    assert bodies.model_name and len(bodies.bodies[0].vertices) == 0  # publish_vertices off
    (tfs,) = rec.tf_calls  # ONE sendTransform for the frame
    assert len(tfs) == 2 * 25
    assert {t.child_frame_id for t in tfs} >= {"body_b7", "body_b9", "pelvis_b7", "head_b9"}
    assert all(cv.stamp_to_ns(t.header.stamp) == stamp for t in tfs)
    (markers,) = rec.msgs[MARKERS]
    assert len(markers.markers) == 3
    assert len(markers.markers[1].points) == 3 * len(body.faces)
    assert CLOUD not in rec.msgs  # publish_cloud is off by default
    for name, typename in ((BODIES, "hmr_ros/msg/SMPLBodyArray"),
                           (MARKERS, "visualization_msgs/msg/MarkerArray")):
        ts.serialize_cdr(rec.msgs[name][0], typename)
    assert not log.warnings("CameraInfo")


def test_engine_gives_anonymous_upstream_people_stable_distinct_ids(body, model, ts, coco):
    """Upstream detectors without a tracker send id 0 for everyone: the engine's tracker
    assigns distinct ids, kept while the people move a little from frame to frame."""
    eng, rec, _ = engine_for(body, model, ts)
    eng.on_camera_info(info_msg(ts))
    ids_seen = []
    for k in range(4):
        stamp = 1_700_000_000_000_000_000 + k * 33_000_000
        shift = np.array([2.0 * k, 0.0], np.float32)
        people = [Detection(0, Keypoints("coco17", coco + shift, np.ones(17, np.float32))),
                  # 60 px to the right: partly on the 160 px image (at 120 px all its
                  # keypoints were off the image, a person now dropped at the door).
                  Detection(0, Keypoints("coco17", coco + shift + np.array([60.0, 0.0]),
                                         np.ones(17, np.float32)))]
        eng.on_keypoints(cv.detections_to_msg(RosbagsFactory(ts), people, stamp, "cam"))
        eng.on_image(image_msg(ts, stamp))
        assert eng.step() is True
        ids_seen.append([b.id for b in rec.msgs[BODIES][-1].bodies])
    # A track is confirmed after detector.tracker.min_hits detections; then both keep their ids.
    confirmed = [ids for ids in ids_seen if ids]
    assert confirmed and all(len(set(ids)) == 2 for ids in confirmed)
    assert all(ids == confirmed[0] for ids in confirmed)


def test_engine_keypoints_after_image_and_tolerance(body, model, ts, coco):
    eng, rec, _ = engine_for(body, model, ts, keypoints_tolerance=0.005)
    eng.on_camera_info(info_msg(ts))
    eng.on_image(image_msg(ts, 1_000_000_000))
    eng.on_image(image_msg(ts, 1_033_000_000))
    assert eng.step() is False  # nothing to do until keypoints arrive
    eng.on_keypoints(kp_msg(ts, 1_003_000_000, coco))  # 3 ms off, within 5 ms
    assert eng.step() is True
    assert cv.stamp_to_ns(rec.msgs[BODIES][0].header.stamp) == 1_000_000_000
    eng2, rec2, _ = engine_for(body, model, ts)  # exact matching by default
    eng2.on_image(image_msg(ts, 1_000_000_000))
    eng2.on_keypoints(kp_msg(ts, 1_003_000_000, coco))
    assert eng2.step() is False and BODIES not in rec2.msgs


def test_engine_without_keypoints_topic_publishes_nothing_but_status(body, model, ts):
    eng, rec, log = engine_for(body, model, ts, keypoints_topic="", config=no_detector())
    (warning,) = log.warnings("keypoints_topic is empty")
    assert "detector.kind is none" in warning and "[mediapipe]" in warning
    for i in range(3):
        eng.on_image(image_msg(ts, i))
    assert eng.step() is False and BODIES not in rec.msgs
    eng.publish_diagnostics(5)
    eng.publish_status(5)
    (diag,) = rec.msgs[DIAGNOSTICS]
    est = diag.status[0]
    assert est.level == cv.DIAG_WARN and "no keypoints topic" in est.message
    assert {v.key for v in est.values} >= {"input rate (Hz)", "output rate (Hz)",
                                           "latency (ms)", "model version"}
    assert set(rec.msgs) == {DIAGNOSTICS, STATUS}
    assert len(log.warnings("keypoints_topic is empty")) == 1  # once


def test_engine_without_camera_info_warns_once_and_uses_fallback(body, model, ts, coco):
    eng, rec, log = engine_for(body, model, ts)
    for i in range(3):
        eng.on_keypoints(kp_msg(ts, i, coco))
        eng.on_image(image_msg(ts, i))
        assert eng.step()
    assert len(rec.msgs[BODIES]) == 3
    warned = log.warnings("no CameraInfo received on /cam/info")
    assert len(warned) == 1 and "fallback focal length inference.fallback_focal = 525" in \
        warned[0]
    eng.publish_diagnostics(1)
    assert "fallback focal" in rec.msgs[DIAGNOSTICS][0].status[0].message
    eng.on_camera_info(info_msg(ts))
    assert any("CameraInfo received" in m for lvl, m in log.lines if lvl == "info")
    eng.on_camera_info(info_msg(ts, w=640, h=480))  # wrong size for these images
    eng.on_keypoints(kp_msg(ts, 10, coco))
    eng.on_image(image_msg(ts, 10))
    assert eng.step() and log.warnings("CameraInfo is 640x480 but the images are 160x120")


def test_engine_survives_bad_inputs(body, model, ts, coco):
    eng, rec, log = engine_for(body, model, ts)
    bad = image_msg(ts, 1)
    bad.encoding = "yuv422"
    eng.on_keypoints(kp_msg(ts, 1, coco))
    eng.on_image(bad)
    assert eng.step() and BODIES not in rec.msgs and eng.bad_inputs == 1
    assert log.warnings("unsupported image encoding")
    kp = kp_msg(ts, 2, coco)
    kp.people[0].format = "nonsense"
    eng.on_keypoints(kp)
    eng.on_image(image_msg(ts, 2))
    assert eng.step() and rec.msgs[BODIES][0].bodies == []  # no people, still answered
    assert eng.bad_inputs == 2
    # /diagnostics counts each kind of skipped input on its own line.
    bad_info = cv.camera_to_msg(RosbagsFactory(ts), CameraModel(K, W, H, "cam_optical"), 0)
    bad_info.k = np.zeros(9)
    eng.on_camera_info(bad_info)
    values = eng.diagnostic_entries()[0].values
    assert values["images skipped (undecodable)"] == "1"
    assert values["keypoints skipped (unreadable)"] == "1"
    assert values["camera_info skipped (unreadable)"] == "1"
    assert eng.bad_inputs == 3 and eng.camera is None


def test_engine_counts_failures_and_reports_them(body, model, ts, coco):
    eng, rec, log = engine_for(body, model, ts)

    def boom(frame):
        raise RuntimeError("model exploded")

    eng.pipeline.process = boom
    eng.on_keypoints(kp_msg(ts, 1, coco))
    eng.on_image(image_msg(ts, 1))
    assert eng.step() is True and eng.errors == 1
    eng.publish_diagnostics(1)
    est = rec.msgs[DIAGNOSTICS][0].status[0]
    assert est.level == cv.DIAG_ERROR and "model exploded" in est.message


def test_diagnostics_say_when_the_guard_reset_to_the_source(body, model, ts):
    worker = FakeWorker()
    worker.resets = 2
    eng, rec, _ = engine_for(body, model, ts, worker=worker)
    eng.publish_diagnostics(1)
    adaptation = rec.msgs[DIAGNOSTICS][0].status[1]
    values = {v.key: v.value for v in adaptation.values}
    assert values["resets to source"] == "2" and values["rollbacks"] == "1"


def test_debug_outputs_are_throttled_and_skipped_without_subscribers(body, model, ts, coco):
    clock = Clock()
    eng, rec, _ = engine_for(body, model, ts, clock=clock, marker_rate=1.0, publish_cloud=True)
    for i, dt in enumerate((0.0, 0.4, 0.7)):
        clock.t = 100.0 + dt
        eng.on_keypoints(kp_msg(ts, i, coco))
        eng.on_image(image_msg(ts, i))
        eng.step()
    assert len(rec.msgs[BODIES]) == 3
    assert len(rec.msgs[MARKERS]) == 1 and len(rec.msgs[CLOUD]) == 1  # t=0 only (1 Hz)
    assert rec.msgs[CLOUD][0].width == body.num_vertices
    quiet, rec2, _ = engine_for(body, model, ts, subscribers=False)
    quiet.on_keypoints(kp_msg(ts, 1, coco))
    quiet.on_image(image_msg(ts, 1))
    quiet.step()
    assert BODIES in rec2.msgs and MARKERS not in rec2.msgs


def test_faces_status_and_services(body, model, ts):
    worker = FakeWorker()
    eng, rec, _ = engine_for(body, model, ts, worker=worker)
    eng.publish_faces()
    np.testing.assert_array_equal(cv.msg_to_faces(rec.msgs[FACES][0]), body.faces)
    eng.publish_status(42)
    st = rec.msgs[STATUS][0]
    assert (st.state, st.enabled, st.model_version) == (1, True, 4)
    assert eng.reset_adaptation() == (True, "weights reset to the source weights (model "
                                            "version 5)")
    ok, msg = eng.save_adaptation()
    assert ok and "runs/adapted.pt" in msg
    assert eng.set_adaptation(False)[0] and worker.enabled is False
    eng.publish_status(43)
    assert rec.msgs[STATUS][-1].state == 2 and not rec.msgs[STATUS][-1].enabled
    # adapt.enabled as a run-time parameter does the same
    assert eng.update_parameters([("adapt.enabled", True)]) == (True, "")
    assert worker.enabled is True
    ok, reason = eng.update_parameters([("marker_rate", 2), ("image_topic", "/x")])
    assert not ok and "read at start only" in reason and eng.node.marker_rate == 5.0
    assert eng.update_parameters([("marker_rate", 2)]) == (True, "")
    assert eng.node.marker_rate == 2.0
    assert not eng.update_parameters([("publish_tf", "yes")])[0]
    assert eng.update_parameters([("use_sim_time", True)]) == (True, "")


def test_services_without_adaptation(body, model, ts):
    eng, rec, _ = engine_for(body, model, ts)
    assert eng.reset_adaptation()[0] is False
    assert eng.save_adaptation()[0] is False
    assert eng.set_adaptation(True) == (False, "adaptation cannot be enabled: adapt.method is "
                                               "none")
    assert eng.set_adaptation(False)[0] is True
    assert eng.update_parameters([("adapt.enabled", False)])[0]
    assert not eng.update_parameters([("adapt.enabled", True)])[0]
    eng.publish_status(1)
    st = rec.msgs[STATUS][-1]
    assert (st.state, st.enabled) == (2, False)


def test_engine_thread_processes_in_the_background(body, model, ts, coco):
    eng, rec, _ = engine_for(body, model, ts)
    eng.clock = time.monotonic
    eng.start()
    try:
        for i in range(3):
            eng.on_keypoints(kp_msg(ts, i, coco))
            eng.on_image(image_msg(ts, i))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not rec.msgs.get(BODIES):
            time.sleep(0.02)
    finally:
        eng.stop()
    assert rec.msgs.get(BODIES), "the inference thread published nothing"
    assert not eng._thread.is_alive()


# ------------------------------------------------------------------------ recorded-bag eval


def test_bag_eval_scores_recorded_bodies(tmp_path, body):
    from hmr_ros.eval.bag_eval import evaluate_recorded, main
    from hmr_ros.messages.bag import BagWriter

    rng = np.random.default_rng(0)
    path = tmp_path / "rec"

    def estimate(pid):
        pose = np.zeros((24, 3), np.float32)
        pose[0] = (np.pi, 0, 0)
        pose[1:] = rng.normal(scale=0.1, size=(23, 3))
        from hmr_ros.data.frame import BodyParams

        class View:  # what bodies_to_msg reads
            id = pid
            params = BodyParams(np.zeros(10, np.float32), pose[0], pose[1:],
                                np.array([0, 0, 3], np.float32))
            joints = np.zeros((24, 3))
            vertices = None
            bbox_xyxy = np.zeros(4, np.float32)
            confidence = 1.0

        return View

    with BagWriter(path) as bag:
        f = bag.factory
        for i in range(6):
            t = 1_000_000_000 + i * 33_000_000
            truth = estimate(1)
            bag.write("/ground_truth/bodies", "hmr_ros/msg/SMPLBodyArray",
                      cv.bodies_to_msg(f, [truth], t, "cam", 0, "gt"), t)
            if i != 2:  # the node dropped frame 2
                bag.write("/hmr_ros/bodies", "hmr_ros/msg/SMPLBodyArray",
                          cv.bodies_to_msg(f, [truth], t, "cam", 10 + i, "m"), t)
    res = evaluate_recorded(path)
    assert res["frames"] == 6 and res["estimated_frames"] == 5
    assert res["detected"] == pytest.approx(5 / 6)
    assert res["mpjpe"] == pytest.approx(0.0, abs=1e-3)
    assert (res["first_model_version"], res["last_model_version"]) == (10, 15)
    out = tmp_path / "res.json"
    assert main([str(path), "--out", str(out)]) == 0 and out.exists()
    assert main([str(path), "--bodies", "/nope"]) == 2


# ------------------------------------------------------------------------ packaging


def test_ros_free_modules_import_with_ros_blocked():
    """Everything under hmr_ros/ros/ but node.py runs without ROS (bags, tests, docs)."""
    mods = ["hmr_ros.messages", "hmr_ros.messages.bag", "hmr_ros.messages.cdr",
            "hmr_ros.messages.marker_cdr", "hmr_ros.ros.params", "hmr_ros.ros.engine",
            "hmr_ros.ros.rclpy_factory", "hmr_ros.eval.bag_eval"]
    code = (
        "import importlib, importlib.abc, sys\n"
        "BLOCKED = {'rclpy', 'tf2_ros', 'cv_bridge', 'launch', 'launch_ros', 'sensor_msgs',"
        " 'sensor_msgs_py', 'std_msgs', 'geometry_msgs', 'visualization_msgs',"
        " 'diagnostic_msgs', 'std_srvs', 'rcl_interfaces', 'ament_index_python'}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED or name == 'hmr_ros.msg':\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


@pytest.mark.parametrize("name", ["node", "player", "recorder"])
def test_entry_scripts(name):
    """lib/hmr_ros/hmr_ros_<name> (`ros2 run hmr_ros hmr_ros_<name>`) runs hmr_ros.ros.<name>."""
    script = ROOT / "scripts" / f"hmr_ros_{name}"
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env python3")
    assert f"from hmr_ros.ros.{name} import main" in text
    compile(text, str(script), "exec")


#: The modules that need a ROS 2 install: the node, the bag player/probe and recorder, the
#: launch runner.
RCLPY_MODULES = ("node.py", "player.py", "recorder.py", "launch_file.py")


def test_node_module_keeps_ros_imports_to_itself():
    """Only the rclpy modules import rclpy & co.; they must at least compile here."""
    ros_words = ("rclpy", "tf2_ros", "sensor_msgs", "std_srvs", "visualization_msgs",
                 "diagnostic_msgs", "rcl_interfaces", "hmr_ros.msg")
    for path in (ROOT / "hmr_ros" / "ros").glob("*.py"):
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        imports = [ln for ln in lines if ln.startswith(("import ", "from "))]
        uses = [ln for ln in imports if any(w in ln.split()[1] for w in ros_words)]
        if path.name in RCLPY_MODULES:
            assert uses or path.name == "launch_file.py", f"{path.name} should import rclpy"
            compile(path.read_text(), str(path), "exec")
        else:
            assert not uses, f"{path.name} imports ROS modules at top level: {uses}"


# ------------------------------------------------------------------------ with ROS 2 only


def spin_for(ex, seconds: float) -> None:
    """Spin `ex` for `seconds`: publishing tests pace themselves like a camera, because a loop
    that publishes as fast as it can holds the GIL the node's inference thread (in the same
    process here) needs between kernels."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=max(0.0, end - time.monotonic()))


@pytest.mark.ros
def test_rclpy_node_publishes_bodies_and_answers_services(body, model, ts, coco):
    require_ros("rclpy", "tf2_ros")
    import rclpy
    from hmr_ros.msg import Keypoints2DArray, SMPLBodyArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image
    from std_srvs.srv import SetBool, Trigger
    from tf2_msgs.msg import TFMessage

    from hmr_ros.ros.node import HmrRosNode
    from hmr_ros.ros.rclpy_factory import RclpyFactory

    rclpy.init()
    try:
        node = HmrRosNode(
            pipeline=make_pipeline(body, model, FakeWorker()),
            parameter_overrides=[Parameter("image_topic", value="/t/image"),
                                 Parameter("camera_info_topic", value="/t/info"),
                                 Parameter("keypoints_topic", value="/t/keypoints"),
                                 Parameter("image_qos", value="reliable")])
        peer = rclpy.create_node("hmr_ros_test_peer")
        got, tf = [], []
        peer.create_subscription(SMPLBodyArray, "/hmr_ros/bodies", got.append, 10)
        peer.create_subscription(TFMessage, "/tf", tf.append, 100)
        pub_img = peer.create_publisher(Image, "/t/image", 10)
        pub_info = peer.create_publisher(CameraInfo, "/t/info", 10)
        pub_kp = peer.create_publisher(Keypoints2DArray, "/t/keypoints", 10)
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.add_node(peer)
        node.start()
        f = RclpyFactory()
        stamp = 1_700_000_000_000_000_000
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            pub_info.publish(cv.camera_to_msg(f, CameraModel(K, W, H, "cam_optical"), stamp))
            pub_kp.publish(cv.detections_to_msg(f, [Detection(3, Keypoints(
                "coco17", coco, np.ones(17, np.float32)))], stamp, "cam_optical"))
            pub_img.publish(cv.image_to_msg(f, np.full((H, W, 3), 90, np.uint8), stamp,
                                            "cam_optical"))
            spin_for(ex, 1 / 30)
        assert got and got[0].bodies[0].id == 3
        assert cv.stamp_to_ns(got[0].header.stamp) == stamp
        t_end = time.monotonic() + 5
        while not tf and time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
        assert any(t.child_frame_id == "body_b3" for m in tf for t in m.transforms)

        def call(srv_type, name, request):
            client = peer.create_client(srv_type, name)
            assert client.wait_for_service(timeout_sec=10)
            future = client.call_async(request)
            ex.spin_until_future_complete(future, timeout_sec=10)
            return future.result()

        assert call(Trigger, "/hmr_ros/reset_adaptation", Trigger.Request()).success
        res = call(SetBool, "/hmr_ros/set_adaptation", SetBool.Request(data=False))
        assert res.success and node.get_parameter("adapt.enabled").value is False
        bad = node.set_parameters([Parameter("image_topic", value="/other")])[0]
        assert not bad.successful and "read at start only" in bad.reason
        node.shutdown()
        node.destroy_node()
        peer.destroy_node()
    finally:
        rclpy.shutdown()


@pytest.mark.ros
def test_rclpy_camera_only_node_meshes_the_person_in_a_photo(body, model, samples):
    """A robot with only a camera: no keypoints topic, so the node finds the person itself
    (MediaPipe BlazePose, installed in the ROS workspace) in images that arrive through real
    DDS, and its tracker keeps one id for them."""
    require_ros("rclpy", "mediapipe")
    import rclpy
    from hmr_ros.msg import SMPLBodyArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from hmr_ros.ros.node import HmrRosNode
    from hmr_ros.ros.rclpy_factory import RclpyFactory

    image = np.ascontiguousarray(cv2.imread(str(samples("messi5.jpg")))[:, :, ::-1])
    h, w = image.shape[:2]  # 342 x 548, one footballer
    cam = CameraModel(np.array([[500.0, 0, (w - 1) / 2], [0, 500.0, (h - 1) / 2], [0, 0, 1]]),
                      w, h, "cam_optical")
    rclpy.init()
    try:
        node = HmrRosNode(
            pipeline=make_pipeline(body, model),
            parameter_overrides=[Parameter("image_topic", value="/c/image"),
                                 Parameter("camera_info_topic", value="/c/info"),
                                 Parameter("keypoints_topic", value=""),
                                 # BlazePose on the whole image (one person), as a robot
                                 # facing one user runs it
                                 Parameter("detector.kind", value="mediapipe"),
                                 Parameter("image_qos", value="reliable")])
        peer = rclpy.create_node("hmr_ros_camera_peer")
        got = []
        peer.create_subscription(SMPLBodyArray, "/hmr_ros/bodies", got.append, 10)
        pub_img = peer.create_publisher(Image, "/c/image", 10)
        pub_info = peer.create_publisher(CameraInfo, "/c/info", 10)
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.add_node(peer)
        node.start()
        f = RclpyFactory()
        stamps = []
        deadline = time.monotonic() + 60
        while sum(1 for m in got if m.bodies) < 4 and time.monotonic() < deadline:
            stamp = 1_700_000_000_000_000_000 + len(stamps) * 100_000_000
            stamps.append(stamp)
            pub_info.publish(cv.camera_to_msg(f, cam, stamp))
            pub_img.publish(cv.image_to_msg(f, image, stamp, "cam_optical"))
            spin_for(ex, 0.1)  # a 10 Hz camera
        with_people = [m for m in got if m.bodies]
        assert len(with_people) >= 4, f"{len(got)} messages, {len(with_people)} with people"
        assert all(len(m.bodies) == 1 for m in with_people)  # one footballer, one body
        assert len({m.bodies[0].id for m in with_people}) == 1  # one track id throughout
        assert {cv.stamp_to_ns(m.header.stamp) for m in got} <= set(stamps)
        assert all(m.header.frame_id == "cam_optical" for m in got)
        assert node.engine.stage.source.name == "mediapipe"
        node.shutdown()
        node.destroy_node()
        peer.destroy_node()
    finally:
        rclpy.shutdown()


@pytest.mark.ros
def test_marker_bytes_equal_rclpy_serialization(body, model, ts, coco):
    """The node publishes markers as bytes from numpy: rclpy reads them as the same message
    it would have built from objects, in this distro's Marker layout."""
    require_ros("rclpy")
    from rclpy.serialization import deserialize_message, serialize_message

    from hmr_ros.messages.marker_cdr import bodies_to_markers_cdr
    from hmr_ros.ros.rclpy_factory import RclpyFactory

    dets = tuple(Detection(i, Keypoints("coco17", coco + 3 * i, np.ones(17, np.float32)))
                 for i in (2, 4))
    people = list(make_pipeline(body, model).process(Frame(
        image=np.full((H, W, 3), 90, np.uint8), stamp_ns=5, camera=None,
        detections=dets)).people)
    assert len(people) == 2
    f = RclpyFactory()
    objects = cv.bodies_to_markers(f, people, body.faces, 77_000_000_123, "cam", 0.5)
    ours = bodies_to_markers_cdr(people, body.faces, 77_000_000_123, "cam", 0.5,
                                 f.marker_bytes_textured)
    # Fast CDR leaves its padding bytes uninitialised, so compare what the bytes MEAN: rclpy
    # decodes ours into what it decodes from its own serialization of the objects (both
    # through float32 colours), and both have the same length.
    theirs = serialize_message(objects)
    assert deserialize_message(ours, type(objects)) == deserialize_message(theirs,
                                                                           type(objects))
    assert len(theirs) == len(ours) and len(objects.markers[1].points) == 3 * len(body.faces)


@pytest.mark.ros
def test_rclpy_node_rejects_unknown_parameters(body, model):
    require_ros("rclpy", "tf2_ros")
    import rclpy
    from rclpy.parameter import Parameter

    from hmr_ros.config import ConfigError
    from hmr_ros.ros.node import HmrRosNode

    rclpy.init()
    try:
        with pytest.raises(ConfigError, match="did you mean 'inference.fallback_focal'"):
            HmrRosNode(pipeline=make_pipeline(body, model),
                       parameter_overrides=[Parameter("inference.fallback_focl", value=500.0)])
    finally:
        rclpy.shutdown()


@pytest.mark.ros
def test_launch_files_load():
    require_ros("launch", "launch_ros")
    from launch import LaunchDescription

    for name in ("adapt.launch.py", "eval_bag.launch.py"):
        spec = importlib.util.spec_from_file_location(name.replace(".", "_"),
                                                      ROOT / "launch" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        desc = module.generate_launch_description()
        assert isinstance(desc, LaunchDescription)
        args = {a.name for a in desc.get_launch_arguments()}
        assert set(module.ARGUMENTS) <= args


# ------------------------------------------------------------------ in-process detector


def _synthetic_images(ts, n):
    """A short robot_cam stream, its images as ROS messages, and the ground-truth source
    that answers for them (ids removed, so the engine's tracker must assign them)."""
    d = load_domain("robot_cam")
    d = dataclasses.replace(d, image=dataclasses.replace(d.image, render_scale=0.5))
    source = GroundTruthSource(SyntheticSequence(d, seed=4, duration_s=n / d.fps))
    frames = list(source.frames())[:n]
    f = RosbagsFactory(ts)
    return source, frames, [cv.image_to_msg(f, fr.image, fr.stamp_ns, "cam_optical", "rgb8")
                            for fr in frames]


def test_engine_without_keypoints_topic_finds_people_with_the_in_process_detector(
        body, model, ts):
    source, frames, images = _synthetic_images(ts, 4)
    eng, rec, log = engine_for(body, model, ts, keypoints_topic="", source=source)
    assert not log.warnings("keypoints_topic is empty")
    assert any("in-process detector ground_truth" in m for kind, m in log.lines if kind == "info")
    eng.on_camera_info(cv.camera_to_msg(RosbagsFactory(ts), frames[0].camera, 0))
    ids = []
    for msg in images:
        eng.on_image(msg)
        assert eng.step() is True  # no keypoints needed: every image is processed
        ids.append([b.id for b in rec.msgs[BODIES][-1].bodies])
    # The tracker confirms the person after detector.tracker.min_hits frames and keeps the id.
    confirmed = [i for i in ids if i]
    assert len(confirmed) >= len(images) - 1 and all(i == confirmed[0] for i in confirmed)
    assert len(confirmed[0]) == len(source.truth_ids) >= 1
    eng.publish_diagnostics(5)
    est = rec.msgs[DIAGNOSTICS][0].status[0]
    assert "no keypoints topic" not in est.message
    assert {v.key: v.value for v in est.values}["detector"] == "ground_truth"
    eng.close()


def test_engine_refuses_to_start_without_a_detector_asked_for_by_name(body, model, ts,
                                                                      monkeypatch):
    import hmr_ros.ros.engine as engine_module

    def missing(cfg, kind):
        raise DetectorUnavailable("MediaPipe is not installed: pip install -e \".[mediapipe]\"")

    monkeypatch.setattr(engine_module, "make_source", missing)
    cfg = replace_path(PipelineConfig(), "detector.kind", "mediapipe")
    with pytest.raises(DetectorUnavailable, match="mediapipe"):
        engine_for(body, model, ts, keypoints_topic="", config=cfg)
    # With detector.kind auto the node starts, says why nobody can be found, and waits.
    _, _, log = engine_for(body, model, ts, keypoints_topic="")
    (warning,) = log.warnings("keypoints_topic is empty")
    assert "MediaPipe is not installed" in warning


def test_engine_runs_mediapipe_on_a_real_photo(body, model, ts, samples):
    pytest.importorskip("mediapipe", reason="needs the [mediapipe] extra")
    image = cv2.cvtColor(cv2.imread(str(samples("messi5.jpg"))), cv2.COLOR_BGR2RGB)
    cfg = replace_path(PipelineConfig(), "detector.kind", "mediapipe")
    try:
        eng, rec, _ = engine_for(body, model, ts, keypoints_topic="", config=cfg)
    except DetectorUnavailable as err:
        pytest.skip(f"mediapipe is installed but unusable: {err}")
    f = RosbagsFactory(ts)
    for k in range(3):  # the tracker confirms a person on the second detection
        eng.on_image(cv.image_to_msg(f, image, 1_000_000_000 + k * 33_000_000, "cam", "rgb8"))
        assert eng.step() is True
    (person,) = rec.msgs[BODIES][-1].bodies
    assert person.id >= 0
    x0, y0, x1, y1 = person.bbox
    assert 40 < (x0 + x1) / 2 < 480 and 40 < (y0 + y1) / 2 < 340  # on the player
    eng.close()


def test_engine_lookahead_publishes_each_body_with_its_own_stamp(body, model, ts, coco):
    """temporal.mode lookahead (issue 18): the node publishes frame t's bodies when frame
    t + d has come in, stamped with frame t's stamp, and nothing while the first d wait."""
    from micro import random_refiner

    from hmr_ros.temporal.refine import WindowSpec
    from hmr_ros.temporal.stage import TemporalStage

    eng, rec, _ = engine_for(body, model, ts)
    eng.pipeline.temporal = TemporalStage(random_refiner(body, model), body,
                                          WindowSpec(past=3, local_past=2, future=2))
    eng.on_camera_info(info_msg(ts))
    stamps = [1_700_000_000_000_000_000 + k * 33_000_000 for k in range(5)]
    published = []
    for k, stamp in enumerate(stamps):
        eng.on_keypoints(kp_msg(ts, stamp, coco + np.float32(k)))
        eng.on_image(image_msg(ts, stamp))
        assert eng.step() is True
        published = [cv.stamp_to_ns(m.header.stamp) for m in rec.msgs.get(BODIES, [])]
        assert published == stamps[: max(0, k - 1)]
    assert [b.id for b in rec.msgs[BODIES][-1].bodies] == [7]
