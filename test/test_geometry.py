"""Tests for hmr_ros.geometry: rotations, cameras, Procrustes alignment."""

from __future__ import annotations

import math

import pytest
import torch

from hmr_ros import geometry as g
from hmr_ros.geometry import rotations as rot

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_axis(n: int, gen: torch.Generator, dtype=F64) -> torch.Tensor:
    v = torch.randn(n, 3, generator=gen, dtype=F64)
    return (v / v.norm(dim=-1, keepdim=True)).to(dtype)


def _random_rotations(n: int, gen: torch.Generator, dtype=F64) -> torch.Tensor:
    """Uniform rotations via QR of Gaussian matrices, det fixed to +1."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen, dtype=F64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]
    q[torch.linalg.det(q) < 0] *= -1.0
    return q.to(dtype)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- 6D ------------------------------------------------------------------------------------------


def test_rot6d_layout_is_interleaved():
    r = torch.arange(9, dtype=F64).reshape(3, 3)
    six = g.matrix_to_rot6d(r)
    expected = torch.tensor([r[0, 0], r[0, 1], r[1, 0], r[1, 1], r[2, 0], r[2, 1]], dtype=F64)
    assert torch.equal(six, expected)


def test_rot6d_round_trip_and_orthonormal():
    gen = _gen(1)
    r = _random_rotations(64, gen)
    assert _max_err(g.rot6d_to_matrix(g.matrix_to_rot6d(r)), r) < 1e-12

    # Arbitrary 6D inputs (as a network emits them) still give proper rotations.
    x = torch.randn(5, 7, 6, generator=gen, dtype=F64)
    m = g.rot6d_to_matrix(x)
    assert m.shape == (5, 7, 3, 3)
    eye = torch.eye(3, dtype=F64)
    assert _max_err(m.transpose(-1, -2) @ m, eye.expand_as(m)) < 1e-12
    assert _max_err(torch.linalg.det(m), torch.ones(5, 7, dtype=F64)) < 1e-12
    # The first column is the normalised first input column.
    a1 = x.reshape(5, 7, 3, 2)[..., 0]
    assert _max_err(m[..., 0], a1 / a1.norm(dim=-1, keepdim=True)) < 1e-12


# --- axis-angle and quaternions ------------------------------------------------------------------


def test_axis_angle_to_matrix_known_value():
    aa = torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64)
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    assert _max_err(g.axis_angle_to_matrix(aa), expected) < 1e-15
    # Matches the matrix exponential of the skew matrix for generic vectors.
    aa = torch.randn(20, 3, generator=_gen(2), dtype=F64) * 2.0
    assert _max_err(g.axis_angle_to_matrix(aa), torch.linalg.matrix_exp(rot._skew(aa))) < 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_axis_angle_round_trip_random(dtype, tol):
    gen = _gen(3)
    axis = _random_axis(200, gen)
    angle = torch.rand(200, generator=gen, dtype=F64) * (math.pi - 1e-3)
    aa = (axis * angle[:, None]).to(dtype).reshape(10, 20, 3)
    r = g.axis_angle_to_matrix(aa)
    assert r.shape == (10, 20, 3, 3) and r.dtype == dtype
    back = g.matrix_to_axis_angle(r)
    assert back.shape == aa.shape and back.dtype == dtype
    assert _max_err(back, aa) < tol

    rots = _random_rotations(200, gen, dtype)
    assert _max_err(g.axis_angle_to_matrix(g.matrix_to_axis_angle(rots)), rots) < tol


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_axis_angle_round_trip_near_zero(dtype, tol):
    gen = _gen(4)
    axis = _random_axis(50, gen)
    angle = torch.rand(50, generator=gen, dtype=F64) * 1e-7
    aa = (axis * angle[:, None]).to(dtype)
    aa = torch.cat((aa, torch.zeros(1, 3, dtype=dtype)))
    back = g.matrix_to_axis_angle(g.axis_angle_to_matrix(aa))
    assert _max_err(back, aa) < tol
    assert torch.equal(back[-1], torch.zeros(3, dtype=dtype))
    assert torch.equal(g.axis_angle_to_matrix(aa[-1]), torch.eye(3, dtype=dtype))


def test_axis_angle_small_angle_branch_is_continuous():
    """The series/closed-form switch must not leave a seam in value or gradient."""
    axis = _random_axis(1, _gen(5))[0]
    t_switch = math.sqrt(rot._SMALL_ANGLE_SQ)
    aa = torch.stack([axis * t_switch * f for f in (1 - 1e-9, 1 + 1e-9)]).requires_grad_(True)
    r = g.axis_angle_to_matrix(aa)
    assert _max_err(r[0], r[1]) < 1e-9
    (grad,) = torch.autograd.grad(r[..., 0, 1].sum() + r[..., 2, 2].sum(), aa)
    assert _max_err(grad[0], grad[1]) < 1e-7

    back = g.matrix_to_axis_angle(r.detach())
    assert _max_err(back, aa.detach()) < 1e-14


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_axis_angle_round_trip_near_pi(dtype, tol):
    gen = _gen(6)
    axis = _random_axis(100, gen)
    angle = math.pi - torch.rand(100, generator=gen, dtype=F64) * 1e-4
    aa = (axis * angle[:, None]).to(dtype)
    r = g.axis_angle_to_matrix(aa)
    back = g.matrix_to_axis_angle(r)
    assert _max_err(back, aa) < tol
    assert _max_err(g.axis_angle_to_matrix(back), r) < tol


def test_axis_angle_exactly_pi_and_range():
    axis = _random_axis(30, _gen(7))
    r = g.axis_angle_to_matrix(axis * math.pi)
    back = g.matrix_to_axis_angle(r)
    # At pi the axis sign is arbitrary; compare rotations and the angle.
    assert _max_err(g.axis_angle_to_matrix(back), r) < 1e-12
    assert _max_err(back.norm(dim=-1), torch.full((30,), math.pi, dtype=F64)) < 1e-12
    # Angles above pi come back as the equivalent rotation in [0, pi].
    aa = axis * 4.0
    back = g.matrix_to_axis_angle(g.axis_angle_to_matrix(aa))
    assert _max_err(back, -axis * (2 * math.pi - 4.0)) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_finite_at_zero_and_identity(dtype):
    aa = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
    r = g.axis_angle_to_matrix(aa)
    (grad,) = torch.autograd.grad((r * torch.arange(9.0, dtype=dtype).reshape(3, 3)).sum(), aa)
    assert torch.isfinite(grad).all()
    # d R / d aa at 0 is the skew generator: d/d aa of sum(W * [aa]_x).
    w = torch.arange(9.0, dtype=dtype).reshape(3, 3)
    expected = torch.stack((w[2, 1] - w[1, 2], w[0, 2] - w[2, 0], w[1, 0] - w[0, 1]))
    assert _max_err(grad, expected.expand(2, 3)) < 1e-6

    rr = torch.eye(3, dtype=dtype).repeat(2, 1, 1).requires_grad_(True)
    out = g.matrix_to_axis_angle(rr)
    (grad_r,) = torch.autograd.grad(out.sum(), rr)
    assert torch.isfinite(grad_r).all()

    rpi = g.axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi]], dtype=dtype))
    rpi.requires_grad_(True)
    (grad_pi,) = torch.autograd.grad(g.matrix_to_quaternion(rpi).sum(), rpi)
    assert torch.isfinite(grad_pi).all()


def test_axis_angle_to_matrix_gradcheck():
    aa = torch.cat(
        (torch.randn(4, 3, generator=_gen(8), dtype=F64), torch.full((1, 3), 1e-3, dtype=F64))
    ).requires_grad_(True)
    assert torch.autograd.gradcheck(g.axis_angle_to_matrix, (aa,))
    assert torch.autograd.gradcheck(g.matrix_to_axis_angle, (g.axis_angle_to_matrix(aa),))


def test_quaternion_known_value_and_order():
    # 90 degrees about z: (w, x, y, z) = (cos 45, 0, 0, sin 45).
    h = math.sqrt(0.5)
    q = torch.tensor([h, 0.0, 0.0, h], dtype=F64)
    r = g.quaternion_to_matrix(q)
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    assert _max_err(r, expected) < 1e-15
    assert _max_err(g.matrix_to_quaternion(expected), q) < 1e-15


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_quaternion_round_trips(dtype, tol):
    gen = _gen(9)
    q = torch.randn(300, 4, generator=gen, dtype=F64)
    q = q / q.norm(dim=-1, keepdim=True)
    # Include each of the four Shepperd branches' extreme cases and w < 0 inputs.
    q = torch.cat((q, torch.eye(4, dtype=F64), -torch.eye(4, dtype=F64))).to(dtype)
    canon = torch.where(q[:, :1] < 0, -q, q)
    r = g.quaternion_to_matrix(q)
    back = g.matrix_to_quaternion(r)
    assert (back[:, 0] >= 0).all()
    # With w = 0 (angle pi) q and -q are both canonical.
    err = torch.minimum((back - canon).abs().amax(-1), (back + canon).abs().amax(-1))
    err = torch.where(canon[:, 0] == 0, err, (back - canon).abs().amax(-1))
    assert err.max().item() < tol
    assert _max_err(g.quaternion_to_matrix(back), r) < tol
    # Non-unit quaternions describe the same rotation.
    assert _max_err(g.quaternion_to_matrix(3.0 * q), r) < tol

    rots = _random_rotations(100, gen, dtype).reshape(4, 25, 3, 3)
    assert _max_err(g.quaternion_to_matrix(g.matrix_to_quaternion(rots)), rots) < tol


def test_quaternion_axis_angle_consistency():
    gen = _gen(10)
    aa = _random_axis(50, gen) * (torch.rand(50, 1, generator=gen, dtype=F64) * math.pi)
    aa = torch.cat((aa, torch.zeros(1, 3, dtype=F64), _random_axis(3, gen) * 1e-5))
    q = g.axis_angle_to_quaternion(aa)
    assert _max_err(q.norm(dim=-1), torch.ones(54, dtype=F64)) < 1e-14
    assert _max_err(g.quaternion_to_matrix(q), g.axis_angle_to_matrix(aa)) < 1e-12
    assert _max_err(g.quaternion_to_axis_angle(q), aa) < 1e-12
    assert _max_err(g.quaternion_to_axis_angle(-q), aa) < 1e-12


# --- cameras -------------------------------------------------------------------------------------


def _random_cameras(b: int, gen: torch.Generator, square_pixels: bool):
    fx = 400.0 + 800.0 * torch.rand(b, generator=gen, dtype=F64)
    fy = fx if square_pixels else fx * (0.8 + 0.4 * torch.rand(b, generator=gen, dtype=F64))
    px = 320.0 + 40.0 * torch.randn(b, generator=gen, dtype=F64)
    py = 240.0 + 40.0 * torch.randn(b, generator=gen, dtype=F64)
    k = torch.zeros(b, 3, 3, dtype=F64)
    k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = fx, fy, px, py, 1.0
    box = torch.stack(
        (
            640.0 * torch.rand(b, generator=gen, dtype=F64),
            480.0 * torch.rand(b, generator=gen, dtype=F64),
            100.0 + 400.0 * torch.rand(b, generator=gen, dtype=F64),
        ),
        dim=-1,
    )
    t = torch.stack(
        (
            torch.randn(b, generator=gen, dtype=F64),
            torch.randn(b, generator=gen, dtype=F64),
            1.0 + 9.0 * torch.rand(b, generator=gen, dtype=F64),
        ),
        dim=-1,
    )
    return k, box, t


def test_translation_crop_cam_round_trip():
    k, box, t = _random_cameras(100, _gen(11), square_pixels=False)
    cam = g.translation_to_crop_cam(t, box, k)
    assert cam.shape == (100, 3)
    assert (cam[:, 0] > 0).all()
    back = g.crop_cam_to_translation(cam, box, k)
    assert ((back - t).abs() / t.abs().clamp(min=1e-3)).max().item() < 1e-6
    # And the other way round, from a crop camera.
    assert _max_err(g.translation_to_crop_cam(back, box, k), cam) < 1e-9


def test_crop_cam_formula_and_shared_k():
    k, box, _ = _random_cameras(1, _gen(12), square_pixels=False)
    k = k[0]
    cam = torch.tensor([[0.9, 0.1, -0.2], [1.1, -0.05, 0.3]], dtype=F64)
    boxes = box.expand(2, 3)
    t = g.crop_cam_to_translation(cam, boxes, k)
    fx, fy, px, py = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    cx, cy, size = box[0]
    s, tx, ty = cam.unbind(-1)
    tz = 2 * fx / (size * s)
    expected = torch.stack(
        (
            (size * s * tx / 2 + cx - px) * tz / fx,
            (size * s * ty / 2 + cy - py) * tz / fy,
            tz,
        ),
        dim=-1,
    )
    assert _max_err(t, expected) < 1e-12
    # The model origin projects to the crop camera's image of it even with fx != fy.
    origin = torch.zeros(2, 1, 3, dtype=F64)
    uv_persp = g.perspective_project(origin + t[:, None], k)
    uv_weak = g.crop_to_image(g.weak_perspective_project(origin, cam), boxes)
    assert _max_err(uv_persp, uv_weak) < 1e-9


def test_root_depth_points_project_identically_with_square_pixels():
    gen = _gen(13)
    b, n = 50, 30
    k, box, t = _random_cameras(b, gen, square_pixels=True)
    cam = g.translation_to_crop_cam(t, box, k)
    x = 0.8 * torch.randn(b, n, 3, generator=gen, dtype=F64)
    x[..., 2] = 0.0
    uv_persp = g.perspective_project(x + t[:, None, :], k)
    uv_weak = g.crop_to_image(g.weak_perspective_project(x, cam), box)
    assert uv_persp.shape == (b, n, 2)
    assert _max_err(uv_persp, uv_weak) < 1e-3


def test_perspective_project_values_and_depth_guard():
    k = torch.tensor([[500.0, 2.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]], dtype=F64)
    p = torch.tensor([[[0.5, -0.25, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, -1.0]]], dtype=F64)
    p.requires_grad_(True)
    uv = g.perspective_project(p, k)
    assert uv.shape == (1, 3, 2)
    expected = torch.tensor([500 * 0.25 + 2 * -0.125 + 320, 600 * -0.125 + 240], dtype=F64)
    assert _max_err(uv[0, 0], expected) < 1e-12
    assert _max_err(uv[0, 1], k[:2, 2]) < 1e-12
    assert torch.isfinite(uv).all()
    uv.sum().backward()
    assert torch.isfinite(p.grad).all()


def test_weak_perspective_and_crop_maps():
    gen = _gen(14)
    x = torch.randn(4, 6, 3, generator=gen, dtype=F64)
    cam = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.5, -0.5], [0.5, 0.1, 0.2], [1.5, 0.0, 1.0]])
    cam = cam.to(F64)
    xy = g.weak_perspective_project(x, cam)
    assert _max_err(xy, cam[:, None, :1] * (x[..., :2] + cam[:, None, 1:])) < 1e-15

    box = torch.tensor([[100.0, 200.0, 50.0]], dtype=F64)
    corners = torch.tensor([[[75.0, 175.0], [125.0, 225.0], [100.0, 200.0]]], dtype=F64)
    crop = g.image_to_crop(corners, box)
    assert _max_err(crop, torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]])) < 1e-15
    assert _max_err(g.crop_to_image(crop, box), corners) < 1e-12


def test_cameras_float32():
    k, box, t = _random_cameras(20, _gen(15), square_pixels=False)
    k32, box32, t32 = k.float(), box.float(), t.float()
    cam = g.translation_to_crop_cam(t32, box32, k32)
    assert cam.dtype == torch.float32
    back = g.crop_cam_to_translation(cam, box32, k32)
    assert ((back - t32).abs() / t32.abs().clamp(min=1e-2)).max().item() < 1e-4


# --- Procrustes ----------------------------------------------------------------------------------


def test_procrustes_recovers_similarity():
    gen = _gen(16)
    b, n = 8, 24
    src = torch.randn(b, n, 3, generator=gen, dtype=F64)
    r = _random_rotations(b, gen)
    scale = 0.5 + 2.0 * torch.rand(b, generator=gen, dtype=F64)
    t = torch.randn(b, 3, generator=gen, dtype=F64)
    tgt = scale[:, None, None] * src @ r.transpose(-1, -2) + t[:, None, :]
    s_hat, r_hat, t_hat = g.similarity_transform(src, tgt)
    assert _max_err(s_hat, scale) < 1e-10
    assert _max_err(r_hat, r) < 1e-10
    assert _max_err(t_hat, t) < 1e-10
    assert _max_err(g.procrustes_align(src, tgt), tgt) < 1e-10


def test_procrustes_never_reflects():
    gen = _gen(17)
    b, n = 6, 20
    src = torch.randn(b, n, 3, generator=gen, dtype=F64)
    # A mirrored copy: the best orthogonal map is the reflection, which must be refused.
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64))
    tgt = src @ (mirror @ _random_rotations(b, gen)).transpose(-1, -2)
    s_hat, r_hat, _ = g.similarity_transform(src, tgt)
    assert _max_err(torch.linalg.det(r_hat), torch.ones(b, dtype=F64)) < 1e-10
    assert (s_hat > 0).all()
    aligned = g.procrustes_align(src, tgt)
    # A proper rotation cannot reproduce a mirror image of a generic 3D point set ...
    assert (aligned - tgt).norm(dim=-1).mean().item() > 1e-2
    # ... and the reflected solution must not be better than what a brute-force search over
    # proper rotations finds (it is the constrained optimum).
    err = ((aligned - tgt) ** 2).sum((-2, -1))
    probes = _random_rotations(2000, gen)
    for i in range(b):
        rotated = src[i] @ probes.transpose(-1, -2)  # (P, N, 3)
        rc = rotated - rotated.mean(-2, keepdim=True)
        tc = tgt[i] - tgt[i].mean(-2, keepdim=True)
        best_s = (rc * tc).sum((-2, -1)).clamp(min=0) / (rc * rc).sum((-2, -1))
        probe_err = ((best_s[:, None, None] * rc - tc) ** 2).sum((-2, -1))
        assert err[i].item() <= probe_err.min().item() + 1e-9


def test_procrustes_weights_ignore_outliers():
    gen = _gen(18)
    b, n = 4, 15
    src = torch.randn(b, n, 3, generator=gen, dtype=F64)
    r = _random_rotations(b, gen)
    tgt = 1.7 * src @ r.transpose(-1, -2) + 0.3
    corrupted = tgt.clone()
    corrupted[:, :3] += 10.0 * torch.randn(b, 3, 3, generator=gen, dtype=F64)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[:, :3] = False
    aligned = g.procrustes_align(src, corrupted, mask)
    assert _max_err(aligned, tgt) < 1e-10
    # Without the mask the outliers do pull the fit away.
    assert _max_err(g.procrustes_align(src, corrupted), tgt) > 1e-2


def test_procrustes_float32_and_leading_dims():
    gen = _gen(19)
    src = torch.randn(2, 3, 24, 3, generator=gen)
    r = _random_rotations(6, gen, torch.float32).reshape(2, 3, 3, 3)
    tgt = 0.9 * src @ r.transpose(-1, -2) - 1.0
    aligned = g.procrustes_align(src, tgt)
    assert aligned.shape == (2, 3, 24, 3) and aligned.dtype == torch.float32
    assert _max_err(aligned, tgt) < 1e-4
