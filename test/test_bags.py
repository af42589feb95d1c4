"""Bags: synthetic streams round-trip exactly; every real ROS 2 fixture bag opens or says why."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from hmr_ros.cli import main
from hmr_ros.messages.bag import BagError, BagReader, BagWriter, detect_topics
from hmr_ros.messages.definitions import hmr_typestore
from hmr_ros.messages.factory import RosbagsFactory
from hmr_ros.messages.image import image_to_msg
from hmr_ros.stream.frames import FrameAssembler, bag_frames
from hmr_ros.world.domain import load_domain
from hmr_ros.world.scene import SyntheticSequence

# Bags written by real ROS 2 (Foxy to Rolling), copied with their licences and README.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rosbag2"


@pytest.fixture(scope="module")
def stream_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("bags") / "robot"
    assert main(["synth", "--domain", "robot_cam", "--seed", "4", "--duration", "0.3",
                 "--out", str(out)]) == 0
    return out


def test_synth_bag_decodes_with_anyreader_to_the_rendered_frames(stream_bag):
    seq = SyntheticSequence(load_domain("robot_cam"), seed=4, duration_s=0.3)
    assert len(seq) == 9
    ts = hmr_typestore()
    with AnyReader([stream_bag], default_typestore=ts) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {
            "/camera/image_raw": "sensor_msgs/msg/Image",
            "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
            "/camera/keypoints": "hmr_ros/msg/Keypoints2DArray",
            "/ground_truth/bodies": "hmr_ros/msg/SMPLBodyArray",
        }
        seen = {t: 0 for t in topics}
        for conn, stamp, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            i = seen[conn.topic]
            seen[conn.topic] += 1
            sf = seq.frame(i)
            assert stamp == sf.frame.stamp_ns == msg.header.stamp.sec * 10**9 \
                + msg.header.stamp.nanosec
            if conn.topic == "/camera/image_raw":
                assert msg.encoding == "rgb8" and msg.step == msg.width * 3
                img = np.asarray(msg.data).reshape(msg.height, msg.width, 3)
                assert np.array_equal(img, sf.frame.image)
            elif conn.topic == "/camera/camera_info":
                np.testing.assert_array_equal(np.asarray(msg.k).reshape(3, 3), seq.camera.K)
            elif conn.topic == "/camera/keypoints":
                (person,) = msg.people
                kp = sf.people[0].keypoints
                assert person.format == kp.format and person.id == 1
                np.testing.assert_array_equal(np.asarray(person.x), kp.xy[:, 0])
                np.testing.assert_array_equal(np.asarray(person.confidence), kp.confidence)
            else:
                (body,) = msg.bodies
                truth = sf.people[0]
                np.testing.assert_array_equal(np.asarray(body.betas), truth.params.betas)
                np.testing.assert_array_equal(np.asarray(body.body_pose).reshape(23, 3),
                                              truth.params.body_pose)
                assert body.translation.z == pytest.approx(float(truth.params.transl[2]))
                joints = np.array([[p.x, p.y, p.z] for p in body.joints])
                np.testing.assert_allclose(joints, truth.points3d[:24], atol=1e-6)
        assert all(n == 9 for n in seen.values())


def test_frames_from_a_bag_equal_the_stream(stream_bag):
    seq = SyntheticSequence(load_domain("robot_cam"), seed=4, duration_s=0.3)
    with BagReader(stream_bag) as reader:
        frames = list(bag_frames(reader, detect_topics(reader)))
    assert [f.index for f in frames] == list(range(9))
    for fr in frames:
        ref = seq.frame(fr.index).frame
        assert np.array_equal(fr.image, ref.image) and fr.stamp_ns == ref.stamp_ns
        np.testing.assert_array_equal(fr.camera.K, ref.camera.K)
        assert [d.id for d in fr.detections] == [d.id for d in ref.detections]
        np.testing.assert_array_equal(fr.ground_truth[1].transl, ref.ground_truth[1].transl)


def test_topic_detection_errors_list_the_topics(tmp_path):
    bag = tmp_path / "two_images"
    with BagWriter(bag) as w:
        f = w.factory
        img = np.zeros((4, 6, 3), np.uint8)
        for topic in ("/left/image_raw", "/right/image_raw"):
            w.write(topic, "sensor_msgs/msg/Image", image_to_msg(f, img, 5, "cam"), 5)
    with BagReader(bag) as r:
        with pytest.raises(BagError, match="several image topics"):
            detect_topics(r)
        assert detect_topics(r, image="/left/image_raw").image == "/left/image_raw"
        with pytest.raises(BagError, match=r"not in .*topics: /left/image_raw"):
            detect_topics(r, image="/nope")


def test_bad_images_are_skipped_not_fatal(tmp_path, caplog):
    bag = tmp_path / "mixed"
    ts = hmr_typestore()
    f = RosbagsFactory(ts)
    good = image_to_msg(f, np.full((4, 6, 3), 7, np.uint8), 1, "cam")
    bad = ts.types["sensor_msgs/msg/Image"](header=good.header, height=4, width=6,
                                            encoding="yuv422", is_bigendian=0, step=12,
                                            data=np.zeros(48, np.uint8))
    with BagWriter(bag) as w:
        w.write("/cam/image_raw", "sensor_msgs/msg/Image", good, 1)
        w.write("/cam/image_raw", "sensor_msgs/msg/Image", bad, 2)
        w.write("/cam/image_raw", "sensor_msgs/msg/Image", bad, 3)
        w.write("/cam/image_raw", "sensor_msgs/msg/Image", good, 4)
    assembler = FrameAssembler()
    with caplog.at_level(logging.WARNING, logger="hmr_ros"), BagReader(bag) as r:
        frames = list(bag_frames(r, detect_topics(r), assembler))
    assert len(frames) == 2 and frames[0].camera is None
    assert "unsupported image encoding 'yuv422'" in caplog.text
    # Skips are counted and named by their own position (it said "image 0" every time); the
    # frame after them keeps its place, a gap the evaluator's ACCEL respects.
    assert assembler.skipped == {"image": 2, "keypoints": 0, "camera_info": 0, "camera_size": 0}
    assert "image 1: " in caplog.text and "image 2: " in caplog.text
    assert [f.index for f in frames] == [0, 3]


def test_writer_refuses_to_overwrite(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="already exists"):
        BagWriter(tmp_path / "exists")
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "missing")
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError, match="cannot open"):
        BagReader(junk)


# What each real ROS 2 fixture holds and how much of it we decode (see its README).
EXPECTED = {
    "foxy_v4_sqlite3_zstd_file_split": ("anyreader", 775, 775),
    "humble_v5_sqlite3_sensor_msgs": ("anyreader", 34, 34),
    "iron_v7_mcap_test_msgs": ("anyreader", 7, 7),
    # The service events' types are stored under the srv name: rosbags cannot decode them.
    "rolling_v8_sqlite3_topics_services": ("anyreader", 10, 2),
    # AnyReader cannot parse the service-event schema; the low-level reader opens the bag and
    # the String topics' embedded definitions decode.
    "rolling_v8_mcap_topics_services": ("rosbag2", 10, 2),
    # storage_identifier '' after `ros2 bag reindex`, and an IDL schema rosbags cannot parse:
    # opens through the bare .mcap, 100 messages listed, none decodable without the type.
    "reindexed_v5_mcap_event_camera": ("rosbag2", 100, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_real_fixture_opens_or_says_why(name, caplog):
    path = FIXTURES / name
    mode, listed, decoded = EXPECTED[name]
    with caplog.at_level(logging.WARNING, logger="hmr_ros"), BagReader(path) as r:
        assert r.mode == mode
        assert sum(t.count for t in r.topics()) == listed
        got = sum(1 for _ in r.messages([t.name for t in r.topics()]))
        assert got == decoded
        if decoded < listed:
            assert "skipping undecodable messages" in caplog.text
        # None of them holds images: the frame reader says so and lists the topics.
        with pytest.raises(BagError, match="no sensor_msgs/msg/Image") as err:
            detect_topics(r)
        assert r.topics()[0].name in str(err.value)
