# ruff: noqa: F811  (the fixtures imported from test_ros_node are used as parameters)
"""ROS4HRI (REP-155) without ROS: the hri_msgs conversions, the node engine's per-body topics
and ids, and skeletons from another ROS4HRI detector as input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_ros_node import (  # noqa: F401
    H,
    K,
    Recorder,
    W,
    coco,
    engine_for,
    image_msg,
    info_msg,
    kp_msg,
    model,
    ts,
)

from hmr_ros.body.joints import SMPL_JOINT_NAMES, map_points
from hmr_ros.data.frame import BodyParams, CameraModel, Keypoints, PersonEstimate
from hmr_ros.messages import hri
from hmr_ros.messages.factory import ConversionError, RosbagsFactory
from hmr_ros.ros.hri_input import SkeletonGather

CAMERA = CameraModel(K, W, H, "cam_optical")


class TopicRecorder(Recorder):
    """The engine's outputs, with REP-155's dynamic topics."""

    def __init__(self):
        super().__init__()
        self.topics: dict[str, list] = {}
        self.removed: list[str] = []

    def publish_topic(self, topic, msgtype, msg):
        self.topics.setdefault(topic, []).append((msgtype, msg))

    def remove_topics(self, prefix):
        self.removed.append(prefix)
        for t in [t for t in self.topics if t.startswith(prefix)]:
            del self.topics[t]


def _person(body, pid=7, keypoints=None):
    pose = torch.zeros(1, 72)
    pose[0, 0] = np.pi
    with torch.inference_mode():
        out = body.forward_axis_angle(pose, torch.zeros(1, 10), torch.tensor([[0, 0.2, 3.0]]))
    params = BodyParams(np.zeros(10, np.float32), np.array([np.pi, 0, 0], np.float32),
                        np.zeros((23, 3), np.float32), np.array([0, 0.2, 3.0], np.float32))
    return PersonEstimate(pid, np.array([80.0, 60.0, 100.0]), np.zeros(3), params,
                          out.joints[0].numpy(), out.points[0].numpy(), None, keypoints, 0.8)


def test_hri_messages_round_trip_through_a_typestore(ts):
    f = RosbagsFactory(ts)
    msgs = [
        (hri.IDS_LIST, hri.ids_to_msg(f, ["b1", "b7"], 5, "cam")),
        (hri.SKELETON, hri.skeleton_to_msg(f, np.full((18, 3), 0.5), 5, "cam")),
        (hri.POSTURE, hri.posture_to_msg(f, 2, 5, "cam")),
    ]
    for typename, msg in msgs:
        back = ts.deserialize_cdr(ts.serialize_cdr(msg, typename), typename)
        assert back.header.stamp.nanosec == 5
    assert back.posture == 2 and back.SITTING == 2  # the constants of hri_msgs' definition
    with pytest.raises(ConversionError, match="0..4"):
        hri.posture_to_msg(f, 9, 0, "cam")


def test_skeleton_points_are_our_joints_projected_through_k(body, coco):
    kp = Keypoints("coco17", coco, np.linspace(0.2, 1.0, 17))
    p = _person(body, keypoints=kp)
    pts = hri.skeleton_points(p, CAMERA)
    assert pts.shape == (18, 3)
    names = hri.get_joint_set(hri.SKELETON_FORMAT).joint_names
    for name in ("right_elbow", "left_wrist", "right_knee", "left_ankle"):
        j = p.joints[SMPL_JOINT_NAMES.index(name)].astype(np.float64)
        u, v, w = K @ j
        i = names.index(name)
        np.testing.assert_allclose(pts[i, :2], [u / w / W, v / w / H], atol=1e-6)
        coco_index = hri.get_joint_set("coco17").joint_names.index(name)
        assert pts[i, 2] == pytest.approx(kp.confidence[coco_index])
    neck = map_points(torch.as_tensor(p.points[None]), hri.SKELETON_FORMAT)[0, 1].numpy()
    u, v, w = K @ neck.astype(np.float64)
    np.testing.assert_allclose(pts[1, :2], [u / w / W, v / w / H], atol=1e-6)
    shoulders = [hri.get_joint_set("coco17").joint_names.index(s)
                 for s in ("left_shoulder", "right_shoulder")]
    assert pts[1, 2] == pytest.approx(min(kp.confidence[shoulders]))
    far = _person(body)
    far = PersonEstimate(**{**far.__dict__, "points": far.points + [5.0, 0, 0]})  # off image
    assert np.all(hri.skeleton_points(far, CAMERA)[:, 2] == 0)
    assert np.all((hri.skeleton_points(far, CAMERA)[:, :2] >= 0)
                  & (hri.skeleton_points(far, CAMERA)[:, :2] <= 1))


def test_skeleton_messages_give_pixels_back(ts):
    pts = np.column_stack([np.linspace(0, 1, 18), np.linspace(1, 0, 18), np.full(18, 0.9)])
    msg = hri.skeleton_to_msg(RosbagsFactory(ts), pts, 1, "cam")
    kp = hri.msg_to_skeleton(msg, 200, 100)
    assert kp.format == "rep155_18"
    np.testing.assert_allclose(kp.xy, pts[:, :2] * [200, 100], atol=1e-4)
    msg.skeleton = msg.skeleton[:5]
    with pytest.raises(ConversionError, match="18"):
        hri.msg_to_skeleton(msg, 200, 100)


def test_roi_and_crop_are_the_box_clipped_to_the_image(body, ts):
    p = PersonEstimate(**{**_person(body).__dict__, "box": np.array([150.0, 20.0, 60.0])})
    roi = hri.roi_to_msg(RosbagsFactory(ts), p, W, H, 0, "cam")
    assert (roi.xmin, roi.ymin, roi.xmax, roi.ymax) == pytest.approx((120 / W, 0.0, 1.0, 50 / H))
    crop = hri.cropped_image(np.zeros((H, W, 3), np.uint8), p)
    assert crop.shape == (50, 40, 3)


def test_ids_are_stable_strings_that_start_with_a_letter():
    ids = hri.HriIds()
    assert ids.name(7) == "b7" and hri.hri_id(0) == "b0"
    n = ids.track("alice")
    assert n >= hri.HriIds.FOREIGN_BASE and ids.track("alice") == n and ids.name(n) == "alice"
    assert ids.track("bob") != n
    with pytest.raises(ConversionError, match="start with a letter"):
        ids.track("7up")
    ids.forget(n)
    assert ids.name(n) == f"b{n}"


def test_the_engine_publishes_rep155_topics_per_body_and_removes_them_when_lost(
        body, model, ts, coco):
    rec = TopicRecorder()
    eng, _, _ = engine_for(body, model, ts)
    eng.outputs = rec
    from hmr_ros.ros.hri_sink import HriSink

    eng.hri = HriSink(eng.factory, rec, eng.hri_ids, eng.pipeline.camera_for)
    eng.on_camera_info(info_msg(ts))  # skeletons are projected through the real K
    for i in range(3):
        stamp = i * 100_000_000
        eng.on_keypoints(kp_msg(ts, stamp, coco, ids=(7,)))
        eng.on_image(image_msg(ts, stamp))
        assert eng.step()
    base = "/humans/bodies/b7/"
    assert {base + n for n in hri.BODY_TOPICS} <= set(rec.topics)
    tracked = rec.topics[hri.TRACKED]
    assert [list(m.ids) for _, m in tracked] == [["b7"]] * 3
    bodies = rec.msgs["bodies"][-1]
    (_, skel), (_, roi) = rec.topics[base + "skeleton2d"][-1], rec.topics[base + "roi"][-1]
    assert skel.header.stamp == bodies.header.stamp == roi.header.stamp
    joints = np.array([[j.x, j.y, j.z] for j in bodies.bodies[0].joints])
    i = SMPL_JOINT_NAMES.index("right_wrist")
    u, v, w = K @ joints[i]
    point = skel.skeleton[hri.get_joint_set("rep155_18").joint_names.index("right_wrist")]
    np.testing.assert_allclose([point.x, point.y], [u / w / W, v / w / H], atol=1e-4)
    assert rec.topics[base + "cropped"][-1][0] == "sensor_msgs/msg/Image"
    assert rec.topics[base + "posture"][-1][1].posture in (0, 1, 2, 3, 4)
    tf = [t.child_frame_id for call in rec.tf_calls for t in call]
    assert "body_b7" in tf and "left_wrist_b7" in tf  # TF and topics name the same body
    # Nobody for longer than the tracker's timeout (1 s): the track ends, its topics go.
    for i in range(3, 30):
        stamp = i * 100_000_000
        eng.on_keypoints(kp_msg(ts, stamp, coco, ids=()))
        eng.on_image(image_msg(ts, stamp))
        eng.step()
    assert base in rec.removed and not any(t.startswith(base) for t in rec.topics)
    assert list(rec.topics[hri.TRACKED][-1][1].ids) == []


def test_skeletons_from_a_ros4hri_detector_are_gathered_per_stamp_with_their_ids(ts):
    f = RosbagsFactory(ts)
    ids = hri.HriIds()
    gather = SkeletonGather(ids)
    gather.tracked(["alice", "bob"])
    pts = np.full((18, 3), 0.5)
    assert gather.add("alice", hri.skeleton_to_msg(f, pts, 100, "cam")) == []  # bob missing
    ((stamp, people),) = gather.add("bob", hri.skeleton_to_msg(f, pts, 100, "cam"))
    assert stamp == 100 and [ids.name(t) for t, _ in people.skeletons] == ["alice", "bob"]
    # bob skips a frame: alice's next frame flushes the older stamp instead of waiting.
    assert gather.add("alice", hri.skeleton_to_msg(f, pts, 200, "cam")) == []
    out = gather.add("alice", hri.skeleton_to_msg(f, pts, 300, "cam"))
    assert [s for s, _ in out] == [200]


def test_ros4hri_skeletons_give_the_same_bodies_as_the_same_keypoints(body, model, ts, coco):
    """hri_input: the skeleton of a body, as another detector would publish it, gives the body
    our own keypoints message gives (same joints through the same crop), named by its id."""
    from hmr_ros.data.frame import Detection

    eng_kp, rec_kp, _ = engine_for(body, model, ts)
    eng_kp.on_camera_info(info_msg(ts))
    # Our keypoints message in the rep155_18 format (what a Skeleton2D carries).
    names17 = hri.get_joint_set("coco17").joint_names
    names18 = hri.get_joint_set("rep155_18").joint_names
    xy18 = np.zeros((18, 2), np.float32)
    for i, n in enumerate(names18):
        if n == "neck":
            xy18[i] = coco[[names17.index("left_shoulder"), names17.index("right_shoulder")]
                           ].mean(0)
        else:
            xy18[i] = coco[names17.index(n)]
    f = RosbagsFactory(ts)
    kp_msg18 = cv_detections(f, [Detection(5, Keypoints("rep155_18", xy18, np.ones(18)))], 7)
    eng_kp.on_keypoints(kp_msg18)
    eng_kp.on_image(image_msg(ts, 7))
    assert eng_kp.step()
    eng_sk, rec_sk, _ = engine_for(body, model, ts, hri_input=True, keypoints_topic="")
    eng_sk.on_camera_info(info_msg(ts))
    eng_sk.on_hri_tracked(["alice"])
    norm = np.c_[xy18 / [W, H], np.ones(18)]
    hri_kp = hri.skeleton_to_msg(f, norm, 7, "cam_optical")
    eng_sk.on_skeleton("alice", hri_kp)
    eng_sk.on_image(image_msg(ts, 7))
    assert eng_sk.step()
    a, b = rec_kp.msgs["bodies"][0].bodies[0], rec_sk.msgs["bodies"][0].bodies[0]
    np.testing.assert_allclose(np.asarray(a.body_pose), np.asarray(b.body_pose), atol=1e-4)
    np.testing.assert_allclose(np.asarray(a.bbox), np.asarray(b.bbox), atol=1e-2)
    tf = [t.child_frame_id for call in rec_sk.tf_calls for t in call]
    assert "body_alice" in tf


def cv_detections(f, dets, stamp):
    from hmr_ros.messages.keypoints import detections_to_msg

    return detections_to_msg(f, dets, stamp, "cam_optical")
