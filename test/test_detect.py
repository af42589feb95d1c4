"""Keypoint sources: the BlazePose joint set, boxes, the 2D error report, the missing-extra
messages, and (with the [mediapipe] extra and Debian's opencv-doc samples) BlazePose on real
photos and a BOA replay of OpenCV's street video vtest.avi."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from micro import MICRO

from hmr_ros.body import BodyModel
from hmr_ros.body.joints import (
    NUM_SOURCE,
    SOURCE_NAMES,
    flip_permutation,
    get_joint_set,
    map_points,
)
from hmr_ros.config import DetectorConfig
from hmr_ros.config.perception import HogConfig
from hmr_ros.data.frame import CameraModel, Detection, Frame, Keypoints
from hmr_ros.detect import (
    DetectorUnavailable,
    box_iou,
    build_stage,
    detection_box,
    keypoint_box,
    resolve_kind,
)
from hmr_ros.eval.keypoint_error import KeypointErrorMeter, person_errors
from hmr_ros.model import HMR, save_checkpoint

# ------------------------------------------------------------------------ blazepose33


def test_blazepose33_layout_follows_mediapipe_and_maps_from_smpl():
    js = get_joint_set("blazepose33")
    assert len(js) == 33
    # MediaPipe's PoseLandmark indices.
    for i, name in {0: "nose", 2: "left_eye", 7: "left_ear", 9: "left_mouth",
                    11: "left_shoulder", 16: "right_wrist", 19: "left_index",
                    22: "right_thumb", 23: "left_hip", 28: "right_ankle", 29: "left_heel",
                    32: "right_foot_index"}.items():
        assert js.joint_names[i] == name
    m = js.matrix()
    assert m.shape == (33, NUM_SOURCE)
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert set(js.approximate) <= set(js.joint_names)
    perm = flip_permutation(js.joint_names)
    assert js.joint_names[perm[js.index("left_mouth")]] == "right_mouth"
    assert [perm[p] for p in perm] == list(range(33))

    body = BodyModel()
    out = body.forward_axis_angle(torch.zeros(1, 72), torch.zeros(1, 10))
    pts = map_points(out.points, js)[0].numpy()  # SMPL frame: +x body's left, +y up
    p = {n: pts[i] for i, n in enumerate(js.joint_names)}
    src = out.points[0].numpy()
    neck = src[12]
    # Eye corners in order across the face (right outer ... left outer).
    xs = [p[n][0] for n in ("right_eye_outer", "right_eye", "right_eye_inner",
                            "left_eye_inner", "left_eye", "left_eye_outer")]
    assert xs == sorted(xs)
    # Mouth corners below the nose, above the neck, on their own sides.
    for side, sign in (("left", 1.0), ("right", -1.0)):
        mouth = p[f"{side}_mouth"]
        assert neck[1] < mouth[1] < p["nose"][1]
        assert sign * mouth[0] > 0.01
        # Knuckles lie between the wrist and the finger tips (arms out along x at rest).
        wrist_x = p[f"{side}_wrist"][0]
        tip_x = src[SOURCE_NAMES.index(f"{side}_index")][0]
        assert 0.0 < abs(p[f"{side}_index"][0] - wrist_x) < abs(tip_x - wrist_x)
    assert Keypoints("blazepose33", np.zeros((33, 2)), np.ones(33)).format == "blazepose33"


def test_blazepose_keypoints_travel_in_our_messages_and_get_tracked():
    from hmr_ros import messages as cv
    from hmr_ros.detect import DetectionStage, Tracker
    from hmr_ros.messages.definitions import hmr_typestore
    from hmr_ros.messages.factory import RosbagsFactory

    ts = hmr_typestore("humble")
    rng = np.random.default_rng(1)
    dets = [Detection(-1, Keypoints("blazepose33", rng.uniform(x, x + 60, (33, 2)),
                                    rng.uniform(0.3, 1.0, 33))) for x in (0.0, 200.0)]
    msg = cv.detections_to_msg(RosbagsFactory(ts), dets, 1, "cam")
    msg = ts.deserialize_cdr(ts.serialize_cdr(msg, "hmr_ros/msg/Keypoints2DArray"),
                             "hmr_ros/msg/Keypoints2DArray")
    back = cv.msg_to_detections(msg)
    assert [d.keypoints.format for d in back] == ["blazepose33"] * 2
    np.testing.assert_allclose(back[1].keypoints.xy, dets[1].keypoints.xy, rtol=1e-6)
    # Unknown ids travel as 0; two people with the same id are handed to the tracker.
    assert [d.id for d in back] == [0, 0]
    out = DetectionStage(tracker=Tracker(min_hits=1)).process(
        Frame(np.zeros((4, 4, 3), np.uint8), 1, None, back))
    assert [d.id for d in out.detections] == [1, 2]


# ------------------------------------------------------------------------ boxes, errors


def test_boxes_from_keypoints_and_iou():
    kp = Keypoints("coco17", np.array([[10.0, 20.0]] * 8 + [[50.0, 120.0]] * 9),
                   np.r_[np.ones(16), 0.0])
    box = keypoint_box(kp, 0.2, pad=0.1)
    np.testing.assert_allclose(box, [0.0, 10.0, 60.0, 130.0])  # 10 % of the 100 px extent
    assert keypoint_box(Keypoints("coco17", np.zeros((17, 2)), np.zeros(17))) is None
    assert detection_box(Detection(-1, kp, np.array([1, 2, 3, 4.0]))).tolist() == [1, 2, 3, 4]
    iou = box_iou(np.array([[0, 0, 10, 10.0]]), np.array([[5, 0, 15, 10.0], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1 / 3, 0.0]])


def test_keypoint_error_is_the_pixel_distance_of_projected_joints():
    camera = CameraModel.from_focal(500.0, 640, 480)
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-0.5, 0.5, (NUM_SOURCE, 2)), rng.uniform(3.0, 4.0, NUM_SOURCE)]
    js = get_joint_set("coco17")
    mapped = js.matrix() @ points
    uv = mapped[:, :2] / mapped[:, 2:] * 500.0 + np.array([319.5, 239.5])
    conf = np.ones(17, np.float32)
    conf[3] = 0.1  # below the threshold: not counted even though it is far off
    xy = uv + np.array([3.0, 4.0])  # 5 px off everywhere
    xy[3] += 100.0
    person = SimpleNamespace(id=4, keypoints=Keypoints("coco17", xy, conf), points=points,
                             box=np.array([320.0, 240.0, 200.0]))
    (err,) = person_errors([person], camera, threshold=0.2)
    assert err.id == 4 and err.joints == 16
    assert err.px == pytest.approx(5.0, abs=1e-3)
    assert err.normalised == pytest.approx(5.0 / 200.0, abs=1e-5)
    meter = KeypointErrorMeter(0.2)
    assert meter.add(0, [person], camera) == pytest.approx(5.0, abs=1e-3)
    assert meter.add(1, [], camera) is None
    s = meter.summary()
    assert s["frames"] == 1 and s["people"] == 1 and s["mean_px"] == pytest.approx(5.0, 1e-3)
    assert KeypointErrorMeter().summary()["mean_px"] is None


# ------------------------------------------------------------------------ missing extras


def test_missing_mediapipe_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import fails as if not installed
    cfg = DetectorConfig(kind="mediapipe")
    with pytest.raises(DetectorUnavailable, match=r'pip install -e "\.\[mediapipe\]"'):
        build_stage(cfg, input_has_keypoints=False, required=True)
    # auto on a bag (keypoints optional): a warning, and the stage runs without a detector.
    stage, what = build_stage(DetectorConfig(kind="auto"), False, required=False)
    assert stage.source is None and what == "no keypoint detector"
    with pytest.raises(DetectorUnavailable, match="mediapipe"):
        build_stage(DetectorConfig(kind="auto"), False, required=True)


def test_missing_hog_points_to_opencv_contrib(monkeypatch):
    import cv2

    from hmr_ros.detect.hog import HogPeopleDetector

    monkeypatch.delattr(cv2, "HOGDescriptor", raising=False)
    with pytest.raises(DetectorUnavailable, match="opencv-contrib-python"):
        HogPeopleDetector()
    assert resolve_kind(DetectorConfig(), input_has_keypoints=False) == "mediapipe"
    assert resolve_kind(DetectorConfig(), input_has_keypoints=True) == "none"
    assert resolve_kind(DetectorConfig(kind="mediapipe_hog"), True) == "mediapipe_hog"


# ------------------------------------------------------------------------ real images

def _blazepose(**kw):
    pytest.importorskip("mediapipe", reason="needs the [mediapipe] extra: "
                                            "pip install -e \".[mediapipe]\"")
    from hmr_ros.detect.mediapipe_pose import BlazePoseWhole
    from hmr_ros.detect.multi_pose import BlazePoseBoxes

    try:
        return (BlazePoseBoxes if kw.pop("boxes", False) else BlazePoseWhole)(**kw)
    except DetectorUnavailable as err:
        pytest.skip(f"mediapipe is installed but unusable: {err}")


def _rgb(path: Path) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def test_blazepose_finds_the_person_in_a_photo(samples):
    image = _rgb(samples("messi5.jpg"))  # 548 x 342, a footballer kicking, arms spread
    det = _blazepose(static=True)
    try:
        (person,) = det.detect(image, 0)
    finally:
        det.close()
    kp = person.keypoints
    assert kp.format == "blazepose33"
    seen = kp.confidence > 0.5
    assert seen.sum() >= 28
    # The player, hand-labelled: fingertips to boots (x), hair to boots (y).
    x0, y0, x1, y1 = 60, 55, 470, 340
    xy = kp.xy[seen]
    assert np.all((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))
    js = get_joint_set("blazepose33")
    at = {n: kp.xy[js.index(n)] for n in ("nose", "left_wrist", "right_wrist",
                                           "left_ankle", "right_ankle", "left_hip")}
    assert 220 < at["nose"][0] < 285 and 75 < at["nose"][1] < 135  # the head
    assert at["left_wrist"][0] > 320 and at["right_wrist"][0] < 140  # his left is our right
    assert min(at["left_ankle"][1], at["right_ankle"][1]) > at["left_hip"][1] + 20
    assert person.box[0] < at["right_wrist"][0] and person.box[2] > at["left_ankle"][0]


@pytest.mark.parametrize("thread", [False, True], ids=["hog_inline", "hog_thread"])
def test_blazepose_in_hog_boxes_finds_each_walker_in_a_street_video(samples, thread):
    from hmr_ros.data.video import VideoReader
    from hmr_ros.stream.sources import video_frames

    with VideoReader(samples("vtest.avi"), limit=1) as video:
        frame = next(video_frames(video))
    det = _blazepose(boxes=True, cfg=DetectorConfig(hog=HogConfig(thread=thread)))
    try:
        found = det.detect(frame.image, frame.stamp_ns)
        if thread:  # HOG's boxes reach the frame after its run: nobody is known yet
            assert found == [] and det.hog_thread.wait_idle()
            found = det.detect(frame.image, frame.stamp_ns + 1)
        assert det.followers.started == len(found)  # every person found is followed
    finally:
        det.close()
    # The three people walking in the first frame, hand-labelled (x0, y0, x1, y1).
    people = [(250, 215, 290, 312), (495, 155, 532, 236), (635, 240, 688, 324)]
    assert len(found) == 3
    for x0, y0, x1, y1 in people:
        inside = []
        for d in found:
            xy = d.keypoints.xy[d.keypoints.confidence > 0.5]
            inside.append(np.mean((xy[:, 0] >= x0 - 6) & (xy[:, 0] <= x1 + 6)
                                  & (xy[:, 1] >= y0 - 6) & (xy[:, 1] <= y1 + 6)))
        assert max(inside) >= 0.9, (x0, y0, inside)


def test_boa_replay_of_a_real_street_video(samples, tmp_path, capsys):
    """The first 1.2 s of vtest.avi with BOA on: detection, tracking, adaptation and the
    overlay video end to end, and the held-out 2D error report (random micro regressor:
    the numbers are a smoke test, not a result)."""
    video = samples("vtest.avi")
    _blazepose(static=True).close()  # skip early when MediaPipe is missing or broken
    from hmr_ros.cli import main

    torch.manual_seed(0)
    weights = tmp_path / "micro.pt"
    save_checkpoint(weights, HMR(MICRO))
    out = tmp_path / "vtest"
    assert main(["replay", str(video), "--out", str(out), "--limit", "12", "--weights",
                 str(weights), "--protocol", "before", "--detector", "mediapipe_hog",
                 "--set", "adapt.method=boa_1st", "--set", "adapt.min_keypoints=4"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("assumed 60 deg horizontal field of view") == 1
    assert "2D keypoint error over" in printed
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["input_kind"] == "video" and summary["frames"] == 12
    assert len(summary["detection"]["ids"]) >= 3 and summary["people"] >= 25
    assert summary["adaptation"]["steps"] >= 10
    rep = summary["keypoint_error"]
    assert rep["held_out"] and rep["protocol"] == "before"
    for name in ("frozen", "adapted"):
        assert rep[name]["frames"] >= 10 and np.isfinite(rep[name]["mean_px"])
    assert (out / "overlay.mp4").stat().st_size > 10_000
    assert (out / "overlay.png").is_file()
