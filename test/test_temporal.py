"""The temporal refinement stage (issue 18): causality, lookahead bounds, static bodies,
shapes, honest stamps, the pipeline and runner wiring, checkpoints and configuration."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from micro import MICRO, random_refiner

from hmr_ros.body import BodyModel
from hmr_ros.config import ConfigError, PipelineConfig, replace_path, to_flat_dict
from hmr_ros.data.frame import CameraModel, Detection, Frame
from hmr_ros.model import HMR
from hmr_ros.model.backends.torch import TorchBackend
from hmr_ros.pipeline import Pipeline, build_temporal
from hmr_ros.stream.runner import StreamRunner
from hmr_ros.temporal.checkpoint import RefinerCheckpointError, load_refiner, save_refiner
from hmr_ros.temporal.features import FrameFeatures, map_shape, regress_with_features
from hmr_ros.temporal.kinematics import JointModel, project_to_crop
from hmr_ros.temporal.model import EST_DIM, TARConfig, TemporalRefiner
from hmr_ros.temporal.refine import WindowSpec, history_arrays, run_refiner, window_inputs
from hmr_ros.temporal.stage import TemporalStage
from hmr_ros.temporal.window import window_indices

SMALL = dict(d_model=16, heads=2, layers=1, ff=32, local_channels=4, hidden=16, iterations=2)


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel()


@pytest.fixture(scope="module")
def regressor() -> HMR:
    torch.manual_seed(0)
    return HMR(MICRO).eval()


def features_sequence(regressor: HMR, n: int, seed: int = 0) -> list[FrameFeatures]:
    """n frames of one person: random crops through the regressor, a box and a camera."""
    rng = np.random.default_rng(seed)
    crops = torch.from_numpy(rng.random((n, 3, 32, 32), dtype=np.float32))
    with torch.inference_mode():
        out, feats = regress_with_features(regressor, crops)
    K = np.array([[500, 0, 320], [0, 500, 240], [0, 0, 1]], np.float32)
    return [FrameFeatures(feats.global_[i].numpy(), feats.fmap[i].numpy(),
                          out.pose6d[i].numpy(), out.betas[i].numpy(), out.cam[i].numpy(),
                          np.array([320, 240, 200], np.float32), K) for i in range(n)]


def refine_all(model, seq, spec: WindowSpec) -> np.ndarray:
    """(N, 157) refined estimates of every frame of `seq` as a target, each reading the
    sequence as the online stage would (newest = target + lookahead, clipped)."""
    arrays = history_arrays(seq)
    n = len(seq)
    t = np.arange(n)
    inputs = window_inputs(arrays, t, np.minimum(t + spec.future, n - 1), spec)
    with torch.inference_mode():
        return run_refiner(model, inputs)[-1].numpy()


def perturbed(seq, i: int, seed: int = 9) -> list[FrameFeatures]:
    rng = np.random.default_rng(seed)
    f = seq[i]
    new = dataclasses.replace(
        f, global_=f.global_ + rng.normal(0, 1, f.global_.shape).astype(np.float32),
        fmap=f.fmap + rng.normal(0, 1, f.fmap.shape).astype(np.float32),
        pose6d=f.pose6d + 0.1 * rng.normal(0, 1, f.pose6d.shape).astype(np.float32))
    return seq[:i] + [new] + seq[i + 1:]


def test_features_are_the_regressor_output(regressor):
    x = torch.rand(3, 3, 32, 32)
    with torch.inference_mode():
        ref = regressor(x)
        out, feats = regress_with_features(regressor, x)
    assert torch.equal(ref.pose6d, out.pose6d) and torch.equal(ref.cam, out.cam)
    c, side = map_shape(regressor)
    assert feats.fmap.shape == (3, c, side, side)
    assert feats.global_.shape == (3, regressor.feature_dim)


def test_joint_model_matches_body_model(body):
    torch.manual_seed(3)
    q = torch.linalg.qr(torch.randn(4, 24, 3, 3))[0]
    rot = q * torch.det(q).sign()[..., None, None]
    betas = torch.randn(4, 10)
    want = body.forward_rotmat(rot, betas).joints
    assert torch.allclose(JointModel(body)(rot, betas), want, atol=1e-5)


def test_projection_through_the_real_camera():
    # A joint on the optical axis of a crop centred on the principal point lands at 0, 0.
    K = torch.tensor([[[600.0, 0, 300], [0, 600, 200], [0, 0, 1]]])
    box = torch.tensor([[300.0, 200.0, 100.0]])
    cam = torch.tensor([[0.8, 0.0, 0.0]])
    uv = project_to_crop(torch.zeros(1, 1, 3), cam, box, K)
    assert torch.allclose(uv, torch.zeros(1, 1, 2), atol=1e-5)
    # tx = 0.5 moves the origin half a crop radius right: u = 0.5 * s in crop units.
    uv = project_to_crop(torch.zeros(1, 1, 3), torch.tensor([[0.8, 0.5, 0.0]]), box, K)
    assert uv[0, 0, 0].item() == pytest.approx(0.4, abs=1e-5)


def test_window_indices():
    assert window_indices(2, 2, 3, 0).tolist() == [0, 0, 1, 2]
    assert window_indices(5, 7, 2, 2).tolist() == [3, 4, 5, 6, 7]
    assert window_indices(6, 7, 2, 2).tolist() == [4, 5, 6, 7, 7]  # never past newest
    with pytest.raises(ValueError):
        window_indices(5, 4, 2, 0)


def test_refiner_shapes(body, regressor):
    model = random_refiner(body, regressor)
    seq = features_sequence(regressor, 6)
    inputs = window_inputs(history_arrays(seq), np.array([3, 5]), np.array([5, 5]),
                           WindowSpec(past=3, local_past=2, future=2))
    assert inputs["glob"].shape == (2, 6, regressor.feature_dim)
    assert inputs["fmap"].shape[:2] == (2, 5)
    outs = run_refiner(model, inputs)
    assert len(outs) == SMALL["iterations"] + 1
    assert all(o.shape == (2, EST_DIM) and torch.isfinite(o).all() for o in outs)


def test_untrained_refiner_returns_the_regressor_estimate(body, regressor):
    channels, _ = map_shape(regressor)
    model = TemporalRefiner(TARConfig(feat_dim=regressor.feature_dim, map_channels=channels,
                                      pool=False, **SMALL), body).eval()
    seq = features_sequence(regressor, 5)
    out = refine_all(model, seq, WindowSpec(3, 2, 0))
    assert np.allclose(out, np.stack([f.estimate for f in seq]), atol=1e-6)


@pytest.mark.parametrize("future", [0, 2, 4])
def test_output_at_t_reads_frames_up_to_t_plus_d_only(body, regressor, future):
    model = random_refiner(body, regressor)
    spec = WindowSpec(past=4, local_past=2, future=future)
    seq = features_sequence(regressor, 12)
    base = refine_all(model, seq, spec)
    t = 5
    after = refine_all(model, perturbed(seq, t + future + 1), spec)
    assert np.array_equal(after[: t + 1], base[: t + 1])  # no frame <= t read t + d + 1
    # ... and the test can fail: frame t + d itself does move the output at t.
    moved = refine_all(model, perturbed(seq, t + future), spec)
    assert np.abs(moved[t] - base[t]).max() > 1e-4


def test_identical_frames_refine_to_a_static_body(body, regressor):
    model = random_refiner(body, regressor)
    seq = features_sequence(regressor, 1) * 10
    for future in (0, 3):
        out = refine_all(model, seq, WindowSpec(4, 2, future))
        assert np.abs(out - out[0]).max() == 0.0  # edge padding: every window is the same
        assert np.abs(out[0] - seq[0].estimate).max() > 1e-4  # and it was refined


def frames(n: int, seed: int = 0, same: bool = False) -> list[Frame]:
    rng = np.random.default_rng(seed)
    cam = CameraModel.from_focal(100.0, 64, 48)
    first = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = first if same else rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        out.append(Frame(image=img, stamp_ns=1_000 + 33 * i, camera=cam, index=i,
                         detections=(Detection(7, None, np.array([16.0, 8, 48, 44])),)))
    return out


def pipeline(body, regressor, future: int = 0) -> Pipeline:
    stage = TemporalStage(random_refiner(body, regressor), body,
                          WindowSpec(past=4, local_past=2, future=future))
    return Pipeline(TorchBackend(regressor), body, PipelineConfig(), None, stage)


def run(pipe: Pipeline, fr: list[Frame]):
    return list(StreamRunner(pipe).run(fr))


def test_causal_pipeline_never_reads_a_future_frame(body, regressor):
    fr = frames(8)
    base = run(pipeline(body, regressor), fr)
    changed = list(fr)
    changed[5] = dataclasses.replace(fr[5], image=255 - fr[5].image)
    other = run(pipeline(body, regressor), changed)
    assert [r.index for _, r in base] == list(range(8))
    for t in range(5):
        assert np.array_equal(base[t][1].people[0].joints, other[t][1].people[0].joints)
    assert not np.allclose(base[5][1].people[0].joints, other[5][1].people[0].joints)
    # The refinement changed the regressor's body.
    plain = Pipeline(TorchBackend(regressor), body, PipelineConfig()).process(fr[3])
    assert np.abs(plain.people[0].joints - base[3][1].people[0].joints).max() > 1e-5


def test_lookahead_keeps_honest_stamps_and_bounds(body, regressor):
    d = 2
    fr = frames(9)
    pipe = pipeline(body, regressor, future=d)
    runner = StreamRunner(pipe)
    emitted = []
    for i, f in enumerate(fr):
        ready = runner.process_all(f)
        # Frame t comes out when frame t + d has gone in, with its own index and stamp.
        assert [r.index for _, r in ready] == ([i - d] if i >= d else [])
        for frame, r in ready:
            assert r.stamp_ns == frame.stamp_ns == fr[r.index].stamp_ns
        emitted += ready
    emitted += runner.flush()
    assert [r.index for _, r in emitted] == list(range(9))
    # A frame with nobody in it keeps its place in the order.
    runner = StreamRunner(pipeline(body, regressor, future=d))
    gap = fr[:3] + [dataclasses.replace(fr[3], detections=())] + fr[4:6]
    order = [r.index for f in gap for _, r in runner.process_all(f)]
    order += [r.index for _, r in runner.flush()]
    assert order == list(range(6))
    # The output for frame 3 depends on frames up to 3 + d only.
    changed = list(fr)
    changed[3 + d + 1] = dataclasses.replace(fr[6], image=255 - fr[6].image)
    other = run(pipeline(body, regressor, future=d), changed)
    assert np.array_equal(emitted[3][1].people[0].joints, other[3][1].people[0].joints)
    changed[3 + d] = dataclasses.replace(fr[5], image=255 - fr[5].image)
    other = run(pipeline(body, regressor, future=d), changed)
    assert not np.allclose(emitted[3][1].people[0].joints, other[3][1].people[0].joints)


def test_identical_frames_give_zero_acceleration_through_the_pipeline(body, regressor):
    out = run(pipeline(body, regressor, future=0), frames(7, same=True))
    joints = np.stack([r.people[0].joints for _, r in out])
    accel = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    assert np.abs(accel).max() == 0.0


def test_history_is_bounded_and_tracks_evicted(body, regressor):
    pipe = pipeline(body, regressor)
    run(pipe, frames(12))
    tr = pipe.temporal.tracks[7]
    assert len(tr.history) == 5 and tr.count == 12  # past 4 + the target
    empty = dataclasses.replace(frames(1)[0], detections=())
    for _ in range(40):  # frames without anybody: the track leaves
        assert pipe.process(empty).people == ()
    assert 7 not in pipe.temporal.tracks


def test_checkpoint_round_trip(tmp_path, body, regressor):
    model = random_refiner(body, regressor)
    path = save_refiner(tmp_path / "r.pt", model, {"note": "x"})
    loaded, meta = load_refiner(path, body)
    seq = features_sequence(regressor, 6)
    assert np.array_equal(refine_all(model, seq, WindowSpec(3, 2, 1)),
                          refine_all(loaded, seq, WindowSpec(3, 2, 1)))
    assert meta == {"note": "x"}
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(RefinerCheckpointError, match="not a temporal refiner"):
        load_refiner(tmp_path / "bad.pt", body)


def test_stage_refuses_windows_beyond_the_refiner(body, regressor):
    model = random_refiner(body, regressor)
    with pytest.raises(ValueError, match="lookahead"):
        TemporalStage(model, body, WindowSpec(past=4, local_past=2, future=9))


def test_config_keys_and_checks():
    flat = to_flat_dict(PipelineConfig())
    for key in ("temporal.enabled", "temporal.mode", "temporal.lookahead", "temporal.window",
                "temporal.local_window", "temporal.branches", "temporal.weights"):
        assert key in flat
    assert flat["temporal.enabled"] is False
    with pytest.raises(ConfigError, match="temporal.mode"):
        replace_path(PipelineConfig(), "temporal.mode", "bidirectional")
    with pytest.raises(ConfigError, match="local_window"):
        replace_path(PipelineConfig(), "temporal.local_window", 12)


def test_non_torch_backend_disables_the_stage_with_a_warning(body, caplog):
    class NoFeatures:
        name = "onnxruntime"

    cfg = replace_path(PipelineConfig(), "temporal.enabled", True)
    with caplog.at_level(logging.WARNING, logger="hmr_ros"):
        assert build_temporal(cfg, NoFeatures(), body) is None
    assert "temporal refinement is disabled" in caplog.text
    with pytest.raises(ValueError, match="torch backend"):
        Pipeline(NoFeatures(), body, cfg, None,
                 TemporalStage(random_refiner(body, HMR(MICRO)), body, WindowSpec(2, 1, 0)))


def test_history_across_new_weights_kept_or_reset(body, regressor):
    seq = features_sequence(regressor, 6)
    versioned = [dataclasses.replace(f, version=i // 3) for i, f in enumerate(seq)]
    fr = frames(6)
    empty = Pipeline(TorchBackend(regressor), body, PipelineConfig()).process(fr[0])
    for reset, want in ((False, 5), (True, 3)):
        stage = TemporalStage(random_refiner(body, regressor), body, WindowSpec(4, 2, 0),
                              reset_on_new_weights=reset)
        for f, ff in zip(fr, versioned):
            stage.push(f, dataclasses.replace(empty, index=f.index), {7: ff})
        # Kept: the last 5 frames of both versions; reset: only version 1's three.
        assert len(stage.tracks[7].history) == want
        assert {h.version for h in stage.tracks[7].history} == ({0, 1} if not reset else {1})


def test_bundled_refiner_in_build_pipeline(body):
    """The shipped weights load for the bundled regressor and the default temporal.* config
    (window 9, lookahead up to 4) builds a pipeline that refines."""
    from hmr_ros.pipeline import build_pipeline
    from hmr_ros.temporal.checkpoint import default_refiner_path

    assert default_refiner_path().stat().st_size < 8_000_000  # a few MB in the repository
    refiner, meta = load_refiner(None, body)
    assert refiner.config.max_past >= 8 and refiner.config.max_future >= 4
    assert meta["regressor"] == "hmr_small_h36m.pt"
    cfg = PipelineConfig()
    for key, value in (("temporal.enabled", True), ("temporal.mode", "lookahead"),
                       ("temporal.lookahead", 4)):
        cfg = replace_path(cfg, key, value)
    pipe = build_pipeline(cfg, adapt=False, body=body)
    assert pipe.temporal_delay == 4
    fr = [dataclasses.replace(f, camera=CameraModel.from_focal(60.0, 64, 48)) for f in frames(3)]
    out = list(StreamRunner(pipe).run(fr))
    assert [r.index for _, r in out] == [0, 1, 2]
    assert all(np.isfinite(r.people[0].joints).all() for _, r in out)
