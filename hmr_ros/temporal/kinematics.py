"""SMPL joints without the mesh, for the refinement's markers and losses.

The refinement projects the body's joints at every iteration; the full body model skins
every vertex, which the markers do not need. The rest joints are linear in the betas
(J = J_regressor (v_template + shapedirs betas)), so they are precomputed as
`J_template + J_dirs betas`, and forward kinematics over the 24 joints gives exactly the
joints smplx returns (pose blend shapes move vertices, not the regressed rest joints).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import geometry as G
from ..body import BodyModel
from ..geometry import rot6d_to_matrix


class JointModel(nn.Module):
    """(B, 24, 3, 3) rotations (root first) and (B, 10) betas -> (B, 24, 3) joints in the
    root's parent frame (no translation), as `BodyModel.forward_rotmat(...).joints`."""

    def __init__(self, body: BodyModel) -> None:
        super().__init__()
        layer = body.layer
        jreg = layer.J_regressor.float()  # (24, V)
        self.register_buffer("j_template", jreg @ layer.v_template.float())  # (24, 3)
        dirs = layer.shapedirs.float()  # (V, 3, 10)
        self.register_buffer("j_dirs", torch.einsum("jv,vcb->jcb", jreg, dirs))  # (24, 3, 10)
        self.parents = [int(p) for p in body.parents.tolist()]

    def forward(self, rotmat: Tensor, betas: Tensor) -> Tensor:
        rest = self.j_template + torch.einsum("jcb,nb->njc", self.j_dirs, betas)  # (B, 24, 3)
        rots = [rotmat[:, 0]]
        pos = [rest[:, 0]]
        for k in range(1, rotmat.shape[1]):
            p = self.parents[k]
            pos.append(pos[p] + (rots[p] @ (rest[:, k] - rest[:, p]).unsqueeze(-1)).squeeze(-1))
            rots.append(rots[p] @ rotmat[:, k])
        return torch.stack(pos, dim=1)


def split_estimate(est: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 157) estimate -> pose6d (B, 24, 6), betas (B, 10), cam (B, 3)."""
    return est[:, :144].reshape(-1, 24, 6), est[:, 144:154], est[:, 154:157]


def project_to_crop(joints: Tensor, cam: Tensor, box: Tensor, K: Tensor) -> Tensor:
    """Joints of the estimate into the crop's normalised coordinates, through the REAL camera.

    joints (B, J, 3) root-frame joints, cam (B, 3) crop camera, box (B, 3) [cx, cy, size] px,
    K (B, 3, 3) -> (B, J, 2) in [-1, 1] across the crop (grid_sample's convention with
    align_corners=False: -1 and 1 are the crop's outer edges). The crop camera becomes a
    translation with K (as the pipeline does), the joints are projected with K, and the pixels
    are expressed in the crop box: the same geometry the published body has.
    """
    # A body behind the camera has no image (depth >= 0.1 m), nor has a degenerate box.
    uv = G.project_to_crop(joints, cam, box, K, min_depth=0.1, min_half_size=1e-3)
    return uv.clamp(-2.0, 2.0)


def estimate_joints(joint_model: JointModel, est: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 157) estimate -> rotmat (B, 24, 3, 3), joints (B, 24, 3), cam (B, 3)."""
    pose6d, betas, cam = split_estimate(est)
    rotmat = rot6d_to_matrix(pose6d)
    return rotmat, joint_model(rotmat, betas), cam
