"""Motion cues (issue 15): ground-truth flow from the renderer, mesh self-visibility, DIS flow
between crops in image pixels, the flow loss and its anchor, and the term inside adaptation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from micro import MICRO, adapt_samples

from hmr_ros.adapt import losses as L
from hmr_ros.adapt.augment import FlowCues
from hmr_ros.adapt.flow_term import FlowCache, flow_term, visible_in_crop
from hmr_ros.adapt.methods import Adapter
from hmr_ros.adapt.worker import AdaptationWorker
from hmr_ros.config import AdaptConfig, ConfigError, PipelineConfig, updated
from hmr_ros.data.crop import crop_matrix
from hmr_ros.data.optical_flow import crop_flow, dis_flow, to_image_motion
from hmr_ros.model import HMR
from hmr_ros.render import RenderMesh, box_mesh, render, vertex_visibility
from hmr_ros.world.flow import sequence_flow, true_flow

W, H = 160, 160
K = np.array([[200.0, 0.0, 79.5], [0.0, 200.0, 79.5], [0.0, 0.0, 1.0]])


def _posed(body, transl, pose=None) -> np.ndarray:
    """Vertices (V, 3) of the synthetic body facing the camera at `transl`."""
    p = torch.zeros(1, 72)
    p[0, 0] = np.pi  # SMPL's y up -> the camera's y down
    if pose is not None:
        p[0, 3:] = torch.as_tensor(pose)
    t = torch.tensor([list(transl)], dtype=torch.float32)
    out = body.forward_axis_angle(p, torch.zeros(1, 10), t)
    return out.vertices[0].double().numpy()


# ------------------------------------------------------------------ ground truth


def test_true_flow_of_a_translated_body_is_the_projection_of_its_motion(body):
    va = _posed(body, [0.0, 0.1, 3.0])
    vb = va + np.array([0.05, -0.02, 0.0])
    tf = true_flow([va], [vb], [body.faces], K, W, H)
    assert tf.mask.sum() > 500 and tf.flow.shape == (H, W, 2)
    # Lateral motion d at depth z moves the image by f d / z: depth from the z-buffer.
    from hmr_ros.render import rasterize
    z = rasterize(va, body.faces, K, W, H).depth[tf.mask]
    np.testing.assert_allclose(tf.flow[tf.mask][:, 0], 200.0 * 0.05 / z, rtol=1e-3)
    np.testing.assert_allclose(tf.flow[tf.mask][:, 1], -200.0 * 0.02 / z, rtol=1e-3)
    assert not tf.flow[~tf.mask].any() and (tf.owner[tf.mask] == 0).all()
    assert tf.occluded[tf.mask].mean() < 0.02  # nothing hides it in frame b


def test_true_flow_marks_what_an_occluder_hides_in_the_next_frame(body):
    va = _posed(body, [0.0, 0.1, 3.0])
    bv, bf = box_mesh([-0.6, 0.0, 2.0], [0.4, 3.0, 0.1])  # a pillar left of the body
    moved = bv + np.array([0.6, 0.0, 0.0])  # ... slides in front of it
    tf = true_flow([va, bv], [va, moved], [body.faces, bf], K, W, H)
    person = tf.owner == 0
    hidden = person & tf.occluded
    assert hidden.sum() > 0.1 * person.sum()
    # The hidden pixels are those the moved pillar now covers.
    covered = render([RenderMesh(moved, bf, np.ones((8, 3)), smooth=False)], K, W, H).object
    assert (covered[hidden] == 0).mean() > 0.95


def test_sequence_flow_covers_exactly_the_rendered_surfaces():
    from hmr_ros.world.domain import load_domain
    from hmr_ros.world.scene import SyntheticSequence

    d = load_domain("pw3d_like")
    d = dataclasses.replace(d, image=dataclasses.replace(d.image, render_scale=0.2))
    seq = SyntheticSequence(d, seed=3, duration_s=0.2)
    fr = seq.frame(2)
    tf = sequence_flow(seq, 2)
    np.testing.assert_array_equal(tf.mask, fr.object >= 0)
    np.testing.assert_array_equal(tf.owner, fr.object)
    with pytest.raises(IndexError):
        sequence_flow(seq, len(seq) - 1)


def test_vertex_visibility_is_the_front_of_the_body(body):
    v = _posed(body, [0.0, 0.1, 3.0])
    vis = vertex_visibility(v, body.faces, K, W, H)
    from hmr_ros.render import vertex_normals
    n = vertex_normals(v, body.faces)
    view = v / np.linalg.norm(v, axis=1, keepdims=True)
    facing = (n * view).sum(1)
    assert 0.25 < vis.mean() < 0.6
    assert vis[facing > 0.3].mean() < 0.05  # pointing away: hidden by the body itself
    assert vis[facing < -0.5].mean() > 0.75  # facing the camera: mostly seen (arms hide some)
    # Off the image: nothing visible.
    assert not vertex_visibility(v + np.array([5.0, 0, 0]), body.faces, K, W, H).any()


# ------------------------------------------------------------------ estimated flow


def test_image_motion_of_zero_crop_flow_is_the_box_motion():
    box_a = np.array([50.0, 60.0, 40.0])
    box_b = np.array([53.0, 58.0, 40.0])
    m = to_image_motion(np.zeros((16, 16, 2), np.float32), box_a, box_b)
    np.testing.assert_allclose(m[..., 0], 3.0, atol=1e-5)
    np.testing.assert_allclose(m[..., 1], -2.0, atol=1e-5)
    # A box twice the size: a crop pixel covers twice the image, motion grows from the centre.
    m2 = to_image_motion(np.zeros((16, 16, 2), np.float32), box_a, box_a * [1, 1, 2])
    c = np.arange(16) + 0.5 - 8.0  # crop pixel centres relative to the box centre, in px
    np.testing.assert_allclose(m2[0, :, 0], c * 40 / 16, atol=1e-4)


def test_dis_between_crops_recovers_the_true_image_motion(body):
    va = _posed(body, [0.0, 0.1, 3.0])
    vb = va + np.array([0.03, 0.01, 0.0])

    rng = np.random.default_rng(0)
    alb = rng.uniform(0.2, 1.0, (len(va), 3))
    bg = (rng.uniform(0, 255, (H, W, 3))).astype(np.uint8)
    ia = render([RenderMesh(va, body.faces, alb)], K, W, H, bg).image
    ib = render([RenderMesh(vb, body.faces, alb)], K, W, H, bg).image
    # Crops with different boxes (the box follows the person).
    box_a, box_b = np.array([80.0, 85.0, 120.0]), np.array([82.0, 86.0, 124.0])
    from hmr_ros.data.crop import crop_image
    r = 64
    f = crop_flow(crop_image(ia, box_a, r), box_a, crop_image(ib, box_b, r), box_b, "medium")
    assert f.forward.shape == (2, r, r) and f.forward.dtype == np.float16
    assert f.nbytes == 8 * r * r
    tf = true_flow([va], [vb], [body.faces], K, W, H)
    inv = np.linalg.inv(crop_matrix(box_a, r))
    cy, cx = np.mgrid[0:r, 0:r]
    img = inv @ np.stack([cx.ravel(), cy.ravel(), np.ones(r * r)])
    px = np.round(img[:2]).astype(int)
    ok = tf.mask[px[1], px[0]]
    # Away from the silhouette (erode the mask by a few pixels).
    import cv2
    inner = cv2.erode(tf.mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    ok &= inner[px[1], px[0]]
    truth = tf.flow[px[1], px[0]][ok]
    est = f.forward.reshape(2, -1).T.astype(np.float32)[ok]
    epe = np.linalg.norm(est - truth, axis=1).mean()
    assert ok.sum() > 200
    assert epe < 0.35 * np.linalg.norm(truth, axis=1).mean()  # far better than no flow
    with pytest.raises(ValueError, match="preset"):
        dis_flow(ia, ib, "slowest")


# ------------------------------------------------------------------ the loss


def _uniform(d, b=1, r=16):
    return torch.tensor(d, dtype=torch.float32).view(1, 2, 1, 1).expand(b, 2, r, r).clone()


def test_flow_loss_is_zero_for_the_true_motion_and_pulls_towards_it():
    torch.manual_seed(0)
    box = torch.tensor([[100.0, 100.0, 80.0]])
    uv_a = 100.0 + 30.0 * (torch.rand(1, 50, 2) - 0.5)
    d = [3.0, -1.5]
    fwd, bwd = _uniform(d), _uniform([-3.0, 1.5])
    vis, w = torch.ones(1, 50, dtype=torch.bool), torch.ones(1)
    true_b = uv_a + torch.tensor(d)
    assert float(L.flow_loss(uv_a, true_b, fwd, bwd, box, box, vis, w)) < 1e-5
    # Standing still where the image moved: a loss, and descent moves the body along d.
    p = torch.zeros(2, requires_grad=True)
    loss = L.flow_loss(uv_a, uv_a + p, fwd, bwd, box, box, vis, w)
    loss.backward()
    assert float(loss.detach()) > 0.5
    step = -p.grad
    assert float(step @ torch.tensor(d)) > 0.9 * float(step.norm()) * np.hypot(*d)
    # Scale-free: the same relative error on a twice larger motion gives the same loss.
    l1 = L.flow_loss(uv_a, uv_a + 0.5 * torch.tensor(d), fwd, bwd, box, box, vis, w)
    l2 = L.flow_loss(uv_a, uv_a + torch.tensor(d), 2 * fwd, 2 * bwd, box, box, vis, w)
    torch.testing.assert_close(l1, l2)


def test_hidden_vertices_and_pairs_without_flow_contribute_nothing():
    torch.manual_seed(1)
    box = torch.tensor([[100.0, 100.0, 80.0]] * 2)
    uv_a = 100.0 + 30.0 * (torch.rand(2, 40, 2) - 0.5)
    fwd, bwd = _uniform([2.0, 0.0], 2), _uniform([-2.0, 0.0], 2)
    uv_b = uv_a + torch.tensor([2.0, 0.0]) + 0.3 * torch.randn(2, 40, 2)
    vis = torch.rand(2, 40) > 0.4
    w = torch.tensor([1.0, 0.0])
    base = L.flow_loss(uv_a, uv_b, fwd, bwd, box, box, vis, w)
    assert float(base) > 0
    wild = uv_b.clone()
    wild[~vis] += 1000.0  # hidden vertices anywhere
    wild[1] += 500.0  # the pair without flow anywhere
    torch.testing.assert_close(L.flow_loss(uv_a, wild, fwd, bwd, box, box, vis, w), base)
    # One visible outlier: its displacement is clipped to the largest flow norm (2 px) along
    # its direction (here the flow's: no error forward); backward, it samples the flow where
    # it went (off the crop: none), an error of 2 px over the mean norm 2 * 39 / 40 px.
    one = uv_a + torch.tensor([2.0, 0.0])
    one[0, 0, 0] += 1e4
    v = torch.ones(2, 40, dtype=torch.bool)
    out = L.flow_loss(uv_a, one, fwd, bwd, box, box, v, w)
    assert float(out) == pytest.approx(0.5 * (2.0 / 40 / 1.95), rel=1e-4)
    # ... and still has a gradient, towards the flow's direction.
    p = torch.zeros(2, requires_grad=True)
    far = uv_a.clone()
    far[0, 0] = far[0, 0] + torch.stack([-50.0 + p[0], 50.0 + p[1]])
    L.flow_loss(uv_a, far, fwd, bwd, box, box, v, w).backward()
    assert float(p.grad.norm()) > 0


def test_anchor_is_zero_at_the_reference_and_grows_away_from_it():
    rot = torch.eye(3).expand(2, 24, 3, 3).clone()
    betas = torch.zeros(2, 10)
    assert float(L.anchor_loss(rot, betas, rot, betas)) == 0
    assert float(L.anchor_loss(rot, betas + 0.1, rot, betas)) == pytest.approx(0.01)
    assert float(L.anchor_loss(rot * 0.9, betas, rot, betas)) == pytest.approx(0.03)


def test_flow_term_of_rendered_bodies_is_small_at_the_truth_and_large_when_static(body):
    """Render a body, move and re-pose it, crop both frames, give the term the ground-truth
    flow on the crop grids and the true bodies: near zero; the body standing still: large."""
    pose_b = np.zeros(69)
    pose_b[15 * 3 + 2] = -0.4  # lift the left arm a little
    ta, tb = np.array([0.0, 0.1, 3.0]), np.array([0.04, 0.09, 3.0])
    va, vb = _posed(body, ta), _posed(body, tb, pose_b)
    tf_ab = true_flow([va], [vb], [body.faces], K, W, H)
    tf_ba = true_flow([vb], [va], [body.faces], K, W, H)
    r = 64
    box_a, box_b = np.array([80.0, 85.0, 130.0]), np.array([82.0, 85.0, 130.0])

    def on_grid(tf, box):
        inv = np.linalg.inv(crop_matrix(box, r))
        cy, cx = np.mgrid[0:r, 0:r]
        img = inv @ np.stack([cx.ravel(), cy.ravel(), np.ones(r * r)])
        px = np.clip(np.round(img[:2]).astype(int), 0, W - 1)
        return torch.from_numpy(tf.flow[px[1], px[0]].T.reshape(2, r, r).copy())[None]

    fwd, bwd = on_grid(tf_ab, box_a), on_grid(tf_ba, box_b)
    Kt = torch.as_tensor(K, dtype=torch.float32)[None]
    ba, bb = (torch.as_tensor(b, dtype=torch.float32)[None] for b in (box_a, box_b))
    vis = (visible_in_crop(torch.as_tensor(va)[None], Kt, ba, body.faces, r)
           & visible_in_crop(torch.as_tensor(vb)[None], Kt, bb, body.faces, r))
    assert vis.sum() > 200
    zero = torch.zeros(1, 3)
    uv_a = L.project_pixels(torch.as_tensor(va, dtype=torch.float32)[None], zero, Kt)
    uv_b = L.project_pixels(torch.as_tensor(vb, dtype=torch.float32)[None], zero, Kt)
    w = torch.ones(1)
    at_truth = float(L.flow_loss(uv_a, uv_b, fwd, bwd, ba, bb, vis, w))
    static = float(L.flow_loss(uv_a, uv_a, fwd, bwd, ba, bb, vis, w))
    # Not 0 at the truth: vertices on the silhouette sample a flow mixed with the background's
    # (half their bilinear taps are off the body); the median vertex is exact to 0.02 px.
    # Static, every vertex is off by its whole flow: 1 after the normalisation.
    assert at_truth < 0.35 and static == pytest.approx(1.0, abs=0.02)


# ------------------------------------------------------------------ inside adaptation


def _worker(body, frames, **cfg):
    c = updated(AdaptConfig(), {"schedule": "every_frame", "tau": 2,
                                              "buffer_frames": 8, "min_keypoints": 4, **cfg})
    torch.manual_seed(0)
    model = HMR(MICRO)
    worker = AdaptationWorker(Adapter(model, body, c), c, lambda s, v: None)
    for s in adapt_samples(frames[:5]):
        worker.submit([s])
    return worker


@pytest.mark.parametrize("method", ["boa_2nd", "joint"])
def test_flow_and_anchor_terms_drive_adaptation(body, frames, method):
    worker = _worker(body, frames, method=method,
                     **{"flow.weight": 1.0, "loss.anchor": 1.0, "loss.motion": 0.0})
    before = {k: v.clone() for k, v in worker.adapter.state_dict().items()}
    for _ in range(5):
        worker.run_pending()
    reports = list(worker.reports)
    assert reports and all(np.isfinite(r.terms["flow"]) for r in reports)
    assert reports[-1].terms["flow"] > 0 and "anchor" in reports[-1].terms
    cache = worker.augmenter(FlowCues).cache
    assert cache.computed >= 4  # frames 1..4 against their predecessors
    assert cache.nbytes == len(cache) * 8 * 32 * 32
    after = worker.adapter.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_flow_term_has_a_gradient_on_the_weights(body, frames):
    worker = _worker(body, frames, method="joint", **{"flow.weight": 1.0})
    for _ in range(4):  # frames 0..3: frame 3 with its predecessor
        batch = worker.next_batch()
    assert batch.flow is not None and float(batch.flow.weight.sum()) == 1.0
    a = worker.adapter
    now, _, _, _, earlier = a._outputs(None, batch)
    loss = flow_term(a.body, earlier, now, batch.flow, batch.current.box, batch.current.K)
    grads = torch.autograd.grad(loss, list(a.params().values()), allow_unused=True)
    assert float(loss.detach()) > 0
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_without_w_flow_no_flow_is_computed(body, frames):
    worker = _worker(body, frames, method="boa_2nd")
    worker.run_pending()
    assert worker.augmenter(FlowCues) is None and "flow" not in worker.reports[-1].terms


def test_flow_cache_is_bounded():
    cache = FlowCache(2)
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    box = np.array([8.0, 8.0, 16.0])
    for k in range(4):
        cache.get((0, k, k + 1), crop, box, crop, box, "ultrafast")
    cache.get((0, 3, 4), crop, box, crop, box, "ultrafast")
    assert len(cache) == 2 and cache.computed == 4


def test_flow_config_is_validated():
    with pytest.raises(ConfigError, match=r"adapt.flow.preset must be one of .*'medium'.*got "
                                          r"'slow'"):
        PipelineConfig(adapt=updated(AdaptConfig(), {"flow.preset": "slow"}))
    with pytest.raises(ConfigError, match=r"adapt.flow.weight must be >= 0, got -1\.0"):
        PipelineConfig(adapt=updated(AdaptConfig(), {"flow.weight": -1.0}))
    for preset in ("ultrafast", "fast", "medium"):  # every preset `hmr-ros bench flow` measures
        cfg = PipelineConfig(adapt=updated(AdaptConfig(), {"flow.preset": preset,
                                                          "flow.weight": 0.5}))
        assert (cfg.adapt.flow.preset, cfg.adapt.flow.weight) == (preset, 0.5)


def test_bench_flow_writes_ms_and_end_point_errors(tmp_path):
    import json

    from hmr_ros.cli import main

    out = tmp_path / "flow.json"
    assert main(["bench", "flow", "--domains", "pw3d_like", "--duration", "0.1",
                 "--repeats", "1", "--adapt-method", "none", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {r["preset"]: r for r in data["results"]}
    assert set(rows) == {"ultrafast", "fast", "medium"}
    assert all(r["pairs"] >= 1 and r["crop_flow_ms_p50"] > 0 and r["pixels"] > 100
               for r in rows.values())
    # The estimate beats assuming no motion; the table sits next to the JSON.
    assert rows["medium"]["epe_px"] < rows["medium"]["zero_flow_epe_px"]
    check = data["model_check"][0]
    assert check["vertices"] > 0 and np.isfinite(check["ratio"])
    assert data["bytes_per_pair"] == 8 * rows["fast"]["crop"] ** 2
    assert "| pw3d_like | fast |" in (tmp_path / "flow.md").read_text()
