"""Video files, image folders and (through a file standing in for it) the webcam command:
reading, default intrinsics, `hmr-ros replay VIDEO` with tracked people and the 2D error
report, `hmr-ros live`, and the detector configuration."""

from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest

from hmr_ros.cli import main
from hmr_ros.config import ConfigError, PipelineConfig, replace_path
from hmr_ros.data.video import (
    DEFAULT_HFOV_DEG,
    VideoError,
    VideoReader,
    focal_from_hfov,
    input_kind,
)
from hmr_ros.detect import GroundTruthSource
from hmr_ros.replay import replay
from hmr_ros.stream.sources import video_frames
from hmr_ros.world.domain import load_domain
from hmr_ros.world.scene import SyntheticSequence


def _colour_frames(n: int, w: int = 96, h: int = 64) -> list[np.ndarray]:
    """RGB frames: frame k is filled with red = 20 k, green = 200, blue = 40."""
    return [np.full((h, w, 3), (20 * k, 200, 40), np.uint8) for k in range(n)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 6-frame 96x64 MJPG .avi at 5 fps."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (96, 64))
    assert writer.isOpened()
    for rgb in _colour_frames(6):
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    writer.release()
    return path


def test_default_focal_is_a_60_degree_field_of_view():
    assert DEFAULT_HFOV_DEG == 60.0
    assert focal_from_hfov(640) == pytest.approx(320.0 / math.tan(math.radians(30.0)))
    assert focal_from_hfov(640) == pytest.approx(554.26, abs=0.01)
    assert focal_from_hfov(1000, 90.0) == pytest.approx(500.0)
    with pytest.raises(ValueError):
        focal_from_hfov(640, 180.0)


def test_input_kinds(tmp_path, clip):
    assert input_kind(0) == input_kind("2") == "camera"
    assert input_kind("rtsp://robot/stream") == "stream"
    assert input_kind(clip) == "video"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "metadata.yaml").write_text("x")
    assert input_kind(tmp_path / "b") == "bag"
    (tmp_path / "x.mcap").write_bytes(b"")
    assert input_kind(tmp_path / "x.mcap") == "bag"
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="neither a rosbag2 nor image"):
        input_kind(tmp_path / "empty")
    with pytest.raises(VideoError, match="does not exist"):
        input_kind(tmp_path / "nope.mp4")


def test_video_file_frames_are_rgb_with_stamps_and_a_default_camera(clip):
    with VideoReader(clip) as video:
        info = video.info
        frames = list(video_frames(video))
    assert (info.kind, info.width, info.height, info.fps, info.frames) == ("video", 96, 64,
                                                                           5.0, 6)
    assert "60 deg" in info.focal_note and "--focal" in info.focal_note
    assert len(frames) == 6
    for k, f in enumerate(frames):
        assert f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8
        assert f.index == k and f.stamp_ns == k * 200_000_000
        np.testing.assert_allclose(f.image[32, 48], (20 * k, 200, 40), atol=12)  # RGB order
        assert f.camera.focal == pytest.approx(focal_from_hfov(96))
        assert f.camera.K[0, 2] == pytest.approx(47.5) and f.detections == ()
    with VideoReader(clip, focal=300.0, limit=2) as video:
        assert [f.camera.focal for f in video_frames(video)] == [300.0, 300.0]
        assert video.info.frames == 2 and "given" in video.info.focal_note


def test_latest_mode_takes_the_newest_image_and_drops_the_rest(clip):
    # Cameras are read this way; a file stands in. A reader that takes 0.2 s per image gets
    # the newest decoded one each time, in order, ending with the last.
    import time

    with VideoReader(clip, latest=True) as video:
        reds = []
        for f in video_frames(video):
            reds.append(int(f.image[32, 48, 0]))
            assert abs(f.stamp_ns - time.time_ns()) < 5e9  # wall-clock stamps
            time.sleep(0.2)
        dropped = video.dropped
    assert reds == sorted(reds) and abs(reds[-1] - 100) <= 12
    assert len(reds) + dropped == 6 and dropped >= 1


def test_a_bag_is_not_a_video(tmp_path):
    (tmp_path / "metadata.yaml").write_text("x")
    with pytest.raises(VideoError, match="rosbag2"):
        VideoReader(tmp_path)


def test_image_folder_in_natural_order(tmp_path):
    for k, rgb in enumerate(_colour_frames(3)):
        cv2.imwrite(str(tmp_path / f"frame{[10, 2, 1][k]}.png"), rgb[:, :, ::-1])
    (tmp_path / "notes.txt").write_text("not an image")
    with VideoReader(tmp_path, fps=4.0) as video:
        frames = list(video_frames(video))
        assert video.info.kind == "images" and video.info.frames == 3
    # frame1, frame2, frame10: written as colours 2, 1, 0.
    assert [int(f.image[0, 0, 0]) for f in frames] == [40, 20, 0]
    assert [f.stamp_ns for f in frames] == [0, 250_000_000, 500_000_000]
    # One image is a one-frame input.
    assert input_kind(tmp_path / "frame2.png") == "images"
    with VideoReader(tmp_path / "frame2.png") as video:
        (one,) = list(video_frames(video))
    assert int(one.image[0, 0, 0]) == 20 and video.info.frames == 1


def test_unreadable_images_in_a_folder_are_counted_skips(tmp_path, caplog):
    """One 0-byte PNG (sorted first) ended the whole run; later skips were not counted."""
    for k, rgb in enumerate(_colour_frames(3)):
        cv2.imwrite(str(tmp_path / f"frame{k + 1}.png"), rgb[:, :, ::-1])
    (tmp_path / "frame0.png").write_bytes(b"")
    (tmp_path / "frame2.png").write_bytes(b"\x89PNG truncated")
    with caplog.at_level("WARNING", logger="hmr_ros"), VideoReader(tmp_path, fps=4.0) as video:
        frames = list(video_frames(video))
        assert video.skipped == 2
    # frame1 and frame3 survive; indices and stamps keep their place in the folder.
    assert [f.index for f in frames] == [1, 3]
    assert [f.stamp_ns for f in frames] == [250_000_000, 750_000_000]
    assert caplog.text.count("skipped (") == 2 and "frame0.png" in caplog.text
    for p in tmp_path.glob("*.png"):
        p.write_bytes(b"")
    with pytest.raises(VideoError, match="none of the 4 images"):
        VideoReader(tmp_path)


def _synthetic_folder(tmp_path, seconds: float = 0.8):
    """Two people of a robot_cam stream (half size, 10 fps), written as PNG frames; the
    stream itself serves as the keypoint source."""
    d = load_domain("robot_cam")
    d = dataclasses.replace(d, fps=10.0, image=dataclasses.replace(d.image, render_scale=0.5),
                            scene=dataclasses.replace(d.scene, occluders_per_10s=0.0))
    seq = SyntheticSequence(d, seed=5, duration_s=seconds, n_people=2, spacing=1.4)
    folder = tmp_path / "frames"
    folder.mkdir()
    source = GroundTruthSource(seq, start_ns=0)
    for f in source.frames():
        cv2.imwrite(str(folder / f"{f.index:04d}.png"), f.image[:, :, ::-1])
    return seq, folder, source


def test_replay_of_a_video_tracks_people_and_reports_the_2d_error(tmp_path, weights, capsys):
    seq, folder, source = _synthetic_folder(tmp_path)
    cfg = replace_path(PipelineConfig(), "inference.weights", str(weights))
    cfg = replace_path(cfg, "detector.focal", float(seq.camera.focal))
    cfg = replace_path(cfg, "adapt.method", "boa_1st")
    cfg = replace_path(cfg, "adapt.min_keypoints", 4)
    out = tmp_path / "out"
    summary = replay(folder, out, cfg, protocol="before", keypoint_source=source, fps=10.0,
                     progress=False)
    printed = capsys.readouterr().out
    assert f"focal {seq.camera.focal:.1f} px given" in printed
    assert "people: keypoints from ground_truth" in printed
    assert summary["input_kind"] == "images" and summary["frames"] == 8
    # Two people, tracked from their second frame on (min_hits 2), ids 1 and 2.
    assert summary["detection"]["ids"] == [1, 2] and summary["people"] == 14
    assert summary["adaptation"]["steps"] == 7
    rep = json.loads((out / "metrics.json").read_text())["keypoint_error"]
    assert rep["held_out"] and rep["protocol"] == "before" and rep["threshold"] == 0.2
    for name in ("frozen", "adapted"):
        assert rep[name]["frames"] == 7 and rep[name]["people"] == 14
        assert 0 < rep[name]["mean_px"] < 1e4 and len(rep[name]["thirds_px"]) == 3
    frozen, adapted = rep["frozen"]["per_frame_px"], rep["adapted"]["per_frame_px"]
    assert [i for i, _ in frozen] == [i for i, _ in adapted] == list(range(1, 8))
    # Frame 1 was predicted before any adaptation step: both models are the same there;
    # from frame 2 on the adapted one has changed.
    assert adapted[0][1] == pytest.approx(frozen[0][1], rel=1e-5)
    assert all(a[1] != pytest.approx(f[1], rel=1e-6) for a, f in zip(adapted[1:], frozen[1:]))
    assert "2D keypoint error over 7 frames (held out" in printed
    assert (out / "overlay.png").is_file() and (out / "estimates").is_dir()


def test_replay_of_a_video_without_a_detector_still_runs(tmp_path, clip, weights, capsys):
    out = tmp_path / "none"
    assert main(["replay", str(clip), "--out", str(out), "--weights", str(weights),
                 "--detector", "none", "--no-video", "--focal", "100"]) == 0
    printed = capsys.readouterr().out
    assert "focal 100.0 px given" in printed and "people: no keypoint detector" in printed
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frames"] == 6 and summary["people"] == 0
    assert summary["keypoint_error"]["adapted"]["frames"] == 0


def test_live_reads_a_camera_stand_in_and_stops_after_k_frames(tmp_path, clip, weights,
                                                               capsys):
    out = tmp_path / "live"
    assert main(["live", "--camera", str(clip), "--frames", "4", "--detector", "none",
                 "--out", str(out), "--weights", str(weights), "--no-adapt"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("no intrinsics known: focal 83.1 px") == 1
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frames"] == 4 and summary["input_kind"] == "video"
    assert (out / "overlay.png").is_file()


def test_detector_config_is_validated():
    cfg = PipelineConfig()
    assert cfg.detector.kind == "auto" and cfg.detector.tracker.min_hits == 2
    assert replace_path(cfg, "detector.kind", "mediapipe_hog").detector.kind == "mediapipe_hog"
    for key, value in (("detector.kind", "yolo"), ("detector.focal", -1.0),
                       ("detector.default_hfov_deg", 200.0), ("detector.tracker.min_hits", 0),
                       ("detector.model_complexity", 3), ("detector.hog.every", 0)):
        with pytest.raises(ConfigError, match="detector"):
            replace_path(cfg, key, value)
