"""Quaternions in numpy (float64, (w, x, y, z)) for code that must reproduce its output bit for
bit.

The synthetic world poses its bodies in numpy and regenerates every motion bit for bit from a
seed. The torch functions of `rotations.py` normalise their input and switch to series near
angle 0, which moves the last bits (measured: about 1 value in 5 differs by up to 1e-15), so
these keep the plain closed forms the motions were generated with. They agree with the torch
ones to 1e-15.
"""

from __future__ import annotations

import numpy as np


def axis_quaternion_np(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotations by `angle` (rad) about one coordinate axis (0 = x, 1 = y, 2 = z).

    w = cos(angle / 2), so w < 0 for |angle| > pi (the same rotation as -q).

    angle: (...) -> (..., 4)
    """
    q = np.zeros(angle.shape + (4,))
    q[..., 0] = np.cos(0.5 * angle)
    q[..., 1 + axis] = np.sin(0.5 * angle)
    return q


def quaternion_multiply_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b: the rotation b followed by a (R(a * b) = R(a) @ R(b)).

    a, b: (..., 4) -> (..., 4)
    """
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack((aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw), axis=-1)


def quaternion_to_axis_angle_np(q: np.ndarray) -> np.ndarray:
    """UNIT quaternions to rotation vectors with angle in [0, pi] (q is not renormalised).

    q: (..., 4) -> (..., 3)
    """
    # w >= 0 picks the rotation vector with angle <= pi.
    q = np.where(q[..., :1] < 0.0, -q, q)
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(s, q[..., 0])
    # Near zero angle/s -> 2/w; the guard only avoids 0/0, the series is exact to float64 there.
    scale = np.where(s > 1e-12, angle / np.maximum(s, 1e-300), 2.0 / q[..., 0])
    return v * scale[..., None]
