"""DAPA's target-look generator and its term in the adaptation objective: occluded vertices
give no colour, the background estimate hides the person, synthetic crops carry exact truth,
and L_syn reaches BOA's two levels and the baselines on the adaptation thread."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from micro import MICRO, adapt_samples

from hmr_ros.adapt import losses as L
from hmr_ros.adapt.augment import DapaSupervision
from hmr_ros.adapt.dapa import (
    DapaGenerator,
    Estimate,
    TargetLook,
    sample_part_colours,
    synthetic_loss,
)
from hmr_ros.adapt.methods import Adapter
from hmr_ros.adapt.worker import AdaptationWorker
from hmr_ros.body.pose_vae import load_pose_vae
from hmr_ros.config import AdaptConfig, ConfigError, PipelineConfig, replace_path, updated
from hmr_ros.data.crop import box_from_keypoints, crop_matrix
from hmr_ros.geometry import axis_angle_to_matrix, perspective_project, translation_to_crop_cam
from hmr_ros.model import HMR
from hmr_ros.model.backends import TorchBackend
from hmr_ros.render import Light, RenderMesh, box_mesh, render


def pinhole(points, K):
    """The renderer's projection: camera-frame points (N, 3) to pixels (N, 2), depth as is."""
    return perspective_project(points, K, min_depth=None)

SIZE = 64
K_IMG = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])


@pytest.fixture(scope="module")
def vae():
    return load_pose_vae()


def _estimate(body, track: int = 1, crop: np.ndarray | None = None, pose_seed: int = 0,
              depth: float = 3.0) -> Estimate:
    """A standing body `depth` m in front of a 320x240 camera, facing it, its crop camera and
    box as the pipeline would compute them."""
    rng = np.random.default_rng(pose_seed)
    orient = np.array([np.pi, 0.0, 0.0])  # SMPL's y up -> camera y down, facing the camera
    pose = np.r_[orient, 0.15 * rng.standard_normal(69)].astype(np.float32)
    rot = axis_angle_to_matrix(torch.from_numpy(pose).reshape(24, 3))
    betas = torch.zeros(10)
    with torch.no_grad():
        j0 = body.forward_rotmat(rot[None], betas[None]).joints[0, 0]
    transl = torch.tensor([0.0, 0.0, depth]) - j0
    with torch.no_grad():
        pts = body.forward_rotmat(rot[None], betas[None], transl[None]).points[0].numpy()
    box = box_from_keypoints(pinhole(pts, K_IMG), np.ones(len(pts)))
    cam = translation_to_crop_cam(transl[None].double(), torch.tensor(box)[None],
                                  torch.tensor(K_IMG)[None])[0].float().numpy()
    if crop is None:
        crop = np.full((SIZE, SIZE, 3), (40, 160, 220), np.uint8)
    return Estimate(track, crop, box.astype(np.float32), K_IMG.astype(np.float32),
                    rot.numpy(), betas.numpy(), cam)


def test_texture_sampling_ignores_occluded_vertices():
    # A box straight ahead: the far face's corners project inside the near face, behind it.
    verts, faces = box_mesh((0.0, 0.0, 2.0), (0.6, 0.6, 0.6))
    parts = (verts[:, 2] > 2.0).astype(np.int64)  # 0 near face, 1 far face
    K = np.array([[60.0, 0, 31.5], [0, 60.0, 31.5], [0, 0, 1]])
    crop = np.zeros((SIZE, SIZE, 3), np.uint8)
    crop[..., 0] = 200  # the near face as the camera saw it: red
    colours, counts, mask = sample_part_colours(crop, verts, faces, K, parts, 2)
    assert counts[0] > 300 and counts[1] == 0
    np.testing.assert_allclose(colours[0], [200 / 255, 0, 0])
    assert np.isnan(colours[1]).all()
    assert mask.sum() >= 21 * 21  # the near face: 0.6 m at 1.7 m, 60 px focal
    # Without the near face the far corners are seen and sampled.
    far = np.flatnonzero(parts == 1)
    keep = np.isin(faces, far).all(1)
    colours, counts, _ = sample_part_colours(crop, verts, faces[keep][:, ::-1], K, parts, 2)
    assert counts[1] > 100
    np.testing.assert_allclose(colours[1], [200 / 255, 0, 0])


def test_a_look_keeps_part_colours_and_a_background_without_the_person(body):
    size = 128  # the bundled regressor's crop
    est = _estimate(body)
    Kc = crop_matrix(est.box, size) @ est.K
    with torch.no_grad():
        transl = L.camera_translation(torch.tensor(est.cam)[None], torch.tensor(est.box)[None],
                                      torch.tensor(est.K)[None])
        v = body.forward_rotmat(torch.tensor(est.rotmat)[None], torch.tensor(est.betas)[None],
                                transl).vertices[0].double().numpy()
    parts = np.asarray(body.part_ids)
    palette = np.random.default_rng(0).uniform(0.2, 0.9, (parts.max() + 1, 3))
    bg = np.zeros((size, size, 3), np.uint8)
    bg[:] = (30, 90, 150)
    flat = Light(intensity=0.0, ambient=1.0)  # albedo = what the camera sees
    # Each face painted in one part's colour (no blending between vertices' colours).
    mesh = RenderMesh(v, body.faces, np.ones((len(v), 3)), surface=v,
                      texture=lambda coords, labels: palette[labels], labels=parts)
    crop = render([mesh], Kc, size, size, bg, flat).image
    look = TargetLook(parts.max() + 1, history=4)
    for _ in range(3):
        look.observe(crop, v, np.asarray(body.faces), Kc, parts)
    colours = look.part_colours()
    _, counts, _ = sample_part_colours(crop, v, np.asarray(body.faces), Kc, parts,
                                       parts.max() + 1)
    seen = counts >= 20
    assert seen.sum() >= 10
    # Visible vertices sit on their own part's pixels (or an edge): the median is the colour.
    err = np.abs(colours[seen] - palette[seen]).max(1)
    assert np.median(err) < 0.02 and (err < 0.1).mean() > 0.8
    est_bg = look.background().astype(int)
    body_px = (crop.astype(int) != bg.astype(int)).any(-1)
    assert body_px.sum() > 200
    # Where the person stood the estimate is the background, not the person's colours.
    # (Hidden in every crop, so in-painted from around: within a few grey levels.)
    diff = np.abs(est_bg[body_px] - bg[0, 0].astype(int))
    assert diff.max() <= 8 and diff.mean() < 2.0
    assert np.abs(crop[body_px].astype(int) - bg[0, 0].astype(int)).mean() > 30


@pytest.mark.parametrize("pose", ["target", "random"])
def test_synthetic_crops_carry_exact_truth(body, vae, pose):
    est = _estimate(body)
    gen = DapaGenerator(body, vae, noise=0.5, pose=pose, texture="plain", seed=0)
    gen.observe([est])
    syn = gen.generate([est], 3)
    assert syn.images.shape == (3, 3, SIZE, SIZE) and len(syn) == 3
    bg = gen.looks[1].background()
    # That crop showed no person: the estimate is the crop (in-painted under the silhouette).
    np.testing.assert_allclose(bg.astype(int), est.crop.astype(int), atol=8)
    # Global orientation, shape and camera are the estimate's; the body pose is new.
    torch.testing.assert_close(syn.rotmat[:, 0], torch.tensor(est.rotmat[0]).expand(3, 3, 3))
    assert (syn.rotmat[:, 1:] - torch.tensor(est.rotmat[1:])).abs().max() > 1e-3
    torch.testing.assert_close(syn.points3d, body.forward_rotmat(syn.rotmat, syn.betas).points)
    Kc = crop_matrix(est.box, SIZE) @ est.K
    for i in range(3):
        # Independently: the points through the renderer's own projection, into the crop.
        transl = L.camera_translation(syn.cam[i:i + 1], syn.box[i:i + 1], syn.K[i:i + 1])
        cam_pts = (syn.points3d[i] + transl[0]).double().numpy()
        uv_crop = pinhole(cam_pts, Kc)  # crop pixels
        kp_px = (syn.keypoints[i].numpy() + 1.0) * SIZE / 2.0 - 0.5
        np.testing.assert_allclose(kp_px, uv_crop, atol=1e-3)
        # The rendered body is where its joints project: torso joints on its silhouette.
        img = (syn.images[i].permute(1, 2, 0).numpy() * 255).round().astype(int)
        sil = (np.abs(img - bg.astype(int)) > 2).any(-1)
        for j in (0, 3, 6, 9, 12):  # pelvis, spine1-3, neck
            u, v = np.round(uv_crop[j]).astype(int)
            if 0 <= u < SIZE and 0 <= v < SIZE:
                assert sil[max(0, v - 1):v + 2, max(0, u - 1):u + 2].any(), j
        # And the silhouette spans the projected vertices' extent (to a pixel).
        with torch.no_grad():
            verts = body.forward_rotmat(syn.rotmat[i:i + 1], syn.betas[i:i + 1],
                                        transl).vertices[0].double().numpy()
        uv_v = pinhole(verts, Kc)
        inside = (uv_v >= 0).all(1) & (uv_v <= SIZE - 1).all(1)
        ys, xs = np.nonzero(sil)
        assert abs(xs.min() - uv_v[inside, 0].min()) <= 1.5
        assert abs(ys.max() - uv_v[inside, 1].max()) <= 1.5
    # The loss is zero at the truth and positive away from it.
    from hmr_ros.model.hmr import RegressorOutput

    truth = RegressorOutput(torch.zeros(3, 144), syn.rotmat, syn.betas, syn.cam)
    total, terms = synthetic_loss(body, truth, syn)
    assert float(total) < 1e-8
    off = RegressorOutput(torch.zeros(3, 144), syn.rotmat, syn.betas + 0.5, syn.cam * 1.1)
    _, terms = synthetic_loss(body, off, syn)
    assert terms["syn_2d"] > 1e-4 and terms["syn_shape"] > 0.2 and terms["syn_3d"] > 0


def test_zero_noise_renders_the_decoded_estimate(body, vae):
    est = _estimate(body, pose_seed=3)
    gen = DapaGenerator(body, vae, noise=0.0, texture="target")
    gen.observe([est])
    a, b = gen.generate([est], 2), gen.generate([est], 1)
    # batched matmuls: equal up to the last bits
    torch.testing.assert_close(a.rotmat[0], a.rotmat[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(a.rotmat[0], b.rotmat[0], rtol=0, atol=1e-5)
    with torch.no_grad():
        from hmr_ros.geometry import matrix_to_axis_angle

        dec = vae.decode_rotmat(vae.encode(matrix_to_axis_angle(
            torch.tensor(est.rotmat[1:])).reshape(1, 69)))
    torch.testing.assert_close(a.rotmat[0, 1:], dec[0])
    with pytest.raises(ValueError, match="target|random"):
        DapaGenerator(body, vae, pose="vposer")
    assert gen.generate([_estimate(body, track=9)], 2) is None  # a track never observed


def test_config_fields_are_checked():
    cfg = replace_path(PipelineConfig(), "adapt.dapa.weight", 0.5)
    assert cfg.adapt.dapa.weight == 0.5 and AdaptConfig().dapa.weight == 0.0
    for key, value in (("adapt.dapa.pose", "vposer"), ("adapt.dapa.texture", "photo"),
                       ("adapt.dapa.batch", 0), ("adapt.dapa.noise", -1.0)):
        with pytest.raises(ConfigError, match="dapa"):
            replace_path(PipelineConfig(), key, value)


def _worker(model, body, method: str, **dapa):
    c = updated(AdaptConfig(), {"schedule": "every_frame", "tau": 2, "buffer_frames": 8,
                                "min_keypoints": 4, "method": method, **dapa})
    backend = TorchBackend(model)
    return AdaptationWorker(Adapter(model, body, c), c, backend.update_weights)


@pytest.mark.parametrize("method", ["boa_2nd", "framewise", "two_stage"])
def test_synthetic_term_enters_the_objective_of_every_method(body, frames, method):
    torch.manual_seed(0)
    worker = _worker(HMR(MICRO), body, method, **{"dapa.weight": 0.5, "dapa.batch": 2})
    for s in adapt_samples(frames[:4]):
        worker.submit([s])
    steps = sum(worker.run_pending() for _ in range(4))
    assert steps == 4 and worker.steps + worker.rollbacks == 4
    terms = worker.reports[-1].terms
    assert np.isfinite(terms["synthetic"]) and terms["synthetic"] > 0
    for k in ("syn_3d", "syn_pose", "syn_2d", "syn_shape"):
        assert k in terms
    ms = worker.augmenter(DapaSupervision).ms
    assert len(ms) == 4 and min(ms) > 0
    # Off by default: no generator, no term.
    off = _worker(HMR(MICRO), body, method)
    for s in adapt_samples(frames[:2]):
        off.submit([s])
    off.run_pending()
    assert off.augmenter(DapaSupervision) is None and "synthetic" not in off.reports[-1].terms


def test_bilevel_uses_the_synthetic_term_in_both_levels(body, frames):
    torch.manual_seed(0)
    worker = _worker(HMR(MICRO), body, "boa_2nd", **{"dapa.weight": 1.0, "dapa.batch": 2})
    for s in adapt_samples(frames[:3]):
        worker.submit([s])
    with_syn = worker.next_batch()
    batch = dataclasses.replace(with_syn, synthetic=None)
    assert with_syn.synthetic is not None and batch.synthetic is None
    adapter = worker.adapter
    params = adapter.params()
    low_a, t_low = adapter.lower(params, with_syn)
    low_b, _ = adapter.lower(params, batch)
    up_a, t_up = adapter.upper(params, with_syn)
    up_b, _ = adapter.upper(params, batch)
    assert "synthetic" in t_low and "synthetic" in t_up
    torch.testing.assert_close(low_a - low_b, 1.0 * t_low["synthetic"])
    torch.testing.assert_close(up_a - up_b, 1.0 * t_up["synthetic"])


def test_generation_runs_on_the_adaptation_thread(body, frames):
    torch.manual_seed(0)
    worker = _worker(HMR(MICRO), body, "framewise", **{"dapa.weight": 0.5})
    threads: list[int] = []
    generator = worker.augmenter(DapaSupervision).generator
    real = generator.generate

    def recording(*args, **kwargs):  # the real generator, with the thread it ran on noted
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    generator.generate = recording
    worker.start()
    try:
        for s in adapt_samples(frames[:6]):
            worker.submit([s])
        deadline = threading.Event()
        for _ in range(600):
            if worker.steps >= 2:
                break
            deadline.wait(0.05)
    finally:
        worker.stop()
    assert worker.steps >= 2 and threads
    assert set(threads) == {worker._thread.ident} != {threading.get_ident()}
    worker.forget(frames[0].detections[0].id)
    assert frames[0].detections[0].id not in generator.looks


def test_node_parameters_map_to_the_dapa_config():
    from hmr_ros.ros.params import load_parameters

    cfg, _ = load_parameters({"adapt.dapa.weight": 0.5, "adapt.dapa.pose": "random",
                              "adapt": {"dapa": {"every": 3}}})
    assert (cfg.adapt.dapa.weight, cfg.adapt.dapa.pose, cfg.adapt.dapa.every) == (0.5, "random",
                                                                                  3)
    with pytest.raises(ConfigError, match="adapt.dapa.texture"):
        load_parameters({"adapt.dapa.texture": "photo"})
    with pytest.raises(ConfigError, match="adapt.dapa.batch"):
        load_parameters({"adapt.dapa.batch": 1.5})


@pytest.mark.ros
def test_rclpy_node_builds_its_worker_with_dapa_from_parameters():
    """Run by the lead with ROS 2: the node's adapt.dapa_* parameters reach its worker."""
    from ros_harness import require_ros

    require_ros("rclpy")
    import rclpy
    from rclpy.parameter import Parameter

    from hmr_ros.ros.node import HmrRosNode

    rclpy.init()
    try:
        node = HmrRosNode(parameter_overrides=[
            Parameter("adapt.dapa.weight", value=0.5),
            Parameter("adapt.dapa.pose", value="random"),
            Parameter("adapt.dapa.texture", value="plain")])
        try:
            assert node.get_parameter("adapt.dapa.weight").value == 0.5
            dapa = node.pipeline.adaptation.augmenter(DapaSupervision).generator
            assert dapa is not None and (dapa.pose, dapa.texture) == ("random", "plain")
        finally:
            node.shutdown()
            node.destroy_node()
        with pytest.raises(ConfigError, match="adapt.dapa.pose"):
            HmrRosNode(parameter_overrides=[Parameter("adapt.dapa.pose", value="vposer")])
    finally:
        rclpy.shutdown()
