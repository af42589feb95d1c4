"""`BodyModel`: one wrapper over smplx for real SMPL files and the bundled synthetic model."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from torch import Tensor, nn

from ..resources import resource_path
from .joints import LANDMARK_NAMES, SMPL_HEAD_TOP_VERTEX, SMPLX_LANDMARK_KEYS
from .smpl_io import SMPLFileError, as_struct, read_model_file

SYNTHETIC_MODEL_FILE = "smpl_synthetic.npz"
GENDERS = ("neutral", "male", "female")
REAL_SMPL_VERTICES = 6890


@dataclass(frozen=True)
class BodyOutput:
    """A batch of posed bodies, in the frame of the given pose and translation.

    vertices: (B, V, 3); joints: (B, 24, 3) SMPL joints; landmarks: (B, 22, 3) surface points
    named by `LANDMARK_NAMES`.
    """

    vertices: Tensor
    joints: Tensor
    landmarks: Tensor

    @property
    def points(self) -> Tensor:
        """The 46 source points of `joints.map_points`: joints then landmarks, (B, 46, 3)."""
        return torch.cat([self.joints, self.landmarks], dim=1)


def _find_model_file(path: str | Path | None, gender: str) -> Path:
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    if path is None:
        return resource_path("weights", SYNTHETIC_MODEL_FILE)
    path = Path(path)
    if path.is_dir():
        g = gender.upper()
        short = "neutral" if gender == "neutral" else gender[0]
        names = [f"SMPL_{g}.pkl", f"SMPL_{g}.npz", f"smpl_{gender}.pkl", f"smpl_{gender}.npz",
                 f"basicModel_{short}_lbs_10_207_0_v1.0.0.pkl"]
        for name in names:
            if (path / name).is_file():
                return path / name
        raise SMPLFileError(f"no {gender} SMPL model in {path}; looked for {', '.join(names)}")
    return path


class BodyModel(nn.Module):
    """SMPL body model: shape, pose and translation to vertices, joints and landmarks.

    `BodyModel()` loads the bundled synthetic model; `BodyModel("SMPL_NEUTRAL.pkl")` or a folder
    holding `SMPL_{GENDER}.pkl` loads a real one (chumpy is not needed).
    """

    def __init__(self, path: str | Path | None = None, gender: str = "neutral",
                 num_betas: int = 10) -> None:
        super().__init__()
        self.path = _find_model_file(path, gender)
        arrays = read_model_file(self.path)
        n_vertices = int(np.shape(arrays["v_template"])[0])
        if "landmark_ids" in arrays:
            ids = np.asarray(arrays["landmark_ids"], dtype=np.int64)
            if ids.shape != (len(LANDMARK_NAMES),) or ids.max() >= n_vertices:
                raise SMPLFileError(f"{self.path}: landmark_ids must be {len(LANDMARK_NAMES)} "
                                    f"vertex ids below {n_vertices}")
        elif n_vertices == REAL_SMPL_VERTICES:
            ids = np.asarray(
                [smplx.vertex_ids.vertex_ids["smplh"][k] for k in SMPLX_LANDMARK_KEYS]
                + [SMPL_HEAD_TOP_VERTEX], dtype=np.int64)
        else:
            raise SMPLFileError(f"{self.path}: a model with {n_vertices} vertices (not SMPL's "
                                f"{REAL_SMPL_VERTICES}) must store 'landmark_ids'")
        vertex_ids = dict(zip(SMPLX_LANDMARK_KEYS, (int(i) for i in ids[:21])))
        self.gender = gender
        self.synthetic = n_vertices != REAL_SMPL_VERTICES
        # smplx prints a warning to stdout for any model with fewer than 300 shape directions
        # (every SMPL file has 10); keep it out of the command output.
        with contextlib.redirect_stdout(io.StringIO()):
            self.layer = smplx.SMPLLayer(model_path=str(self.path),
                                         data_struct=as_struct(arrays),
                                         vertex_ids=vertex_ids, num_betas=num_betas)
        self.register_buffer("head_top_id", torch.tensor([int(ids[21])]), persistent=False)
        weights = np.asarray(arrays["weights"])
        part = arrays.get("part_ids", weights.argmax(axis=1))
        self.part_ids = np.asarray(part, dtype=np.int64)
        self.faces = np.asarray(arrays["f"], dtype=np.int64)
        self.landmark_ids = ids
        self._register_point_buffers()

    def _register_point_buffers(self) -> None:
        """What `points_rotmat` needs: SMPL's linear maps restricted to the 22 landmark
        vertices, and the joint regressor folded into the shape space (joints are regressed
        from the shaped, unposed mesh, so J(betas) = J_reg @ v_template + (J_reg @ shapedirs)
        betas exactly). Buffers, so they follow the module's device and dtype."""
        layer = self.layer
        # smplx's selector picks the 21 vertex landmarks (in its own order, which is the
        # order of out.joints[:, 24:45]); the head top is the 22nd, as in `forward`.
        ids = torch.cat([layer.vertex_joint_selector.extra_joints_idxs.long(),
                         self.head_top_id])
        n_v = layer.v_template.shape[0]
        posedirs = layer.posedirs.reshape(-1, n_v, 3)[:, ids].reshape(layer.posedirs.shape[0], -1)
        buffers = {
            "_joint_template": layer.J_regressor @ layer.v_template,  # (24, 3)
            "_joint_shapedirs": torch.einsum("jv,vkl->jkl", layer.J_regressor,
                                             layer.shapedirs),  # (24, 3, L)
            "_landmark_template": layer.v_template[ids],  # (22, 3)
            "_landmark_shapedirs": layer.shapedirs[ids],  # (22, 3, L)
            "_landmark_posedirs": posedirs,  # (207, 66)
            "_landmark_weights": layer.lbs_weights[ids],  # (22, 24)
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.detach().clone(), persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.layer.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.layer.num_betas)

    @property
    def parents(self) -> Tensor:
        return self.layer.parents

    def forward(self, betas: Tensor, body_pose: Tensor, global_orient: Tensor,
                transl: Tensor | None = None) -> BodyOutput:
        """Pose the body from rotation matrices.

        betas: (B, 10); body_pose: (B, 23, 3, 3); global_orient: (B, 3, 3) or (B, 1, 3, 3);
        transl: (B, 3) or None. Returns vertices (B, V, 3), joints (B, 24, 3), landmarks
        (B, 22, 3).
        """
        b = betas.shape[0]
        out = self.layer(betas=betas, body_pose=body_pose.reshape(b, 23, 3, 3),
                         global_orient=global_orient.reshape(b, 1, 3, 3), transl=transl)
        joints = out.joints[:, :24]
        head_top = out.vertices.index_select(1, self.head_top_id)
        landmarks = torch.cat([out.joints[:, 24:45], head_top], dim=1)
        return BodyOutput(vertices=out.vertices, joints=joints, landmarks=landmarks)

    def forward_rotmat(self, rotmat: Tensor, betas: Tensor,
                       transl: Tensor | None = None) -> BodyOutput:
        """Pose from the regressor's layout: rotmat (B, 24, 3, 3) with the root first."""
        return self.forward(betas, rotmat[:, 1:], rotmat[:, :1], transl)

    def global_rotations(self, rotmat: Tensor) -> Tensor:
        """(B, 24, 3, 3) parent-relative joint rotations (root first) -> (B, 24, 3, 3) each
        joint's rotation accumulated down the kinematic tree, in the root's parent frame
        (the camera frame for estimates): the rotation part of the joint transforms."""
        parents = self.parents.tolist()
        out = [rotmat[:, 0]]
        for k in range(1, rotmat.shape[1]):
            out.append(out[parents[k]] @ rotmat[:, k])
        return torch.stack(out, dim=1)

    def points_rotmat(self, rotmat: Tensor, betas: Tensor) -> Tensor:
        """The 46 points of `BodyOutput.points` (24 joints, then the 22 landmarks) without the
        rest of the mesh: rotmat (B, 24, 3, 3) root first, betas (B, L) -> (B, 46, 3).

        Equal to `forward_rotmat(rotmat, betas).points` up to float rounding: SMPL's blend
        skinning is per vertex, so posing only the 22 landmark vertices (and the joints, from
        the shape space) gives the same points at a small fraction of the cost. The
        adaptation losses use it: they evaluate bodies many times per step, twice
        differentiated, and never look at the other vertices.
        """
        b = betas.shape[0]
        ls = self._landmark_shapedirs.shape[-1]
        betas = betas[:, :ls]
        joints = self._joint_template + torch.einsum("bl,jkl->bjk", betas,
                                                     self._joint_shapedirs)
        shaped = self._landmark_template + torch.einsum("bl,mkl->bmk", betas,
                                                        self._landmark_shapedirs)
        eye = torch.eye(3, dtype=rotmat.dtype, device=rotmat.device)
        pose_feature = (rotmat[:, 1:] - eye).reshape(b, -1)
        posed = shaped + (pose_feature @ self._landmark_posedirs).reshape(b, -1, 3)
        posed_joints, rel = smplx.lbs.batch_rigid_transform(rotmat, joints, self.parents,
                                                            dtype=rotmat.dtype)
        T = (self._landmark_weights @ rel.reshape(b, 24, 16)).reshape(b, -1, 4, 4)
        landmarks = (T[..., :3, :3] @ posed[..., None])[..., 0] + T[..., :3, 3]
        return torch.cat([posed_joints, landmarks], dim=1)

    def forward_axis_angle(self, pose: Tensor, betas: Tensor,
                           transl: Tensor | None = None) -> BodyOutput:
        """Pose from SMPL's 72 axis-angle numbers: pose (B, 72) or (B, 24, 3)."""
        from ..geometry import axis_angle_to_matrix

        rot = axis_angle_to_matrix(pose.reshape(pose.shape[0], 24, 3))
        return self.forward_rotmat(rot, betas, transl)
