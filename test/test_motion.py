"""Procedural motion library: determinism, limits, smoothness and what each action does.

The action checks pose the real (bundled synthetic) SMPL body model, so they test the joints a
renderer would see, not only the angle parameters.
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pytest
import torch

from hmr_ros.body import LANDMARK_NAMES, SMPL_JOINT_NAMES, BodyModel
from hmr_ros.geometry import axis_angle_to_matrix
from hmr_ros.world.motion import (
    ACTIONS,
    JOINT_LIMITS,
    NUM_PARAMS,
    PARAM_NAMES,
    MotionClip,
    clip_seed,
    generate_library,
    generate_motion,
    params_to_pose,
)

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
# Points that can touch the ground: ankles, toe joints, heels and toe tips.
FOOT_POINTS = [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]] + [
    len(SMPL_JOINT_NAMES) + LANDMARK_NAMES.index(n)
    for n in ("left_heel", "right_heel", "left_big_toe", "right_big_toe")
]


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel()


@cache
def _clip(seed: int, duration: float, actions: tuple[str, ...] | None = None,
          fps: float = 30.0) -> MotionClip:
    return generate_motion(seed, duration, fps=fps, actions=actions)


def _points(body: BodyModel, clip: MotionClip) -> tuple[np.ndarray, np.ndarray]:
    """SMPL joints + landmarks (T, 46, 3): in the world (root at root_xz, pelvis at height 0)
    and in the body frame (heading removed, pelvis at the origin, +z = heading)."""
    pose = torch.from_numpy(clip.full_pose()).reshape(len(clip), 72)
    with torch.no_grad():
        pts = body.forward_axis_angle(pose, torch.zeros(len(clip), 10)).points.numpy()
    pts = pts.astype(np.float64)
    world = pts.copy()
    world[..., 0] += clip.root_xz[:, None, 0]
    world[..., 2] += clip.root_xz[:, None, 1]
    h = clip.heading.astype(np.float64)[:, None]
    local = pts - pts[:, :1]
    x = local[..., 0] * np.cos(h) - local[..., 2] * np.sin(h)
    z = local[..., 0] * np.sin(h) + local[..., 2] * np.cos(h)
    return world, np.stack([x, local[..., 1], z], axis=-1)


def _runs(labels: np.ndarray) -> list[tuple[str, int, int]]:
    """Maximal runs of equal labels: (label, start, stop)."""
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    edges = [0, *cuts.tolist(), len(labels)]
    return [(str(labels[a]), a, b) for a, b in zip(edges[:-1], edges[1:])]


# ---------------------------------------------------------------------------------------------
# API, determinism, shapes
# ---------------------------------------------------------------------------------------------


def _arrays(c: MotionClip) -> list[np.ndarray]:
    return [c.body_pose, c.global_orient, c.root_xz, c.action, c.heading, c.params]


def test_same_seed_same_clip_different_seed_different_clip():
    a, b = generate_motion(11, 12.0), generate_motion(11, 12.0)
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)
    c = generate_motion(12, 12.0)
    assert not np.allclose(a.body_pose, c.body_pose)
    assert not np.allclose(a.root_xz, c.root_xz)


def test_library_is_deterministic_and_clips_are_regenerable():
    lib = generate_library(5, 3, 4.0, fps=20.0)
    again = generate_library(5, 3, 4.0, fps=20.0)
    assert [c.name for c in lib] == ["motion_5_0000", "motion_5_0001", "motion_5_0002"]
    for c, d in zip(lib, again):
        for x, y in zip(_arrays(c), _arrays(d)):
            np.testing.assert_array_equal(x, y)
    # Clips differ from each other and from another library seed.
    assert not np.allclose(lib[0].body_pose, lib[1].body_pose)
    assert not np.allclose(lib[0].body_pose, generate_library(6, 1, 4.0, 20.0)[0].body_pose)
    # Clip i is generate_motion(clip_seed(seed, i)) on its own.
    solo = generate_motion(clip_seed(5, 2), 4.0, fps=20.0)
    np.testing.assert_array_equal(solo.body_pose, lib[2].body_pose)


@pytest.mark.parametrize("duration, fps", [(7.3, 30.0), (1.0, 15.0), (12.0, 25.0)])
def test_shapes_dtypes_and_clip_methods(duration, fps):
    c = generate_motion(3, duration, fps=fps)
    t = int(round(duration * fps))
    assert len(c) == t and c.fps == fps
    assert c.body_pose.shape == (t, 23, 3) and c.body_pose.dtype == np.float32
    assert c.global_orient.shape == (t, 3) and c.global_orient.dtype == np.float32
    assert c.root_xz.shape == (t, 2) and c.root_xz.dtype == np.float32
    assert c.heading.shape == (t,) and c.params.shape == (t, NUM_PARAMS)
    assert c.action.shape == (t,) and set(c.action.tolist()) <= set(ACTIONS)
    for a in (c.body_pose, c.global_orient, c.root_xz, c.params):
        assert np.isfinite(a).all()
    full = c.full_pose()
    assert full.shape == (t, 24, 3)
    np.testing.assert_array_equal(full[:, 0], c.global_orient)
    np.testing.assert_array_equal(full[:, 1:], c.body_pose)
    part = c.slice(2, 7)
    assert len(part) == 5 and part.fps == c.fps
    np.testing.assert_array_equal(part.body_pose, c.body_pose[2:7])
    np.testing.assert_array_equal(part.root_xz, c.root_xz[2:7])
    np.testing.assert_array_equal(part.action, c.action[2:7])
    np.testing.assert_array_equal(part.params, c.params[2:7])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown actions"):
        generate_motion(0, 3.0, actions=["dance"])
    with pytest.raises(ValueError):
        generate_motion(0, 3.0, actions=[])
    with pytest.raises(ValueError):
        generate_motion(0, 0.0)


def test_actions_argument_restricts_the_labels():
    c = _clip(4, 15.0, ("idle",))
    assert set(c.action.tolist()) == {"idle"}
    c = _clip(4, 15.0, ("wave", "squat"))
    assert set(c.action.tolist()) == {"wave", "squat"}


def test_default_sequences_contain_several_actions():
    seen: set[str] = set()
    for seed in range(6):
        c = _clip(seed, 30.0)
        runs = _runs(c.action)
        assert len({r[0] for r in runs}) >= 4, runs
        # Consecutive segments are different actions, each 1-5.5 s between fade centres.
        assert all(a[0] != b[0] for a, b in zip(runs[:-1], runs[1:]))
        assert all((stop - start) / c.fps <= 5.5 for _, start, stop in runs)
        seen |= {r[0] for r in runs}
    assert seen == set(ACTIONS)


def test_generation_is_fast():
    generate_motion(0, 5.0)  # warm-up
    start = time.perf_counter()
    c = generate_motion(1, 60.0)
    elapsed = time.perf_counter() - start
    assert len(c) == 1800
    assert elapsed < 1.0, f"60 s clip took {elapsed:.2f} s"


# ---------------------------------------------------------------------------------------------
# Limits and smoothness
# ---------------------------------------------------------------------------------------------


def test_limit_table_is_plausible():
    assert set(JOINT_LIMITS) == set(PARAM_NAMES) and len(PARAM_NAMES) == NUM_PARAMS
    for name, (lo, hi) in JOINT_LIMITS.items():
        assert -np.pi < lo < hi < np.pi, name
    for side in ("left", "right"):
        assert JOINT_LIMITS[f"{side}_knee_flex"] == (0.0, 2.4)  # no hyper-extension
        assert JOINT_LIMITS[f"{side}_elbow_flex"][0] == 0.0  # bends one way only
        assert JOINT_LIMITS[f"{side}_hip_flex"][1] <= 2.3
    for j in ("spine1", "spine2", "spine3"):
        assert max(abs(v) for v in JOINT_LIMITS[f"{j}_flex"]) <= 0.5
    for j in ("neck", "head"):
        assert max(abs(v) for v in JOINT_LIMITS[f"{j}_rot"]) <= 0.7


def test_every_frame_respects_the_limits_and_the_pose_comes_from_them():
    lo = np.array([JOINT_LIMITS[n][0] for n in PARAM_NAMES], dtype=np.float32)
    hi = np.array([JOINT_LIMITS[n][1] for n in PARAM_NAMES], dtype=np.float32)
    for seed in range(8):
        c = _clip(seed, 30.0)
        assert (c.params >= lo).all() and (c.params <= hi).all(), seed
        # The output is the conversion of those (limited) parameters, not clipped afterwards.
        go, bp = params_to_pose(c.params, c.heading)
        np.testing.assert_allclose(bp, c.body_pose, atol=2e-5)
        np.testing.assert_allclose(_angle_between(go, c.global_orient), 0.0, atol=2e-4)
        # Hinges turn about x only: a knee's rotation vector has no y or z part, x >= 0.
        for k in (J["left_knee"], J["right_knee"]):
            aa = c.body_pose[:, k - 1]
            assert (aa[:, 0] >= -1e-6).all() and np.abs(aa[:, 1:]).max() < 1e-5


def _angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (rad) of the relative rotation between axis-angle arrays (..., 3)."""
    ra = axis_angle_to_matrix(torch.from_numpy(np.asarray(a, dtype=np.float64)))
    rb = axis_angle_to_matrix(torch.from_numpy(np.asarray(b, dtype=np.float64)))
    rel = ra.transpose(-1, -2) @ rb
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.arccos(cos.clamp(-1.0, 1.0)).numpy()


def test_joint_rotations_and_root_change_smoothly_across_segments():
    boundaries = 0
    for seed in range(12):
        c = _clip(seed, 30.0)
        full = c.full_pose().astype(np.float64)
        step = _angle_between(full[:-1], full[1:])  # (T-1, 24)
        assert step.max() < 0.25, (seed, np.unravel_index(step.argmax(), step.shape))
        speed = np.linalg.norm(np.diff(c.root_xz, axis=0), axis=1) * c.fps
        assert speed.max() < 2.0, seed
        boundaries += len(_runs(c.action)) - 1
    assert boundaries >= 60  # the bound was checked across many segment changes


def test_no_velocity_jumps():
    # At 240 fps the finite-difference acceleration of a C1 trajectory stays bounded (the
    # fastest real one, the knee in swing, is ~120 rad/s^2), while a velocity jump of v rad/s
    # in one frame shows up as 240 v rad/s^2.
    for seed in range(4):
        c = _clip(seed, 20.0, None, 240.0)
        acc = np.abs(np.diff(c.params.astype(np.float64), n=2, axis=0)) * c.fps**2
        assert acc.max() < 200.0, (seed, PARAM_NAMES[int(acc.max(axis=0).argmax())])
        yaw_acc = np.abs(np.diff(c.heading.astype(np.float64), n=2)) * c.fps**2
        assert yaw_acc.max() < 20.0
        root_acc = np.linalg.norm(np.diff(c.root_xz.astype(np.float64), n=2, axis=0),
                                  axis=1) * c.fps**2
        assert root_acc.max() < 30.0


# ---------------------------------------------------------------------------------------------
# Signs of the joint table, checked with the body model
# ---------------------------------------------------------------------------------------------


def test_parameter_signs_move_the_body_as_named(body):
    cases = [
        ("left_hip_flex", 0.6, "left_knee", 2, +1),  # thigh forward
        ("right_hip_flex", 0.6, "right_knee", 2, +1),
        ("left_knee_flex", 0.8, "left_ankle", 2, -1),  # shank backward
        ("right_knee_flex", 0.8, "right_ankle", 2, -1),
        ("left_hip_abd", 0.4, "left_knee", 0, +1),  # outward = +x on the left
        ("right_hip_abd", 0.4, "right_knee", 0, -1),
        ("left_shoulder_flex", 1.2, "left_wrist", 2, +1),  # arm forward
        ("right_shoulder_flex", 1.2, "right_wrist", 2, +1),
        ("spine2_flex", 0.3, "head", 2, +1),  # bend forward
        ("spine2_lat", 0.2, "head", 0, +1),  # bend to the left
        ("root_pitch", 0.3, "head", 2, +1),
    ]
    params = np.zeros((len(cases) + 1, NUM_PARAMS))
    for i, (name, value, *_) in enumerate(cases):
        params[i + 1, PARAM_NAMES.index(name)] = value
    go, bp = params_to_pose(params, np.zeros(len(params)))
    pose = torch.from_numpy(np.concatenate([go[:, None], bp], axis=1)).reshape(-1, 72)
    with torch.no_grad():
        joints = body.forward_axis_angle(pose.float(), torch.zeros(len(params), 10)).joints
    joints = joints.numpy()
    rest = joints[0]
    # All-zero parameters: arms hang down along the body.
    for side in ("left", "right"):
        assert rest[J[f"{side}_wrist"], 1] < rest[J[f"{side}_shoulder"], 1] - 0.4
    for i, (name, _, joint, axis, sign) in enumerate(cases):
        moved = joints[i + 1, J[joint], axis] - rest[J[joint], axis]
        assert sign * moved > 0.05, (name, moved)
    # Shoulder abduction of pi/2 is the T-pose.
    params = np.zeros((1, NUM_PARAMS))
    params[0, PARAM_NAMES.index("left_shoulder_abd")] = np.pi / 2
    _, bp = params_to_pose(params, np.zeros(1))
    np.testing.assert_allclose(bp[0, J["left_shoulder"] - 1], 0.0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Each action does what its name says
# ---------------------------------------------------------------------------------------------


def test_walking_moves_forward_and_alternates_the_feet(body):
    for seed in range(3):
        c = _clip(seed, 8.0, ("walk",))
        fwd = np.stack([np.sin(c.heading), np.cos(c.heading)], axis=1)[1:]
        left = np.stack([np.cos(c.heading), -np.sin(c.heading)], axis=1)[1:]
        vel = np.diff(c.root_xz.astype(np.float64), axis=0) * c.fps
        along = (vel * fwd).sum(1)
        across = (vel * left).sum(1)
        assert along.min() > 0.6 and 0.75 < along.mean() < 1.5, (seed, along.mean())
        assert np.abs(across).max() < 0.05
        _, local = _points(body, c)
        ahead = local[:, J["left_ankle"], 2] - local[:, J["right_ankle"], 2]
        flips = np.count_nonzero(np.diff(np.sign(ahead)) != 0)
        # Two flips per stride, strides at >= 0.75 Hz.
        assert flips >= 1.5 * 8.0 * 0.9, (seed, flips)
        assert ahead.max() > 0.25 and ahead.min() < -0.25  # real steps, both ways


def test_in_place_actions_stay_in_place():
    for action in ("idle", "reach", "wave", "squat", "sit"):
        c = _clip(1, 10.0, (action,))
        travel = np.linalg.norm(c.root_xz - c.root_xz[0], axis=1).max()
        # Sway is centimetres; squat/sit move the pelvis back over planted feet.
        bound = 0.5 if action in ("squat", "sit") else 0.1
        assert travel < bound, (action, travel)
        assert np.ptp(c.heading) < 1e-6


def test_turning_changes_the_heading_smoothly():
    for seed in range(3):
        c = _clip(seed, 8.0, ("turn",))
        assert np.ptp(c.heading) > 0.5
        rate = np.abs(np.diff(c.heading)) * c.fps
        assert rate.max() < 3.0


def _pelvis_height(world: np.ndarray) -> np.ndarray:
    return world[:, 0, 1] - world[:, FOOT_POINTS, 1].min(axis=1)


@pytest.mark.parametrize("action", ["squat", "sit"])
def test_squat_and_sit_lower_the_pelvis(body, action):
    for seed in range(3):
        world, _ = _points(body, _clip(seed, 6.0, (action,)))
        h = _pelvis_height(world)
        assert h[0] - h.min() > 0.25, (seed, h[0] - h.min())
    world, _ = _points(body, _clip(0, 6.0, ("idle",)))
    h = _pelvis_height(world)
    assert np.ptp(h) < 0.05  # the measure itself is not what moves


def _arm_raised(local: np.ndarray) -> np.ndarray:
    """Per frame: some wrist above its shoulder, well in front of it, or out to the side at
    about shoulder height (body frame). A hanging arm meets none of these."""
    out = np.zeros(local.shape[0], dtype=bool)
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        d = local[:, J[f"{side}_wrist"]] - local[:, J[f"{side}_shoulder"]]
        out |= (d[:, 1] > 0.0) | (d[:, 2] > 0.25) | ((sgn * d[:, 0] > 0.35) & (d[:, 1] > -0.15))
    return out


def test_wave_and_reach_raise_a_wrist_in_every_segment(body):
    checked = {"wave": 0, "reach": 0}
    for seed in range(6):
        c = _clip(seed, 30.0)
        _, local = _points(body, c)
        raised = _arm_raised(local)
        for label, start, stop in _runs(c.action):
            if label in checked:
                assert raised[start:stop].any(), (seed, label, start)
                checked[label] += 1
        # Waving specifically lifts the hand above the shoulder.
        for label, start, stop in _runs(c.action):
            if label == "wave":
                d = (local[start:stop, [J["left_wrist"], J["right_wrist"]], 1]
                     - local[start:stop, [J["left_shoulder"], J["right_shoulder"]], 1])
                assert d.max() > 0.1, (seed, start)
    assert min(checked.values()) >= 3


def test_idle_keeps_the_wrists_below_the_shoulders(body):
    for seed in range(3):
        _, local = _points(body, _clip(seed, 8.0, ("idle",)))
        assert not _arm_raised(local).any()
        d = (local[:, [J["left_wrist"], J["right_wrist"]], 1]
             - local[:, [J["left_shoulder"], J["right_shoulder"]], 1])
        assert d.max() < -0.3


def test_actions_have_distinct_mean_configurations(body):
    means = {}
    for action in ACTIONS:
        configs = []
        for seed in range(2):
            _, local = _points(body, _clip(seed, 6.0, (action,)))
            configs.append(local[:, :24])
        means[action] = np.concatenate(configs).mean(axis=0)
    for i, a in enumerate(ACTIONS):
        for b in ACTIONS[i + 1:]:
            gap = np.linalg.norm(means[a] - means[b], axis=-1).mean()
            assert gap > 0.025, (a, b, gap)


def test_knees_never_bend_backwards(body):
    flexed = 0.0
    for seed in range(4):
        c = _clip(seed, 30.0)
        world, _ = _points(body, c)
        pose = torch.from_numpy(c.full_pose().astype(np.float64))
        rot = axis_angle_to_matrix(pose)
        for side in ("left", "right"):
            hip, knee, ankle = (J[f"{side}_{n}"] for n in ("hip", "knee", "ankle"))
            thigh_frame = (rot[:, 0] @ rot[:, hip]).numpy()  # pelvis then hip, in the world
            u = world[:, knee] - world[:, hip]
            v = world[:, ankle] - world[:, knee]
            # Flexion turns the shank backward, i.e. positively about the thigh's own x axis.
            s = (np.cross(u, v) * thigh_frame[:, :, 0]).sum(-1)
            s /= np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
            assert s.min() > -0.02, (seed, side, s.min())
            flexed = max(flexed, float(s.max()))
    assert flexed > 0.8  # knees did bend (a lot), and always forwards
