"""The multi-person tracker and the detection stage: stable ids through a crossing on a
rendered synthetic stream, new ids after a person leaves and comes back, timeouts, tentative
tracks, and ids that arrive with the input."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

import hmr_ros.world.scene as scene
from hmr_ros.config import DetectorConfig
from hmr_ros.config.perception import TrackerConfig
from hmr_ros.data.frame import Detection, Frame, Keypoints
from hmr_ros.detect import DetectionStage, GroundTruthSource, Tracker, box_iou
from hmr_ros.world.domain import load_domain
from hmr_ros.world.motion import generate_motion

FPS = 10.0
SEC = 1_000_000_000



def _tracking(timeout_s: float) -> DetectorConfig:
    return DetectorConfig(tracker=TrackerConfig(min_hits=2, timeout_s=timeout_s))

def _domain():
    """robot_cam at half size and 10 fps, a fixed level camera 4 m away on the +z side
    (world x is image right), no occluders: people only hide behind each other."""
    d = load_domain("robot_cam")
    return dataclasses.replace(
        d, fps=FPS, image=dataclasses.replace(d.image, render_scale=0.5),
        camera=dataclasses.replace(d.camera, distance=(4.0, 4.0), azimuth=(0.0, 0.0),
                                   height=(1.1, 1.1), look_at_height=(1.0, 1.0), follow=0.0,
                                   shake_deg=0.0, roll_deg=0.0, focal_jitter=0.0,
                                   principal_jitter=0.0),
        scene=dataclasses.replace(d.scene, occluders_per_10s=0.0))


def _scripted_sequence(monkeypatch, paths, duration_s: float, seed: int = 3):
    """A two-person stream whose people follow `paths` (t (T,) s -> (T, 2) world x, z):
    standing (idle) motions with their ground track replaced. The camera follows the mean of
    the tracks, so the paths are mirror images and the camera stays put."""
    calls = iter(paths)

    def scripted_motion(seed, duration_s, fps, actions=None):
        clip = generate_motion(seed, duration_s, fps, ("idle",))
        t = np.arange(len(clip)) / fps
        return dataclasses.replace(clip, root_xz=np.asarray(next(calls)(t), np.float32))

    monkeypatch.setattr(scene, "generate_motion", scripted_motion)
    return scene.SyntheticSequence(_domain(), seed=seed, duration_s=duration_s, n_people=2,
                                   spacing=0.0)


class _Misses(GroundTruthSource):
    """Ground truth that, like a real detector, misses a person while they are (mostly)
    hidden: `person` in frames `frames`."""

    def __init__(self, seq, person: int, frames: range) -> None:
        super().__init__(seq)
        self.person, self.missed = person, frames

    def detect(self, image, stamp_ns):
        dets = super().detect(image, stamp_ns)
        i = self.index_of(stamp_ns)
        keep = [k for k, tid in enumerate(self.truth_ids)
                if not (tid == self.person and i in self.missed)]
        self.truth_ids = [self.truth_ids[k] for k in keep]
        return [dets[k] for k in keep]


def _track(seq, cfg: DetectorConfig, source: GroundTruthSource | None = None):
    """Run the stream through a DetectionStage fed by its ground truth (ids removed).
    Returns per frame {true id: tracker id} and the lost ids reported per frame."""
    source = source or GroundTruthSource(seq)
    stage = DetectionStage.from_config(cfg, source)
    assignments, lost = [], []
    for frame in source.frames():
        out = stage.process(frame)
        # The stage keeps the source's order and drops only tentative detections.
        truth = dict(zip(source.truth_ids, (d for d in source.detect(frame.image,
                                                                      frame.stamp_ns))))
        by_box = {}
        for tid, det in truth.items():
            match = [o.id for o in out.detections if np.allclose(o.box, det.box)]
            if match:
                by_box[tid] = match[0]
        assignments.append(by_box)
        lost.append(stage.pop_lost())
    return assignments, lost


def test_ids_stay_stable_when_two_people_cross(monkeypatch):
    # Person 1 walks right in front (0.6 m nearer the camera), person 2 walks left behind:
    # at 1.5 s person 1 covers most of person 2.
    seq = _scripted_sequence(monkeypatch, [
        lambda t: np.stack([-1.5 + t, 0.6 + 0 * t], 1),
        lambda t: np.stack([1.5 - t, -0.6 + 0 * t], 1)], duration_s=3.0)
    frames = [seq.frame(i) for i in (0, 15)]
    boxes = {v.id: v.box for v in frames[0].people}
    assert box_iou(boxes[1], boxes[2])[0, 0] == 0.0  # apart at the start
    hidden = {v.id: v.visible_pixels for v in frames[1].people}
    assert hidden[2] < 0.25 * hidden[1]  # really behind person 1 at the crossing

    assignments, lost = _track(seq, _tracking(1.0))
    seen = [a for a in assignments if a]
    assert len(seen) >= 28
    # One tracker id per person for the whole stream, different for the two.
    ids1 = {a[1] for a in assignments if 1 in a}
    ids2 = {a[2] for a in assignments if 2 in a}
    assert len(ids1) == 1 and len(ids2) == 1 and ids1 != ids2, (ids1, ids2)
    assert sum(1 in a for a in assignments) >= 28 and sum(2 in a for a in assignments) >= 20
    # Both were seen on both sides of the crossing with the same id.
    assert 1 in assignments[2] and 1 in assignments[-1]
    assert 2 in assignments[2] and 2 in assignments[-1]
    assert not any(lost)

    # A detector that loses the hidden person for half a second (frames 13-17, around the
    # crossing): the track coasts on its predicted motion and picks the person up again on
    # the other side with the same id.
    missing = _Misses(seq, person=2, frames=range(13, 18))
    assignments, lost = _track(seq, _tracking(1.0), missing)
    assert [k for k, a in enumerate(assignments) if 2 not in a] == [0, 13, 14, 15, 16, 17]
    ids1 = {a[1] for a in assignments if 1 in a}
    ids2 = {a[2] for a in assignments if 2 in a}
    assert len(ids1) == 1 and len(ids2) == 1 and ids1 != ids2, (ids1, ids2)
    assert not any(lost)


def test_a_person_who_leaves_and_comes_back_gets_a_new_id(monkeypatch):
    # Both walk out of the view sideways at 2.5 m/s from 0.8 m either side of the centre,
    # stay out for about 2 s, and come back.
    def out_and_back(sign: float):
        def path(t):
            x = sign * (0.8 + np.minimum(2.5 * t, np.maximum(0.0, 9.0 - 2.5 * t)))
            return np.stack([x, 0.6 * sign + 0 * t], 1)
        return path

    seq = _scripted_sequence(monkeypatch, [out_and_back(-1.0), out_and_back(1.0)],
                             duration_s=4.0)
    assignments, lost = _track(seq, _tracking(0.8))
    assert sum(not a for a in assignments) >= 12  # nobody in view for over a second
    first = {p: assignments[2][p] for p in (1, 2)}
    last = {p: assignments[-1][p] for p in (1, 2)}
    assert first[1] != first[2] and last[1] != last[2]
    assert not set(first.values()) & set(last.values())  # new ids, old ones not reused
    assert min(last.values()) > max(first.values())
    reported = [i for frame_lost in lost for i in frame_lost]
    assert sorted(reported) == sorted(first.values())  # each old id reported lost once
    # While a person is out of view, its id is not handed to anyone.
    for a in assignments:
        assert len(set(a.values())) == len(a)


# ------------------------------------------------------------------------ unit level


def _det(x: float, y: float = 100.0, w: float = 40.0, h: float = 100.0, id: int = -1
         ) -> Detection:
    return Detection(id, None, np.array([x, y, x + w, y + h]))


def test_tracker_matches_by_motion_times_out_and_never_reuses_ids():
    tr = Tracker(match_threshold=0.2, min_hits=1, timeout_s=0.5)
    assert tr.update([_det(0), _det(200)], 0) == [1, 2]
    # Both move right 10 px per frame; the detection order flips.
    assert tr.update([_det(210), _det(10)], SEC // 10) == [2, 1]
    assert tr.update([_det(20)], 2 * SEC // 10) == [1]  # track 2 unseen, not yet lost
    assert tr.pop_lost() == []
    # At 0.65 s track 1 (last seen 0.45 s ago) is where its motion predicts (100 px/s);
    # track 2 (0.55 s ago) has timed out.
    assert tr.update([_det(65)], 65 * SEC // 100) == [1]
    assert tr.pop_lost() == [2] and tr.pop_lost() == []
    assert tr.update([_det(75), _det(230)], 75 * SEC // 100) == [1, 3]  # a new id
    # Constant-velocity prediction carries a track across a gap of a few frames.
    tr2 = Tracker(min_hits=1, timeout_s=1.0)
    for k in range(4):
        tr2.update([_det(20.0 * k)], k * SEC // 10)
    assert tr2.update([_det(20.0 * 8)], 8 * SEC // 10) == [1]  # 80 px away from its last box


def test_tentative_tracks_need_min_hits_and_die_on_a_miss():
    tr = Tracker(min_hits=2, timeout_s=1.0)
    assert tr.update([_det(0)], 0) == [-1]
    assert tr.update([_det(2), _det(300)], SEC // 10) == [1, -1]
    assert tr.update([_det(4)], 2 * SEC // 10) == [1]  # the one-frame detection is dropped
    assert tr.update([_det(6), _det(300)], 3 * SEC // 10) == [1, -1]
    assert tr.update([_det(8), _det(301)], 4 * SEC // 10) == [1, 2]


def test_keypoints_separate_overlapping_people():
    # Two people of the same size, one standing just behind the other and shifted: their
    # boxes overlap a lot; the keypoints (a head above a head) decide.
    def person(x: float, y: float) -> Detection:
        xy = np.array([[x + 20, y + 10 * k] for k in range(17)], np.float32)
        kp = Keypoints("coco17", xy, np.ones(17, np.float32))
        return Detection(-1, kp, np.array([x, y, x + 40, y + 170.0]))

    tr = Tracker(min_hits=1, timeout_s=1.0)
    assert tr.update([person(100, 50), person(125, 60)], 0) == [1, 2]
    # Next frame they have exchanged nothing, but arrive in swapped order.
    assert tr.update([person(126, 60), person(101, 50)], SEC // 10) == [2, 1]


def test_stage_keeps_distinct_input_ids_and_tracks_the_rest():
    kp = Keypoints("coco17", np.zeros((17, 2)), np.zeros(17))
    img = np.zeros((8, 8, 3), np.uint8)

    def frame(t: float, dets) -> Frame:
        return Frame(img, int(t * SEC), None, tuple(dets), index=int(t * 10))

    stage = DetectionStage(timeout_s=0.5)
    out = stage.process(frame(0.0, [_det(0, id=7), _det(100, id=9)]))
    assert [d.id for d in out.detections] == [7, 9]
    # Duplicate ids (an upstream that does not track) are replaced by the tracker's.
    out = stage.process(frame(0.1, [_det(0, id=0), _det(100, id=0)]))
    assert sorted(d.id for d in out.detections) == [1, 2]
    assert stage.process(frame(0.2, [])).detections == ()
    assert stage.pop_lost() == []
    stage.process(frame(0.8, []))
    assert sorted(stage.pop_lost()) == [1, 2, 7, 9]  # every id gone for > 0.5 s, once
    # retrack: even distinct ids are replaced.
    rs = DetectionStage(retrack=True, tracker=Tracker(min_hits=1))
    assert [d.id for d in rs.process(frame(0.0, [Detection(5, kp, np.array(
        [0, 0, 10, 20.0]))])).detections] == [1]


class _Records(logging.Handler):
    """The warnings of the hmr_ros logger (caplog does not see them where launch_testing's
    pytest plugin has reconfigured logging, as in the ROS workspace)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_stamps_jumping_back_lose_everyone_once():
    """A bag played with --loop, or a camera driver that restarts: nobody before the jump is
    paired with anybody after it (the adaptation forgets their motion history)."""
    img = np.zeros((8, 8, 3), np.uint8)

    def frame(t: float, dets) -> Frame:
        return Frame(img, int(t * SEC), None, tuple(dets))

    stage = DetectionStage(tracker=Tracker(min_hits=1), timeout_s=5.0)
    for t in (10.0, 10.1, 10.2):
        stage.process(frame(t, [_det(0, id=7), _det(100, id=9)]))
    tracked = [d.id for d in stage.process(frame(10.3, [_det(0, id=0), _det(100, id=0)]))
               .detections]
    assert stage.pop_lost() == [] and stage.time_jumps == 0
    records = _Records()
    logging.getLogger("hmr_ros").addHandler(records)
    try:
        after = stage.process(frame(1.0, [_det(0, id=7)]))  # back by 9.3 s
    finally:
        logging.getLogger("hmr_ros").removeHandler(records)
    assert stage.time_jumps == 1 and any("jumped back by 9.300 s" in m for m in records.lines)
    # Upstream ids and tracker ids seen before the jump are all lost (upstream ones may
    # come back under the same number).
    assert sorted(stage.pop_lost()) == sorted([7, 9, *tracked])
    assert [d.id for d in after.detections] == [7]
    again = stage.process(frame(1.1, [_det(0, id=0), _det(100, id=0)]))
    assert not set(d.id for d in again.detections) & set(tracked)  # tracker ids are new
    stage.process(frame(1.2, []))
    assert stage.time_jumps == 1  # forward again: no further jump


def test_stage_asks_the_source_only_when_the_frame_has_no_people():
    class Counting:
        name = "counting"

        def __init__(self):
            self.calls = 0
            self.priors = None

        def detect(self, image, stamp_ns):
            self.calls += 1
            return [_det(10 * self.calls)]

        def set_prior_boxes(self, boxes):
            self.priors = boxes

        def close(self):
            pass

    src = Counting()
    stage = DetectionStage(src, Tracker(min_hits=1))
    img = np.zeros((8, 8, 3), np.uint8)
    f0 = Frame(img, 0, None)
    out = stage.process(f0)
    assert src.calls == 1 and [d.id for d in out.detections] == [1]
    assert f0.detections == ()  # the input frame is not modified
    out = stage.process(Frame(img, SEC // 10, None))
    assert src.priors.shape == (1, 4) and [d.id for d in out.detections] == [1]
    stage.process(Frame(img, 2 * SEC // 10, None, (_det(50, id=3),)))
    assert src.calls == 2  # the frame brought its own people


@pytest.mark.parametrize("bad", [{"min_hits": 0}, {"timeout_s": 0.0}])
def test_tracker_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        Tracker(**bad)
