"""Posture classification (`hmr_ros.body.posture`) on real synthetic bodies.

The bodies are the synthetic world's procedural motions posed with the bundled SMPL model,
placed on the floor of a y-up world and seen by a camera pitched and rolled by up to 15 deg
(the camera frame x right, y down, z forward, as `PersonEstimate.joints`). The classifier is
given the world's up direction in that camera frame, as the node will be.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hmr_ros.body.posture import (
    CROUCHING,
    LAYING,
    OTHER,
    POSTURE_NAMES,
    SITTING,
    STANDING,
    Posture,
    classify_posture,
)
from hmr_ros.world.motion import PARAM_NAMES, generate_motion, params_to_pose
from hmr_ros.world.scene import look_at

_P = {n: i for i, n in enumerate(PARAM_NAMES)}
WORLD_UP = np.array([0.0, 1.0, 0.0])
# (pitch, roll) in degrees, one per seed: level, and the corners of the +-15 deg range.
TILTS = ((0.0, 0.0), (15.0, 0.0), (-15.0, 10.0), (8.0, -15.0))


def _pose_world(body, full_pose: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posed SMPL bodies standing on the world floor (y = 0, y up).

    full_pose: (T, 24, 3) axis-angle; betas: (10,). Returns joints (T, 24, 3) and vertices
    (T, V, 3) with each frame's lowest vertex on the floor, as the synthetic scene places people.
    """
    t = full_pose.shape[0]
    with torch.no_grad():
        out = body.forward_axis_angle(torch.from_numpy(full_pose.reshape(t, 72)).float(),
                                      torch.from_numpy(np.repeat(betas[None], t, 0)).float())
    joints = out.joints.numpy().astype(np.float64)
    verts = out.vertices.numpy().astype(np.float64)
    lift = -verts[:, :, 1].min(axis=1)
    joints[:, :, 1] += lift[:, None]
    verts[:, :, 1] += lift[:, None]
    return joints, verts


def _camera(pitch_deg: float, roll_deg: float, target: np.ndarray,
            distance: float = 3.5) -> tuple[np.ndarray, np.ndarray]:
    """A camera `distance` metres from `target`, pitched down by `pitch_deg` (negative: up)
    and rolled by `roll_deg` about its optical axis. Returns camera-to-world rotation (3, 3)
    (columns: the camera's x, y, z in the world) and the camera position (3,)."""
    pitch = math.radians(pitch_deg)
    pos = target + distance * np.array([0.0, math.sin(pitch), -math.cos(pitch)])
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    roll = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return look_at(pos, target) @ roll, pos


def _to_camera(points: np.ndarray, cam_to_world: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> camera frame (..., 3)."""
    return (points - pos) @ cam_to_world


def _view(joints_world: np.ndarray, pitch: float, roll: float
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """Joints (T, 24, 3) in the frame of a tilted camera looking at them, the world up in that
    frame (3,) and the floor's height along it."""
    r, pos = _camera(pitch, roll, joints_world[:, 0].mean(axis=0))
    up = r.T @ WORLD_UP
    floor = float(_to_camera(np.zeros(3), r, pos) @ up)
    return _to_camera(joints_world, r, pos), up, floor


def _in_pose(clip, action: str) -> np.ndarray:
    """(T,) bool: frames of the clip in the action's pose. Sitting and squatting: the frames of
    each sit/squat segment whose knee flexion is within 5% of that segment's deepest (the
    motion generator's own parameters, not the classifier's measurements); the other actions:
    every frame labelled with the action."""
    label = clip.action == action
    if action not in ("sit", "squat"):
        return label
    knee = 0.5 * (clip.params[:, _P["left_knee_flex"]] + clip.params[:, _P["right_knee_flex"]])
    out = np.zeros(len(clip), dtype=bool)
    idx = np.flatnonzero(label)
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
        if len(run) and knee[run].max() > 1.0:  # a segment that reached the full pose
            out[run[knee[run] >= 0.95 * knee[run].max()]] = True
    return out


def _betas(seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    return np.clip(0.8 * rng.standard_normal(10), -2.0, 2.0).astype(np.float32)


@pytest.mark.parametrize("action, expected, min_frames", [
    ("idle", STANDING, 40), ("walk", STANDING, 40), ("turn", STANDING, 40),
    ("reach", STANDING, 40), ("wave", STANDING, 40),
    ("sit", SITTING, 5), ("squat", CROUCHING, 3),
])
def test_procedural_actions_under_tilted_cameras(body, action, expected, min_frames):
    for seed, (pitch, roll) in enumerate(TILTS):
        clip = generate_motion(seed, 6.0, 10.0, (action,))
        joints, _ = _pose_world(body, clip.full_pose(), _betas(seed))
        frames = np.flatnonzero(_in_pose(clip, action))
        assert len(frames) >= min_frames, (action, seed, len(frames))
        cam, up, floor = _view(joints[frames], pitch, roll)
        for i, j in zip(frames, cam):
            for p in (classify_posture(j, up=up), classify_posture(j, up=up, floor_height=floor)):
                assert p.code == expected, (action, seed, pitch, roll, int(i), p)
                assert p.name == POSTURE_NAMES[expected]


@pytest.mark.parametrize("angle_deg", [70.0, 90.0, 110.0])
@pytest.mark.parametrize("action", ["idle", "sit"])
def test_laying_bodies(body, action, angle_deg):
    """Bodies tipped over about a horizontal axis until the torso lies near horizontal (head
    raised at 70 deg, lowered at 110): standing ones about any horizontal axis (on the back,
    front or side), seated ones about their own forward axis (on the side, knees drawn up)."""
    for seed, (pitch, roll) in enumerate(TILTS):
        clip = generate_motion(seed, 6.0, 10.0, (action,))
        frames = np.flatnonzero(_in_pose(clip, action))[::5]
        joints, verts = _pose_world(body, clip.full_pose()[frames], _betas(seed))
        a = math.radians(angle_deg)
        for n, f in enumerate(frames):
            h = seed if action == "idle" else float(clip.heading[f])
            axis = np.array([math.sin(h), 0.0, math.cos(h)])  # heading 0 faces world +z
            k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]],
                          [-axis[1], axis[0], 0]])
            tip = np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k  # Rodrigues
            # Tip the posed body about its pelvis, then lay it back on the floor.
            verts[n] = (verts[n] - joints[n, 0]) @ tip.T + joints[n, 0]
            joints[n] = (joints[n] - joints[n, 0]) @ tip.T + joints[n, 0]
        drop = verts[:, :, 1].min(axis=1)
        joints[:, :, 1] -= drop[:, None]
        cam, up, floor = _view(joints, pitch, roll)
        for j in cam:
            for p in (classify_posture(j, up=up), classify_posture(j, up=up, floor_height=floor)):
                assert p.code == LAYING, (action, seed, angle_deg, p)
                assert p.torso_inclination_deg > 55.0


def _neutral_body(body, **params: float) -> np.ndarray:
    """World joints (24, 3) of the motion library's angle parameters: all zero (a natural
    standing pose) except those given, in radians."""
    p = np.zeros((1, len(PARAM_NAMES)))
    for name, value in params.items():
        p[0, _P[name]] = value
    go, bp = params_to_pose(p, np.zeros(1))
    full = np.concatenate([go[:, None], bp], axis=1)
    return _pose_world(body, full, np.zeros(10, np.float32))[0][0]


def _legs_bent(thigh: float, shank: float, pitch: float) -> dict[str, float]:
    """Both legs bent with the feet flat, as the squat and sit actions do it (radians)."""
    out = {"root_pitch": pitch}
    for s in ("left", "right"):
        out |= {f"{s}_hip_flex": thigh + pitch, f"{s}_knee_flex": thigh + shank,
                f"{s}_ankle_flex": shank}
    return out


def test_in_between_poses_are_other(body):
    # A half squat: knees ~63 deg, hips ~46 deg: neither standing, sitting nor crouching.
    half = classify_posture(_neutral_body(body, **_legs_bent(0.6, 0.5, 0.2)), up=WORLD_UP)
    assert half.code == OTHER, half
    assert 55.0 < min(half.knee_flexion_deg) < 70.0
    # Bent forward at the hips on straight legs: the torso is near horizontal, but the pelvis
    # is still a leg length up, so this is not laying either.
    bent = _neutral_body(body, root_pitch=1.0, left_hip_flex=1.0, right_hip_flex=1.0,
                         spine1_flex=0.3, spine2_flex=0.3, spine3_flex=0.3)
    p = classify_posture(bent, up=WORLD_UP)
    assert p.code == OTHER, p
    assert p.torso_inclination_deg > 70.0 and p.pelvis_height_ratio > 1.0
    # The same stance upright is standing: the rule, not the pose generator, makes the OTHER.
    assert classify_posture(_neutral_body(body), up=WORLD_UP).code == STANDING


def test_trunk_over_the_feet_separates_crouching_from_sitting(body):
    """Sitting and crouching differ in where the trunk is over the feet, not in the legs alone:
    the same leg angles balanced over the feet (torso leaning forward) are a crouch, and with
    the torso upright (the pelvis behind the feet, carried by a seat) a sit."""
    crouch = classify_posture(_neutral_body(body, **_legs_bent(1.4, 0.6, 0.6),
                                            spine1_flex=0.2, spine2_flex=0.2),
                              up=WORLD_UP)
    seat = classify_posture(_neutral_body(body, **_legs_bent(1.5, 0.0, 0.0)), up=WORLD_UP)
    assert crouch.code == CROUCHING, crouch
    assert seat.code == SITTING, seat
    assert crouch.trunk_offset_ratio < 0.18 < seat.trunk_offset_ratio


def test_up_is_what_makes_a_tilted_camera_work(body):
    clip = generate_motion(3, 2.0, 10.0, ("idle",))
    joints, _ = _pose_world(body, clip.full_pose(), _betas(3))
    world = classify_posture(joints[5], up=WORLD_UP)  # the world frame is a level "camera"
    assert world.code == STANDING
    # Level camera: the default up (-y of the camera) is right.
    level, up_level, _ = _view(joints[5:6], 0.0, 0.0)
    np.testing.assert_allclose(up_level, [0.0, -1.0, 0.0], atol=1e-12)
    default = classify_posture(level[0])
    assert default.code == STANDING
    assert default.torso_inclination_deg == pytest.approx(world.torso_inclination_deg, abs=1e-6)
    # Tilted camera: with the right up every measurement is the world's; with the default
    # up the torso seems to lean by about the tilt.
    cam, up, _ = _view(joints[5:6], 15.0, 15.0)
    right = classify_posture(cam[0], up=up)
    assert right.code == STANDING
    for name in ("torso_inclination_deg", "pelvis_height_m", "trunk_offset_m", "leg_length_m"):
        assert getattr(right, name) == pytest.approx(getattr(world, name), abs=1e-6), name
    np.testing.assert_allclose(right.knee_flexion_deg, world.knee_flexion_deg, atol=1e-6)
    np.testing.assert_allclose(right.hip_flexion_deg, world.hip_flexion_deg, atol=1e-6)
    wrong = classify_posture(cam[0])
    assert abs(wrong.torso_inclination_deg - world.torso_inclination_deg) > 10.0
    # Any length of up will do.
    scaled = classify_posture(cam[0], up=7.0 * up)
    assert scaled.code == STANDING
    assert scaled.torso_inclination_deg == pytest.approx(right.torso_inclination_deg, abs=1e-9)
    assert scaled.pelvis_height_m == pytest.approx(right.pelvis_height_m, abs=1e-9)


def test_floor_height_is_used(body):
    clip = generate_motion(1, 2.0, 10.0, ("idle",))
    joints, _ = _pose_world(body, clip.full_pose(), _betas(1))
    cam, up, floor = _view(joints[:1], 10.0, -5.0)
    with_floor = classify_posture(cam[0], up=up, floor_height=floor)
    # The floor is the world's y = 0, so the pelvis height is the pelvis's world y.
    assert with_floor.pelvis_height_m == pytest.approx(joints[0, 0, 1], abs=1e-6)
    from_feet = classify_posture(cam[0], up=up)
    assert 0.0 < with_floor.pelvis_height_m - from_feet.pelvis_height_m < 0.1  # feet joints
    # A floor just under the pelvis (a person seen on a stage whose floor is wrong): no longer
    # standing, since the legs cannot reach it.
    assert classify_posture(cam[0], up=up, floor_height=float(cam[0, 0] @ up) - 0.3).code != \
        STANDING


def test_inputs_and_errors(body):
    joints = _neutral_body(body)
    p = classify_posture(joints, up=WORLD_UP)
    assert isinstance(p, Posture) and p.code == STANDING and p.name == "standing"
    # A torch tensor (as a backend may hand over) is the same as its numpy array.
    assert classify_posture(torch.from_numpy(joints).float().requires_grad_(),
                            up=torch.tensor([0.0, 1.0, 0.0])).code == STANDING
    # Bad numbers: OTHER, with nothing measured.
    for bad in (np.nan, np.inf, -np.inf):
        j = joints.copy()
        j[7, 1] = bad
        out = classify_posture(j, up=WORLD_UP)
        assert out.code == OTHER and out.name == "other" and math.isnan(out.pelvis_height_m)
    assert classify_posture(joints, up=[0.0, 0.0, 0.0]).code == OTHER
    assert classify_posture(joints, up=[np.nan, 1.0, 0.0]).code == OTHER
    assert classify_posture(joints, up=WORLD_UP, floor_height=float("nan")).code == OTHER
    assert classify_posture(np.zeros((24, 3)), up=WORLD_UP).code == OTHER  # no limbs
    assert classify_posture(joints * 1e300, up=WORLD_UP).code == OTHER  # overflows
    # Wrong shapes: ValueError.
    for shape in ((24, 2), (23, 3), (1, 24, 3), (72,)):
        with pytest.raises(ValueError, match="joints must have shape"):
            classify_posture(np.zeros(shape))
    with pytest.raises(ValueError, match="up must have shape"):
        classify_posture(joints, up=[0.0, 1.0])


# Coordinates as a broken estimate could send them: plausible, huge, tiny, non-finite.
_COORD = st.one_of(st.floats(-5.0, 5.0), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, 1e-300, -1e300, 1e308, float("nan"), float("inf")]))


@pytest.fixture(scope="module")
def standing_joints(body):
    return _neutral_body(body)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(),
       up=st.one_of(st.none(), hnp.arrays(np.float64, (3,), elements=_COORD)),
       floor=st.one_of(st.none(), _COORD))
def test_any_input_gives_a_posture(standing_joints, data, up, floor):
    if data.draw(st.booleans(), label="from a body"):
        # A real standing body, scaled, moved and with some coordinates replaced.
        joints = standing_joints * data.draw(st.floats(-1e3, 1e3)) + data.draw(
            st.floats(-1e3, 1e3))
        for _ in range(data.draw(st.integers(0, 4))):
            joints[data.draw(st.integers(0, 23)), data.draw(st.integers(0, 2))] = data.draw(
                _COORD)
    else:
        joints = data.draw(hnp.arrays(np.float64, (24, 3), elements=_COORD))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warnings leak out either
        p = classify_posture(joints, up=up, floor_height=floor)
    assert isinstance(p, Posture)
    assert p.code in POSTURE_NAMES and p.name == POSTURE_NAMES[p.code]
    if not np.isfinite(joints).all() or (floor is not None and not math.isfinite(floor)):
        assert p.code == OTHER
    if p.code != OTHER:
        assert 0.0 <= p.torso_inclination_deg <= 180.0 and p.leg_length_m > 0.0
