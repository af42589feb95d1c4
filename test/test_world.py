"""The synthetic world must not lie: renderer geometry, visibility, determinism, domains."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hmr_ros.body import BodyModel
from hmr_ros.body.joints import SMPL_PARENTS, get_joint_set
from hmr_ros.data.crop import CropError, box_from_keypoints, crop_image, crop_matrix
from hmr_ros.geometry import perspective_project
from hmr_ros.render import RenderMesh, box_mesh, rasterize, render
from hmr_ros.world.domain import DomainError, available_domains, load_domain, parse_domain
from hmr_ros.world.motion import generate_motion
from hmr_ros.world.scene import SyntheticSequence, _Occluder, render_training_crop


def pinhole(points, K):
    """The renderer's projection: camera-frame points (N, 3) to pixels (N, 2), depth as is."""
    return perspective_project(points, K, min_depth=None)

FOUR = ("h36m_like", "pw3d_like", "hp3d_like", "robot_cam")


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel()


def _quiet(name: str):
    """A domain without occluders, so tests place their own."""
    d = load_domain(name)
    return dataclasses.replace(d, scene=dataclasses.replace(d.scene, occluders_per_10s=0.0))


# ---------------------------------------------------------------- renderer


def test_rasterizer_depth_order_and_coverage():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 31.5], [0, 0, 1]])
    near_v, near_f = box_mesh([0.0, 0.0, 2.0], [0.2, 0.2, 0.2])
    far_v, far_f = box_mesh([0.1, 0.0, 3.0], [0.6, 0.6, 0.2])
    v = np.vstack([near_v, far_v])
    f = np.vstack([near_f, far_f + 8])
    r = rasterize(v, f, K, 64, 64)
    # The near box's front face is at z = 1.9; the far one's at 2.9.
    centre = r.depth[32, 32]
    assert centre == pytest.approx(1.9, abs=1e-4)
    assert r.face[32, 32] < 12  # a face of the near box
    # A pixel covered only by the far box sees it at its depth.
    assert r.depth[32, 42] == pytest.approx(2.9, abs=1e-4) and r.face[32, 42] >= 12
    # Projected area matches: near box front 0.2 m at 1.9 m -> 10.5 px square.
    near_pixels = np.isin(r.face, np.arange(12)).sum()
    assert abs(near_pixels - (0.2 / 1.9 * 100) ** 2) < 25
    assert np.isinf(r.depth[0, 0]) and r.face[0, 0] == -1


def test_projected_vertices_land_on_their_own_part(body):
    seq = SyntheticSequence(_quiet("robot_cam"), seed=11, duration_s=0.2)
    sf = seq.frame(0)
    view = sf.people[0]
    state = seq.people[0].state(0, *seq.pose(0))
    uv = pinhole(state.vertices, seq.camera.K)
    px = np.round(uv).astype(int)
    h, w = sf.label.shape
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    idx = np.flatnonzero(inside)
    depth_at = sf.depth[px[idx, 1], px[idx, 0]]
    front = idx[np.abs(depth_at - state.vertices[idx, 2]) < 0.005]
    assert len(front) > 200, "too few unoccluded vertices to test"
    labels = sf.label[px[front, 1], px[front, 0]]
    part = body.part_ids[front]
    # Away from joints (own skinning weight >= 0.9) a vertex sees its own part...
    weight = body.layer.lbs_weights.numpy()[front, part]
    core = weight >= 0.9
    assert core.sum() > 100
    assert (labels[core] == part[core]).mean() > 0.95
    # ...and at joints, where two parts' surfaces meet, its own part or the one it joins.
    parents = np.array(SMPL_PARENTS)
    adjacent = (labels == part) | (labels == parents[part]) | (parents[labels] == part)
    assert adjacent.mean() > 0.97
    # And the visible-pixel box contains every front vertex.
    x0, y0, x1, y1 = view.box
    assert np.all((uv[front, 0] >= x0 - 1) & (uv[front, 0] <= x1 + 1))
    assert np.all((uv[front, 1] >= y0 - 1) & (uv[front, 1] <= y1 + 1))


def test_keypoint_behind_an_occluder_is_invisible():
    seq = SyntheticSequence(_quiet("h36m_like"), seed=3, duration_s=0.2)
    before = seq.frame(0)
    view = before.people[0]
    gt = view.keypoints_gt
    visible_before = gt.confidence > 0
    assert visible_before.sum() >= 10
    # A wall of 0.35 m between the camera and the person's hips, at half the distance.
    rot, pos = seq.pose(0)
    j = gt.xy
    names = get_joint_set(gt.format).joint_names
    hips = [i for i, n in enumerate(names) if "hip" in n]
    target = view.points3d[0].astype(np.float64)  # pelvis, camera frame
    centre_cam = target * 0.5
    centre_world = rot @ centre_cam + pos
    occ = _Occluder(start=0.0, size=(0.35, 0.3, 0.05), origin=centre_world,
                    velocity=np.zeros(3), colour=np.array([0.9, 0.1, 0.1]))
    seq.occluders = [occ]
    after = seq.frame(0)
    gt_after = after.people[0].keypoints_gt
    # Hips (and the pelvis area) are now hidden; far-away joints (head, ankles) are not.
    for i in hips:
        assert visible_before[i] and gt_after.confidence[i] == 0
    for name in ("nose", "left_ankle", "right_ankle"):
        i = names.index(name)
        if visible_before[i]:
            assert gt_after.confidence[i] == 1
    # The detector reports hidden joints with low confidence (domain says low_conf).
    kp = after.people[0].keypoints
    assert all(kp.confidence[i] <= 0.35 for i in hips)
    # The occluder is drawn: red pixels where the hips project.
    for i in hips:
        x, y = np.round(j[i]).astype(int)
        assert after.object[y, x] == 1  # object 1 = the occluder (0 = the person)


def test_same_seed_same_bytes_different_seed_different():
    d = load_domain("pw3d_like")
    a = SyntheticSequence(d, seed=5, duration_s=0.2).frame(3)
    b = SyntheticSequence(d, seed=5, duration_s=0.2).frame(3)
    c = SyntheticSequence(d, seed=6, duration_s=0.2).frame(3)
    assert a.frame.image.tobytes() == b.frame.image.tobytes()
    assert np.array_equal(a.people[0].keypoints.xy, b.people[0].keypoints.xy)
    assert a.frame.image.tobytes() != c.frame.image.tobytes()
    # Frames can be rendered in any order.
    seq = SyntheticSequence(d, seed=5, duration_s=0.2)
    seq.frame(5)
    assert seq.frame(3).frame.image.tobytes() == a.frame.image.tobytes()


@pytest.mark.parametrize("name", FOUR)
def test_ground_truth_projects_onto_the_person(name):
    """GT parameters through the body model and K land inside the rendered person."""
    seq = SyntheticSequence(load_domain(name), seed=2, duration_s=0.2)
    sf = seq.frame(1)
    body = seq.body
    import torch

    p = sf.people[0].params
    pose = torch.from_numpy(np.concatenate([p.global_orient[None], p.body_pose])[None])
    out = body.forward_axis_angle(pose.float(), torch.from_numpy(p.betas[None]).float(),
                                  torch.from_numpy(p.transl[None]).float())
    np.testing.assert_allclose(out.points[0].numpy(), sf.people[0].points3d, atol=2e-4)
    uv = pinhole(out.joints[0].numpy().astype(np.float64), seq.camera.K)
    h, w = sf.object.shape
    px = np.round(uv).astype(int)
    ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    # Joints are inside the body: most in-image joints fall on person pixels.
    on_person = (sf.object[px[ok, 1], px[ok, 0]] == 0).mean()
    assert on_person > 0.8
    assert sf.frame.camera is seq.camera
    w_, h_ = load_domain(name).render_size
    assert sf.frame.image.shape == (h_, w_, 3)


def test_domains_differ_as_documented():
    d = {n: load_domain(n) for n in FOUR}
    assert set(FOUR) <= set(available_domains())
    assert d["h36m_like"].camera.focal == pytest.approx(1147, rel=0.02)
    assert d["pw3d_like"].camera.focal == pytest.approx(1962, rel=0.02)
    assert d["hp3d_like"].camera.focal == pytest.approx(1498, rel=0.02)
    assert d["robot_cam"].camera.focal == pytest.approx(525, rel=0.02)
    assert d["robot_cam"].render_size == (640, 480)
    assert np.mean(d["h36m_like"].camera.height) == pytest.approx(1.6, abs=0.1)
    assert np.mean(d["pw3d_like"].camera.height) == pytest.approx(0.6, abs=0.1)
    assert np.mean(d["h36m_like"].camera.distance) == pytest.approx(5.2, abs=0.2)
    assert d["h36m_like"].scene.occluders_per_10s == 0 < d["pw3d_like"].scene.occluders_per_10s
    assert d["h36m_like"].people.betas_std < d["pw3d_like"].people.betas_std


def test_domain_errors_are_clear(tmp_path):
    with pytest.raises(DomainError, match="unknown domain 'mars'"):
        load_domain("mars")
    with pytest.raises(DomainError, match=r"camera: unknown key\(s\) \['focus'\]"):
        parse_domain({"name": "x", "camera": {"focus": 1.0}})
    with pytest.raises(DomainError, match="expected a number"):
        parse_domain({"name": "x", "camera": {"focal": "big"}})
    with pytest.raises(DomainError, match="lo > hi"):
        parse_domain({"name": "x", "camera": {"distance": [5, 2]}})
    with pytest.raises(DomainError, match="background"):
        parse_domain({"name": "x", "scene": {"background": "moon"}})
    with pytest.raises(DomainError, match="joint set"):
        parse_domain({"name": "x", "detector": {"format": "mpii"}})
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\ncamera: {focal: 700.0}\n")
    assert load_domain(p).camera.focal == 700.0


# ---------------------------------------------------------------- crops


def test_crop_matrix_maps_box_edges_to_crop_edges():
    box = np.array([100.0, 80.0, 50.0])
    m = crop_matrix(box, 64)
    edges = np.array([[75.0, 55.0, 1.0], [125.0, 105.0, 1.0]]) @ m.T
    np.testing.assert_allclose(edges[:, :2], [[-0.5, -0.5], [63.5, 63.5]])
    # An image whose pixel value encodes x lands at the right crop columns.
    img = np.tile(np.arange(256, dtype=np.float32)[None, :, None], (200, 1, 3))
    crop = crop_image(img, np.array([128.0, 100.0, 64.0]), 64)
    # Box edges at x = 96 and 160: crop pixel centres sit half a source pixel inside them.
    assert crop[32, 0, 0] == pytest.approx(96.5) and crop[32, 63, 0] == pytest.approx(159.5)


def test_crop_is_exact_bilinear_without_opencv_warp(monkeypatch):
    import cv2

    # OpenCV's 8-bit warp differs between builds (5.0 vs 5.1); the crop must not use it.
    monkeypatch.setattr(cv2, "warpAffine", None)
    ramp = (np.arange(100)[None, :] + 2 * np.arange(60)[:, None]).astype(np.uint8)
    img = np.dstack([ramp, ramp, np.full_like(ramp, 200)])
    # Box 40 px wide onto 16 px: crop pixel (i, j) samples image x = 31.25 + 2.5 j,
    # y = 11.25 + 2.5 i (pixel centres); the ramp is linear, so bilinear is exact.
    crop = crop_image(img, np.array([50.0, 30.0, 40.0]), 16)
    assert crop.dtype == np.uint8 and crop.shape == (16, 16, 3)
    j = np.arange(16)
    want = np.rint((31.25 + 2.5 * j)[None, :] + 2 * (11.25 + 2.5 * j)[:, None])
    np.testing.assert_array_equal(crop[:, :, 0], want.astype(np.uint8))
    assert (crop[:, :, 2] == 200).all()
    # Over the left edge: x = j - 8.5, so column 8 is half outside (black) and half inside.
    edge = crop_image(img, np.array([1.0, 30.0, 20.0]), 20)
    assert (edge[10, :8, 2] == 0).all() and edge[10, 8, 2] == 100
    assert (edge[10, 9:, 2] == 200).all()
    grey = crop_image(ramp, np.array([50.0, 30.0, 40.0]), 16)
    np.testing.assert_array_equal(grey, crop[:, :, 0])


def test_box_from_keypoints_rejects_bad_input():
    xy = np.array([[10, 10], [50, 90], [30, 40], [20, 60]], dtype=float)
    box = box_from_keypoints(xy, np.ones(4), scale=1.0)
    np.testing.assert_allclose(box, [30, 50, 80])
    with pytest.raises(CropError, match="only 2 keypoints"):
        box_from_keypoints(xy, np.array([1, 1, 0, 0.05]))
    nan = xy.copy()
    nan[0] = np.nan
    with pytest.raises(CropError):
        box_from_keypoints(nan, np.ones(4))
    with pytest.raises(CropError, match="too small"):
        box_from_keypoints(np.zeros((4, 2)), np.ones(4))


def test_training_crop_labels_match_the_image(body):
    d = load_domain("h36m_like")
    rng = np.random.default_rng(0)
    motion = generate_motion(3, 4.0, d.fps)
    crop = render_training_crop(d, rng, body, motion, 64)
    assert crop.image.shape == (64, 64, 3)
    # Visible joints land on non-background pixels: compare with a plain re-render mask.
    px = np.round((crop.points2d + 1) * 32 - 0.5).astype(int)
    vis = crop.visible & np.all((px >= 0) & (px < 64), axis=1)
    assert vis.sum() >= 20
    # The crop is centred on the person: the points' mean is near the centre.
    assert np.abs(crop.points2d[:24].mean(0)).max() < 0.35
    # Same rng state, same crop.
    again = render_training_crop(d, np.random.default_rng(0), body, motion, 64)
    assert again.image.tobytes() == crop.image.tobytes()
    # Pose rotates the body into the camera: the head is above the pelvis in the image.
    assert crop.points2d[15, 1] < crop.points2d[0, 1]


def test_render_reports_labels_and_objects():
    K = np.array([[80.0, 0, 15.5], [0, 80.0, 15.5], [0, 0, 1]])
    v, f = box_mesh([0, 0, 2.0], [0.3, 0.3, 0.3])
    mesh = RenderMesh(v, f, np.full((8, 3), 0.5), labels=np.full(8, 7))
    res = render([mesh], K, 32, 32, np.zeros((32, 32, 3), np.uint8))
    assert res.label[16, 16] == 7 and res.object[16, 16] == 0
    assert res.image[16, 16].max() > 0 and res.label[0, 0] == -1
