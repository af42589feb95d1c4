"""Labelled source-domain crops for adaptation's replay term (BOA's L_S).

The crops are rendered once, before a stream starts, by the entry point that builds the
pipeline, and handed to it (`build_pipeline(..., replay=...)`): the pipeline and the
adaptation worker never render.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..body import BodyModel
from ..geometry import axis_angle_to_matrix
from .domain import load_domain
from .motion import generate_motion
from .scene import render_training_crop


def replay_crops(n: int, size: int, domain: str = "h36m_like", seed: int = 7
                 ) -> dict[str, Tensor]:
    """`n` crops of `size` px of one 30 s motion of `domain` (motion seed and crop draws from
    `seed`), on the bundled synthetic body.

    images (n, size, size, 3) uint8; rotmat (n, 24, 3, 3) the true joint rotations (root in
    the camera frame); points3d (n, 46, 3) the true body points in the camera frame."""
    d = load_domain(domain)
    rng = np.random.default_rng(seed)
    motion = generate_motion(seed, 30.0, d.fps)
    body = BodyModel()
    crops = [render_training_crop(d, rng, body, motion, size) for _ in range(n)]
    pose = torch.from_numpy(np.stack([c.pose for c in crops]))
    return {"images": torch.from_numpy(np.stack([c.image for c in crops])),
            "rotmat": axis_angle_to_matrix(pose),
            "points3d": torch.from_numpy(np.stack([c.points3d for c in crops]))}
