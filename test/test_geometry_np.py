"""The numpy quaternion helpers of hmr_ros.geometry against the torch functions next to them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hmr_ros import geometry as g


def _unit_quaternions(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal((n, 4))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _matrix(q: np.ndarray) -> np.ndarray:
    return g.quaternion_to_matrix(torch.from_numpy(q)).numpy()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_axis_quaternion_matches_the_torch_axis_angle(axis):
    angle = np.random.default_rng(axis).uniform(-math.pi, math.pi, 500)
    angle[:20] *= 1e-6  # the torch side takes its series branch here
    q = g.axis_quaternion_np(axis, angle)
    assert q.shape == (500, 4) and q.dtype == np.float64
    aa = np.zeros((500, 3))
    aa[:, axis] = angle
    ref = g.axis_angle_to_quaternion(torch.from_numpy(aa)).numpy()
    np.testing.assert_allclose(q, ref, rtol=0, atol=1e-15)
    # Only the w and `axis` components are set.
    others = [k for k in (1, 2, 3) if k != 1 + axis]
    assert np.all(q[:, others] == 0.0)


def test_axis_quaternion_known_value_and_leading_dims():
    # +90 degrees about z takes x to y.
    r = _matrix(g.axis_quaternion_np(2, np.array(0.5 * math.pi)))
    np.testing.assert_allclose(r @ np.array([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-15)
    assert g.axis_quaternion_np(0, np.zeros((2, 3))).shape == (2, 3, 4)
    # Past pi, w turns negative: the same rotation as the short way round, as -q.
    q = g.axis_quaternion_np(1, np.array([1.5 * math.pi]))
    assert q[0, 0] < 0
    np.testing.assert_allclose(_matrix(q), _matrix(g.axis_quaternion_np(1, np.array([-0.5 *
                                                                                    math.pi]))),
                               atol=1e-15)


def test_product_composes_rotations_in_matrix_order():
    a, b = _unit_quaternions(300, 1), _unit_quaternions(300, 2)
    ab = g.quaternion_multiply_np(a, b)
    assert ab.shape == (300, 4)
    np.testing.assert_allclose(_matrix(ab), _matrix(a) @ _matrix(b), rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(ab, axis=-1), 1.0, atol=1e-15)
    # The identity is neutral exactly, and the product does not commute.
    one = np.broadcast_to([1.0, 0.0, 0.0, 0.0], a.shape)
    assert np.array_equal(g.quaternion_multiply_np(one, a), a)
    assert np.array_equal(g.quaternion_multiply_np(a, one), a)
    assert np.abs(g.quaternion_multiply_np(b, a) - ab).max() > 0.1


def test_to_axis_angle_matches_torch_and_takes_the_short_way():
    q = _unit_quaternions(2000, 3)
    aa = g.quaternion_to_axis_angle_np(q)
    assert aa.shape == (2000, 3)
    ref = g.quaternion_to_axis_angle(torch.from_numpy(q)).numpy()
    np.testing.assert_allclose(aa, ref, rtol=0, atol=1e-14)
    assert np.linalg.norm(aa, axis=-1).max() <= math.pi + 1e-12
    # q and -q are one rotation, one vector.
    np.testing.assert_array_equal(g.quaternion_to_axis_angle_np(-q), aa)


def test_to_axis_angle_near_and_at_the_identity():
    assert np.array_equal(g.quaternion_to_axis_angle_np(np.array([1.0, 0.0, 0.0, 0.0])),
                          np.zeros(3))
    for angle in (1e-13, 1e-9, 1e-4):
        q = g.axis_quaternion_np(0, np.array([angle]))
        aa = g.quaternion_to_axis_angle_np(q)
        np.testing.assert_allclose(aa, [[angle, 0.0, 0.0]], rtol=1e-12, atol=0)


def test_round_trip_through_axis_angle_wraps_to_minus_pi_pi():
    angle = np.linspace(-3.0 * math.pi + 0.01, 3.0 * math.pi - 0.01, 101)
    aa = g.quaternion_to_axis_angle_np(g.axis_quaternion_np(2, angle))
    wrapped = np.angle(np.exp(1j * angle))  # into (-pi, pi]
    np.testing.assert_allclose(aa[:, 2], wrapped, atol=1e-12)
    assert np.all(aa[:, :2] == 0.0)
