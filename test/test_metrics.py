"""Tests for hmr_ros.eval.metrics: hand-computed errors, masks, shapes, aggregation."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from hmr_ros.eval import metrics as M


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Proper rotations via QR of Gaussian matrices. -> (n, 3, 3)"""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    q[np.linalg.det(q) < 0] *= -1.0
    return q


def _body(batch: int = 4, joints: int = 17, seed: int = 0) -> np.ndarray:
    """Random non-degenerate joint sets of human size, metres. -> (batch, joints, 3)"""
    return 0.4 * _rng(seed).standard_normal((batch, joints, 3))


# --- MPJPE ---------------------------------------------------------------------------------------


def test_mpjpe_constant_offset_is_5mm_without_alignment_and_0_with():
    gt = _body()
    pred = gt + np.array([0.003, 0.004, 0.0])
    np.testing.assert_allclose(M.mpjpe(pred, gt), 5.0, atol=1e-9)
    np.testing.assert_allclose(M.mpjpe(pred, gt, root=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(M.mpjpe(pred, gt, root=(1, 2)), 0.0, atol=1e-9)
    assert M.mpjpe(pred, gt).shape == (4,)
    assert M.mpjpe(pred, gt).dtype == np.float64


def test_mpjpe_single_joint_offset_out_of_ten():
    gt = _body(batch=2, joints=10)
    pred = gt.copy()
    pred[:, 7, 2] += 0.010
    np.testing.assert_allclose(M.mpjpe(pred, gt), 1.0, atol=1e-9)
    # Masking the bad joint removes it; masking another one divides by 9.
    mask = np.ones((2, 10), dtype=bool)
    mask[0, 7] = False
    mask[1, 3] = False
    np.testing.assert_allclose(M.mpjpe(pred, gt, mask=mask), [0.0, 10.0 / 9.0], atol=1e-9)


def test_mpjpe_root_alignment_by_one_and_by_mean_of_two_joints():
    gt = np.zeros((1, 4, 3))
    pred = gt.copy()
    pred[0, 0, 0] = 0.010  # only the root moved
    # Aligned by joint 0, the other three joints appear 10 mm off: mean 30 / 4.
    np.testing.assert_allclose(M.mpjpe(pred, gt, root=0), [7.5])
    # By the mean of joints 0 and 1 (root offset 5 mm), every joint is 5 mm off.
    np.testing.assert_allclose(M.mpjpe(pred, gt, root=[0, 1]), [5.0])
    np.testing.assert_allclose(M.mpjpe(pred, gt, root=np.array([0, 1])), [5.0])
    np.testing.assert_allclose(M.mpjpe(pred, gt), [2.5])


def test_mpjpe_masked_root_or_all_masked_is_nan_and_masked_nan_does_not_leak():
    gt = _body(batch=3, joints=6)
    pred = gt + 0.002
    mask = np.ones((3, 6), dtype=bool)
    mask[0, 0] = False  # root masked
    mask[1] = False  # nothing valid
    gt[2, 4] = np.nan  # missing ground truth, masked
    mask[2, 4] = False
    out = M.mpjpe(pred, gt, root=0, mask=mask)
    assert math.isnan(out[0]) and math.isnan(out[1])
    assert out[2] == pytest.approx(0.0, abs=1e-9)
    # Without root alignment the masked root is just one joint left out.
    no_root = M.mpjpe(pred, gt, mask=mask)
    assert no_root[0] == pytest.approx(2.0 * math.sqrt(3.0), abs=1e-9)
    assert math.isnan(no_root[1])


# --- PA-MPJPE ------------------------------------------------------------------------------------


def test_pa_mpjpe_of_a_similarity_transform_is_zero():
    rng = _rng(1)
    gt = _body(batch=5, seed=1)
    rot = _random_rotations(5, rng)
    trans = rng.standard_normal((5, 1, 3))
    pred = 1.7 * gt @ np.swapaxes(rot, -1, -2) + trans
    assert (M.pa_mpjpe(pred, gt) < 1e-6).all()
    # The same data really is far off before alignment (the test can fail).
    assert (M.mpjpe(pred, gt, root=0) > 50.0).all()


def test_pa_mpjpe_known_residual_after_alignment():
    # A square in the z = 0 plane vs the same square with one corner lifted: the best similarity
    # fit can not remove an out-of-plane bump on one corner, so the error stays positive but is
    # below the unaligned error of 10 mm / 4.
    gt = np.array([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]])
    pred = gt.copy()
    pred[0, 2, 2] = 0.010
    out = M.pa_mpjpe(pred, gt)
    assert 0.0 < out[0] < 2.5


def test_pa_mpjpe_mask_excludes_joints_from_fit_and_mean():
    rng = _rng(2)
    gt = _body(batch=2, joints=8, seed=2)
    rot = _random_rotations(2, rng)
    pred = 0.9 * gt @ np.swapaxes(rot, -1, -2) + 0.3
    pred[:, 5] += 1.0  # one wildly wrong joint ...
    gt[:, 6] = np.nan  # ... and a missing ground-truth joint
    mask = np.ones((2, 8), dtype=bool)
    mask[:, 5:7] = False
    assert (M.pa_mpjpe(pred, gt, mask=mask) < 1e-6).all()
    mask_6_only = mask.copy()
    mask_6_only[:, 5] = True
    assert (M.pa_mpjpe(pred, gt, mask=mask_6_only) > 10.0).all()
    # Fewer than three valid joints: no unique fit.
    few = np.zeros((2, 8), dtype=bool)
    few[0, :2] = True
    few[1, :3] = True
    out = M.pa_mpjpe(pred, gt, mask=few)
    assert math.isnan(out[0]) and out[1] < 1e-6


# --- PVE -----------------------------------------------------------------------------------------


def test_pve_with_and_without_root_translation():
    gt_v = _body(batch=2, joints=50, seed=3)
    offset = np.array([0.003, 0.004, 0.0])
    pred_v = gt_v + offset
    gt_pelvis = _rng(3).standard_normal((2, 3))
    np.testing.assert_allclose(M.pve(pred_v, gt_v), 5.0, atol=1e-9)
    # Each side's pelvis moved with its mesh: root-relative error 0.
    np.testing.assert_allclose(
        M.pve(pred_v, gt_v, pred_root=gt_pelvis + offset, gt_root=gt_pelvis), 0.0, atol=1e-9
    )
    # Same pelvis for both: the offset remains.
    np.testing.assert_allclose(
        M.pve(pred_v, gt_v, pred_root=gt_pelvis, gt_root=gt_pelvis), 5.0, atol=1e-9
    )
    # One vertex of 50 off by 50 mm: 1 mm.
    pred_v = gt_v.copy()
    pred_v[:, 10, 0] += 0.050
    np.testing.assert_allclose(M.pve(pred_v, gt_v), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="both"):
        M.pve(pred_v, gt_v, pred_root=gt_pelvis)
    with pytest.raises(ValueError, match="pred_root"):
        M.pve(pred_v, gt_v, pred_root=gt_pelvis[:1], gt_root=gt_pelvis)


# --- ACCEL ---------------------------------------------------------------------------------------


def _linear(frames: int, joints: int, velocity: np.ndarray, seed: int = 4) -> np.ndarray:
    start = _body(batch=1, joints=joints, seed=seed)[0]
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    return start[None] + t * velocity


def test_accel_of_constant_velocities_is_zero():
    gt = _linear(10, 5, np.array([0.01, 0.0, -0.02]))
    pred = _linear(10, 5, np.array([-0.05, 0.03, 0.0]), seed=5)
    for root in (None, 0, (1, 2)):
        out = M.accel_error(pred, gt, root=root)
        assert out.shape == (8,)
        np.testing.assert_allclose(out, 0.0, atol=1e-9)


def test_accel_quadratic_term_gives_2a():
    frames = 9
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    a = np.array([0.003, 0.004, 0.0])  # |a| = 5 mm / frame^2
    gt = _linear(frames, 4, np.array([0.01, 0.0, 0.0]))
    pred = gt + a * t**2
    # Second difference of a t^2 is 2a: |2a| = 10 mm / frame^2 on every joint.
    np.testing.assert_allclose(M.accel_error(pred, gt, root=None), 10.0, atol=1e-9)
    # The same term on every joint is a root motion, removed by root alignment.
    np.testing.assert_allclose(M.accel_error(pred, gt), 0.0, atol=1e-9)
    # On one non-root joint of four: 10 / 4 after alignment by joint 0.
    pred = gt.copy()
    pred[:, 3] += a * t[:, 0] ** 2
    np.testing.assert_allclose(M.accel_error(pred, gt), 2.5, atol=1e-9)


def test_accel_spike_indexing_and_frame_mask():
    frames = 10
    gt = _linear(frames, 3, np.array([0.0, 0.01, 0.0]))
    pred = gt.copy()
    pred[5] += np.array([0.0, 0.0, 0.004])  # 4 mm spike at frame 5 on all joints
    out = M.accel_error(pred, gt, root=None)
    # Output i is centred on frame i + 1: frame 5 enters triplets centred on 4, 5, 6 with
    # weights 1, -2, 1.
    expected = np.zeros(8)
    expected[[3, 4, 5]] = [4.0, 8.0, 4.0]
    np.testing.assert_allclose(out, expected, atol=1e-9)
    mask = np.ones(frames, dtype=bool)
    mask[5] = False
    pred[5] = np.nan  # a dropped frame may hold anything
    masked = M.accel_error(pred, gt, mask=mask, root=None)
    assert masked.shape == (8,)
    assert np.isnan(masked[[3, 4, 5]]).all()
    np.testing.assert_allclose(np.delete(masked, [3, 4, 5]), 0.0, atol=1e-9)
    assert M.summarize({"accel": masked})["accel"] == pytest.approx(0.0, abs=1e-9)
    # Mask at the ends: only one triplet each.
    mask = np.ones(frames, dtype=bool)
    mask[[0, 9]] = False
    masked = M.accel_error(gt, gt, mask=mask)
    assert np.isnan(masked[[0, 7]]).all() and not np.isnan(masked[1:7]).any()


def test_accel_short_sequences_are_empty():
    x = np.zeros((2, 3, 3))
    assert M.accel_error(x, x).shape == (0,)
    assert M.accel_error(x[:0], x[:0], mask=np.ones(0)).shape == (0,)
    assert M.accel_error(np.zeros((3, 2, 3)), np.zeros((3, 2, 3))).shape == (1,)


# --- PCK -----------------------------------------------------------------------------------------


def test_pck_3d_counts():
    gt = np.zeros((1, 6, 3))
    pred = gt.copy()
    pred[0, 1:, 0] = np.array([100.0, 149.0, 151.0, 300.0, 150.0]) / 1000.0
    # Errors 0, 100, 149, 151, 300, 150 mm; 150 counts (<=).
    np.testing.assert_allclose(M.pck(pred, gt), [4.0 / 6.0])
    np.testing.assert_allclose(M.pck(pred, gt, threshold_mm=120.0), [2.0 / 6.0])
    mask = np.ones((1, 6), dtype=bool)
    mask[0, 4] = False
    np.testing.assert_allclose(M.pck(pred, gt, mask=mask), [4.0 / 5.0])
    # Root alignment by default: moving the whole prediction changes nothing ...
    np.testing.assert_allclose(M.pck(pred + 1.0, gt), [4.0 / 6.0])
    # ... unless alignment is switched off.
    np.testing.assert_allclose(M.pck(pred + 1.0, gt, root=None), [0.0])
    # Per-sample thresholds.
    two = np.concatenate([pred, pred])
    np.testing.assert_allclose(
        M.pck(two, np.zeros_like(two), threshold_mm=[120.0, 1000.0]), [2.0 / 6.0, 1.0]
    )


def test_pck_2d_counts():
    gt = np.zeros((2, 4, 2))
    pred = gt.copy()
    pred[:, 1] = [3.0, 4.0]  # 5 px
    pred[:, 2] = [6.0, 8.0]  # 10 px, exactly the threshold
    pred[:, 3] = [12.0, 16.0]  # 20 px
    np.testing.assert_allclose(M.pck_2d(pred, gt, threshold_px=10.0), [0.75, 0.75])
    visible = np.array([[False, True, True, True], [False] * 4])
    out = M.pck_2d(pred, gt, threshold_px=10.0, visible=visible)
    assert out[0] == pytest.approx(2.0 / 3.0) and math.isnan(out[1])
    np.testing.assert_allclose(M.pck_2d(pred, gt, threshold_px=[4.0, 25.0]), [0.25, 1.0])


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 4, 3))),
        lambda: M.mpjpe(np.zeros((5, 3)), np.zeros((5, 3))),
        lambda: M.mpjpe(np.zeros((2, 5, 2)), np.zeros((2, 5, 2))),
        lambda: M.mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), mask=np.ones((2, 4))),
        lambda: M.mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), root=5),
        lambda: M.mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), root=[]),
        lambda: M.mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), root=True),
        lambda: M.mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), root=[0.5]),
        lambda: M.pa_mpjpe(np.zeros((2, 5, 3)), np.zeros((3, 5, 3))),
        lambda: M.pa_mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), mask=np.ones(5)),
        lambda: M.pve(np.zeros((2, 9, 3)), np.zeros((2, 8, 3))),
        lambda: M.accel_error(np.zeros((6, 5, 3)), np.zeros((5, 5, 3))),
        lambda: M.accel_error(np.zeros((6, 5, 3)), np.zeros((6, 5, 3)), mask=np.ones((6, 5))),
        lambda: M.pck(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), threshold_mm=-1.0),
        lambda: M.pck(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), threshold_mm=[1.0, 2, 3]),
        lambda: M.pck_2d(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), threshold_px=5.0),
        lambda: M.pck_2d(np.zeros((2, 5, 2)), np.zeros((2, 5, 2)), 5.0, visible=np.ones((5,))),
        lambda: M.mpjpe("abc", np.zeros((2, 5, 3))),
    ],
)
def test_bad_shapes_and_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_error_messages_name_the_shapes():
    with pytest.raises(ValueError, match=r"same shape.*\(2, 5, 3\).*\(2, 4, 3\)"):
        M.mpjpe(np.zeros((2, 5, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"pred\[None\]"):
        M.mpjpe(np.zeros((5, 3)), np.zeros((5, 3)))


# --- torch and numpy -----------------------------------------------------------------------------


def test_torch_and_numpy_inputs_agree():
    rng = _rng(6)
    pred32 = (0.4 * rng.standard_normal((3, 8, 3))).astype(np.float32)
    gt32 = (0.4 * rng.standard_normal((3, 8, 3))).astype(np.float32)
    mask = rng.random((3, 8)) > 0.2
    mask[:, 0] = True
    tp = torch.from_numpy(pred32).requires_grad_(True)
    tg = torch.from_numpy(gt32)
    tm = torch.from_numpy(mask)
    pairs = [
        (M.mpjpe(tp, tg, root=torch.tensor([0, 1]), mask=tm), M.mpjpe(pred32, gt32, (0, 1), mask)),
        (M.pa_mpjpe(tp, tg, mask=tm), M.pa_mpjpe(pred32, gt32, mask=mask)),
        (M.pve(tp, tg, tp[:, 0], tg[:, 0]), M.pve(pred32, gt32, pred32[:, 0], gt32[:, 0])),
        (M.accel_error(tp, tg, mask=tm[:, 1]), M.accel_error(pred32, gt32, mask=mask[:, 1])),
        (M.pck(tp, tg, 500.0, mask=tm.int()), M.pck(pred32, gt32, 500.0, mask=mask)),
        (
            M.pck_2d(tp[..., :2] * 100, tg[..., :2] * 100, torch.tensor(40.0), tm),
            M.pck_2d(pred32[..., :2] * 100, gt32[..., :2] * 100, 40.0, mask),
        ),
    ]
    for from_torch, from_numpy in pairs:
        assert isinstance(from_torch, np.ndarray) and from_torch.dtype == np.float64
        np.testing.assert_allclose(from_torch, from_numpy, rtol=1e-12, equal_nan=True)
    assert not np.isnan(pairs[1][0]).any() and (pairs[1][0] > 0).all()


# --- aggregation ---------------------------------------------------------------------------------


def test_summarize_ignores_nan():
    out = M.summarize(
        {"a": np.array([1.0, np.nan, 3.0]), "b": torch.tensor([np.nan]), "c": np.zeros(0)}
    )
    assert out["a"] == pytest.approx(2.0)
    assert math.isnan(out["b"]) and math.isnan(out["c"])


def test_metric_report_accumulates_with_nan():
    report = M.MetricReport()
    report.add("mpjpe", np.array([10.0, np.nan, 20.0]))
    report.add("mpjpe", torch.tensor([30.0]))
    report.add("accel", 4.0)
    report.add_all({"accel": np.array([[np.nan, 8.0]]), "empty": np.array([np.nan])})
    assert report.names == ("mpjpe", "accel", "empty")
    means = report.means()
    assert means["mpjpe"] == pytest.approx(20.0)
    assert means["accel"] == pytest.approx(6.0)
    assert math.isnan(means["empty"])
    assert report.counts() == {"mpjpe": 3, "accel": 2, "empty": 0}
    np.testing.assert_array_equal(report.values("mpjpe"), [10.0, np.nan, 20.0, 30.0])
    d = report.to_dict()
    assert d["mpjpe"] == {"mean": pytest.approx(20.0), "count": 3, "total": 4}
    assert d["empty"] == {"mean": None, "count": 0, "total": 1}
    json.dumps(d, allow_nan=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report._chunks = {}  # type: ignore[misc]
    with pytest.raises(ValueError):
        report.add("", 1.0)
    with pytest.raises(KeyError):
        report.values("nope")


def test_metric_report_copies_its_input_and_reports_are_independent():
    values = np.array([1.0, 2.0])
    first, second = M.MetricReport(), M.MetricReport()
    first.add("x", values)
    values[:] = 100.0
    assert first.means() == {"x": pytest.approx(1.5)}
    assert second.means() == {}
    assert first != second
