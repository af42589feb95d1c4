"""The one rule that turns every input into Frames (stream/frames.py): the same frames from
the node's live path (FrameSync + FrameAssembler) and from a bag (bag_frames)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hmr_ros import messages as cv
from hmr_ros.data.frame import CameraModel, Detection, Keypoints
from hmr_ros.messages.bag import BagReader, BagWriter, detect_topics
from hmr_ros.messages.definitions import hmr_typestore
from hmr_ros.messages.factory import RosbagsFactory
from hmr_ros.stream.frames import (
    DEFAULT_FRAME,
    FrameAssembler,
    FrameSync,
    RawImage,
    bag_frames,
    nearest_stamp,
)

W, H = 40, 30
K = np.array([[50.0, 0, (W - 1) / 2], [0, 50.0, (H - 1) / 2], [0, 0, 1]])
MS = 1_000_000


@pytest.fixture(scope="module")
def factory():
    return RosbagsFactory(hmr_typestore())


def image(f, stamp, frame_id="cam", value=50, w=W, h=H):
    return cv.image_to_msg(f, np.full((h, w, 3), value, np.uint8), stamp, frame_id)


def keypoints(f, stamp, pid=3):
    xy = np.linspace(5, 25, 34, dtype=np.float32).reshape(17, 2)
    return cv.detections_to_msg(f, [Detection(pid, Keypoints("coco17", xy, np.ones(17)))],
                                stamp, "cam")


def info(f, w=W, h=H, frame_id="cam_info_frame"):
    return cv.camera_to_msg(f, CameraModel(K, w, h, frame_id), 0)


def test_nearest_stamp_is_the_one_matching_rule():
    assert nearest_stamp(100, [90, 104, 97], 5) == 2
    assert nearest_stamp(100, [90, 106], 5) is None
    assert nearest_stamp(100, [100, 100], 0) == 0  # the first of equals
    assert nearest_stamp(100, [], 10) is None


def test_frame_id_rule(factory, caplog):
    a = FrameAssembler()
    assert a.frame(RawImage(image(factory, 1, "left"))).frame_id == "left"
    with caplog.at_level(logging.WARNING, logger="hmr_ros"):
        assert a.frame(RawImage(image(factory, 2, ""))).frame_id == DEFAULT_FRAME
        a.camera_info(info(factory))
        assert a.frame(RawImage(image(factory, 3, ""))).frame_id == "cam_info_frame"
    assert caplog.text.count("empty header.frame_id") == 1  # once, not per image
    over = FrameAssembler(camera_frame="robot_cam")
    over.camera_info(info(factory))
    assert over.frame(RawImage(image(factory, 4, "left"))).frame_id == "robot_cam"


def test_camera_rule_and_counted_skips(factory, caplog):
    a = FrameAssembler()
    assert a.frame(RawImage(image(factory, 1))).camera is None  # none received yet
    a.camera_info(info(factory, w=2 * W, h=2 * H))
    with caplog.at_level(logging.WARNING, logger="hmr_ros"):
        assert a.frame(RawImage(image(factory, 2))).camera is None  # another size
    assert a.skipped["camera_size"] == 1 and "ignoring CameraInfo" in caplog.text
    a.camera_info(info(factory))
    fr = a.frame(RawImage(image(factory, 3)))
    np.testing.assert_array_equal(fr.camera.K, K)
    bad = info(factory)
    bad.k = np.zeros(9)
    assert a.camera_info(bad) is None and a.skipped["camera_info"] == 1
    assert a.camera is not None  # the last good one stays
    broken = image(factory, 4)
    broken.encoding = "yuv422"
    assert a.frame(RawImage(broken), index=7) is None
    assert a.skipped["image"] == 1 and "image 7: " in caplog.text
    kp = keypoints(factory, 5)
    kp.people[0].format = "nonsense"
    fr = a.frame(RawImage(image(factory, 5)), kp)
    assert fr.detections == () and a.skipped["keypoints"] == 1


def _bag(tmp_path, factory, offsets_ms):
    """Images at 0, 100, 200 ms; keypoints logged after them, stamped off by `offsets_ms`."""
    path = tmp_path / "b"
    with BagWriter(path) as w:
        w.write("/cam/camera_info", "sensor_msgs/msg/CameraInfo", info(factory), 0)
        for i in range(len(offsets_ms)):
            t = i * 100 * MS
            w.write("/cam/image_raw", "sensor_msgs/msg/Image", image(factory, t, value=i), t)
        for i, off in enumerate(offsets_ms):
            t = i * 100 * MS
            w.write("/cam/keypoints", "hmr_ros/msg/Keypoints2DArray",
                    keypoints(factory, t + off * MS, pid=10 + i), t + 50 * MS)
    return path


def test_bags_match_keypoints_with_the_nodes_tolerance(tmp_path, factory):
    path = _bag(tmp_path, factory, [0, 3, -4])
    with BagReader(path) as r:
        exact = list(bag_frames(r, detect_topics(r), tolerance_ns=0))
        near = list(bag_frames(r, detect_topics(r), tolerance_ns=5 * MS))
    assert [len(f.detections) for f in exact] == [1, 0, 0]
    assert [f.detections[0].id for f in near] == [10, 11, 12]


def test_the_node_and_a_bag_make_the_same_frames(tmp_path, factory):
    """The same messages through the live path and through a bag give equal frames."""
    offsets = [0, 2, -1]
    path = _bag(tmp_path, factory, offsets)
    with BagReader(path) as r:
        from_bag = list(bag_frames(r, detect_topics(r), tolerance_ns=2 * MS))
    live = FrameAssembler()
    sync = FrameSync(2 * MS, image_buffer=4)
    live.camera_info(info(factory))
    from_node = []
    for i, off in enumerate(offsets):
        t = i * 100 * MS
        sync.add_image(t, RawImage(image(factory, t, value=i)))
        sync.add_keypoints(t + off * MS, keypoints(factory, t + off * MS, pid=10 + i))
        m = sync.pop()
        from_node.append(live.frame(m.image, m.keypoints, i, stamp_ns=m.stamp_ns))
    assert len(from_bag) == len(from_node) == 3
    for a, b in zip(from_bag, from_node):
        assert a.stamp_ns == b.stamp_ns and a.index == b.index and a.frame_id == b.frame_id
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.camera.K, b.camera.K)
        assert [d.id for d in a.detections] == [d.id for d in b.detections]
        np.testing.assert_array_equal(a.detections[0].keypoints.xy,
                                      b.detections[0].keypoints.xy)
