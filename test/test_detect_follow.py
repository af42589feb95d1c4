"""Multi-person BlazePose at camera rate: people followed by their own graph, HOG proposals
in their own thread, proposals already covered not searched again."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hmr_ros.config import DetectorConfig
from hmr_ros.config.coerce import ConfigError
from hmr_ros.config.perception import HogConfig
from hmr_ros.detect.base import box_iou, box_overlap
from hmr_ros.detect.follow import RECENTRE, Follower


def test_box_overlap_is_one_when_a_box_holds_another_and_iou_is_not():
    person = np.array([[100.0, 100.0, 160.0, 260.0]])  # a HOG box with its margins
    landmarks = np.array([[115.0, 120.0, 145.0, 240.0]])  # the tighter landmark box inside
    assert box_overlap(person, landmarks)[0, 0] == pytest.approx(1.0)
    assert box_iou(person, landmarks)[0, 0] < 0.5
    apart = np.array([[300.0, 100.0, 360.0, 260.0]])
    assert box_overlap(person, apart)[0, 0] == 0.0
    assert box_overlap(np.zeros((0, 4)), person).shape == (0, 1)


def test_a_follower_keeps_its_crop_until_the_person_drifts_off_its_centre():
    f = Follower(graph=None, box=np.array([100.0, 100.0, 140.0, 200.0]))
    first = f.place(1.25).copy()
    assert f.moves == 1 and first[2] == pytest.approx(125.0)
    f.box = f.box + np.array([5.0, 0.0, 5.0, 0.0])  # a step: the crop stays
    assert np.array_equal(f.place(1.25), first) and f.moves == 1
    shift = RECENTRE * first[2] + 1.0  # off its centre: the crop follows
    f.box = f.box + np.array([shift, 0.0, shift, 0.0])
    moved = f.place(1.25)
    assert f.moves == 2 and moved[0] == pytest.approx((f.box[0] + f.box[2]) / 2)
    f.box = np.array([moved[0] - 40.0, 50.0, moved[0] + 40.0, 250.0])  # much taller: resized
    assert f.place(1.25)[2] == pytest.approx(250.0) and f.moves == 3


def test_hog_thread_settings_are_checked():
    with pytest.raises(ConfigError, match="nice"):
        HogConfig(nice=20).validate("detector.hog.")
    with pytest.raises(ConfigError, match="scale"):
        HogConfig(scale=1.0).validate("detector.hog.")
    with pytest.raises(ConfigError, match="threads"):
        DetectorConfig(threads=0).validate("detector.")


def test_the_hog_thread_works_on_one_frame_at_a_time_and_hands_each_result_once(samples):
    import cv2

    from hmr_ros.detect.hog import HogPeopleDetector
    from hmr_ros.detect.hog_thread import HogThread

    cap = cv2.VideoCapture(str(samples("vtest.avi")))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    image = np.ascontiguousarray(bgr[:, :, ::-1])
    hog = HogPeopleDetector(1.5, 1.0, scale=1.1)
    thread = HogThread(hog, nice=5)
    try:
        assert thread.take() is None
        assert thread.offer(image)
        assert not thread.offer(image)  # busy: the frame is not queued behind it
        assert thread.wait_idle(30.0)
        boxes = thread.take()
        inline, _ = hog.boxes(image)
        assert boxes is not None and np.array_equal(boxes, inline) and len(boxes) >= 3
        assert thread.take() is None and thread.runs == 1 and thread.errors == 0
        assert any(t.name == "hmr_ros-hog" for t in threading.enumerate())
    finally:
        thread.close()
    assert not any(t.name == "hmr_ros-hog" for t in threading.enumerate())


def _street(samples, n: int):
    from hmr_ros.data.video import VideoReader
    from hmr_ros.stream.sources import video_frames

    with VideoReader(samples("vtest.avi"), limit=n) as video:
        return list(video_frames(video))


def _boxes_source(cfg: DetectorConfig):
    pytest.importorskip("mediapipe", reason="needs the [mediapipe] extra")
    from hmr_ros.detect.base import DetectorUnavailable
    from hmr_ros.detect.multi_pose import BlazePoseBoxes

    try:
        return BlazePoseBoxes(cfg)
    except DetectorUnavailable as err:
        pytest.skip(f"mediapipe is installed but unusable: {err}")


def test_followed_walkers_keep_their_ids_and_are_not_searched_again(samples):
    """Ten frames of vtest.avi with HOG inline on the first only: the three walkers are
    found once, then followed by their landmarks; the tracker's ids hold."""
    from hmr_ros.detect.stage import DetectionStage

    frames = _street(samples, 10)
    cfg = DetectorConfig(hog=HogConfig(thread=False, every=100))
    source = _boxes_source(cfg)
    stage = DetectionStage.from_config(cfg, source)
    try:
        ids = [sorted(d.id for d in stage.process(frames[0]).detections)]
        first = source.searched  # HOG's boxes of the first frame (one may be a fragment)
        ids += [sorted(d.id for d in stage.process(f).detections) for f in frames[1:]]
    finally:
        stage.close()
    assert ids[0] == []  # tentative on the first frame (tracker.min_hits = 2)
    assert all(i == ids[1] for i in ids[1:]) and len(ids[1]) == 3, ids
    assert source.hog_runs == 1 and source.followers.started == 3 and first >= 3
    assert source.followed == 3 * 9  # every later frame: each walker by their follower
    assert source.searched == first  # nothing searched after the first frame


def test_following_finds_the_people_that_searching_every_box_finds(samples):
    """Over 20 frames: the same people per frame, within one, as BlazePose in every box of
    every frame, and their landmarks agree (median over matched people)."""
    from hmr_ros.detect.stage import DetectionStage

    frames = _street(samples, 20)
    results = {}
    for follow in (False, True):
        cfg = DetectorConfig(follow=follow, hog=HogConfig(thread=False))
        stage = DetectionStage.from_config(cfg, _boxes_source(cfg))
        try:
            results[follow] = [stage.source.detect(f.image, f.stamp_ns)
                               for f in frames if stage.process(f) is not None]
        finally:
            stage.close()
    errors = []
    for a, b in zip(results[False], results[True]):
        assert abs(len(a) - len(b)) <= 1
        for d in a:
            iou = [box_iou(d.box, e.box)[0, 0] for e in b]
            if iou and max(iou) > 0.5:
                e = b[int(np.argmax(iou))]
                both = (d.keypoints.confidence > 0.5) & (e.keypoints.confidence > 0.5)
                errors.append(np.median(np.linalg.norm(d.keypoints.xy[both]
                                                       - e.keypoints.xy[both], axis=1)))
    assert len(errors) >= 40 and np.median(errors) < 4.0, np.median(errors)
