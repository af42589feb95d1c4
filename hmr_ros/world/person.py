"""A synthetic person: a whole motion posed once through the body model and placed in the
world, and its state at one frame in a camera's frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..body import BodyModel
from ..data.frame import BodyParams
from ..geometry import axis_angle_to_matrix, matrix_to_axis_angle
from ..render import RenderMesh
from .appearance import Appearance, person_albedo, person_texture
from .domain import DomainConfig
from .motion import MotionClip


@dataclass(frozen=True)
class PersonState:
    """One person at one frame, in the world and in the camera frame."""

    id: int
    params: BodyParams  # camera frame
    vertices: np.ndarray  # (V, 3) camera frame
    points: np.ndarray  # (46, 3) camera frame: 24 joints then landmarks
    root_world: np.ndarray  # (3,) pelvis in the world


class Person:
    """A person's whole motion, posed once for the sequence."""

    def __init__(self, pid: int, body: BodyModel, motion: MotionClip, betas: np.ndarray,
                 appearance: Appearance, offset_xz: np.ndarray, texture_seed: int) -> None:
        self.id = pid
        self.betas = betas.astype(np.float32)
        self.appearance = appearance
        t = len(motion)
        pose = torch.from_numpy(motion.full_pose().reshape(t, 72).astype(np.float32))
        b = torch.from_numpy(np.repeat(self.betas[None], t, 0))
        with torch.no_grad():
            out = body.forward_axis_angle(pose, b)
        verts = out.vertices.numpy().astype(np.float64)
        points = out.points.numpy().astype(np.float64)
        j0 = out.joints[:, 0].numpy().astype(np.float64)
        # Place the pelvis over root_xz and put the lowest vertex on the floor.
        shift = np.zeros((t, 3))
        shift[:, [0, 2]] = motion.root_xz + offset_xz - j0[:, [0, 2]]
        shift[:, 1] = -verts[:, :, 1].min(1)
        self.world_vertices = verts + shift[:, None]
        self.world_points = points + shift[:, None]
        self.world_root = j0 + shift
        self.world_orient = axis_angle_to_matrix(
            torch.from_numpy(motion.global_orient.astype(np.float64))).numpy()
        self.body_pose = motion.body_pose.astype(np.float64)
        self.shift = shift
        self.rest_j0 = j0[0] - 0.0  # J0(beta) is the same for every frame
        rest = body.layer.v_template.numpy().astype(np.float64)
        self.albedo = person_albedo(appearance, body.part_ids, rest)
        eyes = [body.landmark_ids[i] for i in (1, 2)]
        face = rest[eyes]
        mouth = rest[body.landmark_ids[0]] - np.array([0.0, 0.04, 0.0])
        self.texture = person_texture(appearance, texture_seed, np.vstack([face, mouth]))
        self.rest = rest
        self.part_ids = body.part_ids
        self.faces = body.faces

    def state(self, i: int, cam_to_world: np.ndarray, cam_pos: np.ndarray) -> PersonState:
        r_cw = cam_to_world.T
        to_cam = lambda p: (p - cam_pos) @ r_cw.T  # noqa: E731
        orient = r_cw @ self.world_orient[i]
        # SMPL rotates about J0: camera-frame transl = R_cw (J0 + t_world - c) - J0.
        j0 = self.rest_j0
        transl = r_cw @ (j0 + self.shift[i] - cam_pos) - j0
        params = BodyParams(
            betas=self.betas.copy(),
            global_orient=matrix_to_axis_angle(torch.from_numpy(orient)).numpy().astype(
                np.float32),
            body_pose=self.body_pose[i].astype(np.float32),
            transl=transl.astype(np.float32),
        )
        return PersonState(self.id, params, to_cam(self.world_vertices[i]),
                           to_cam(self.world_points[i]), self.world_root[i])

    def mesh(self, vertices_cam: np.ndarray) -> RenderMesh:
        return RenderMesh(vertices_cam, self.faces, self.albedo, surface=self.rest,
                          texture=self.texture, labels=self.part_ids)


def sample_betas(rng: np.random.Generator, domain: DomainConfig) -> np.ndarray:
    mean = np.asarray(domain.people.betas_mean or (0.0,) * 10)
    return (mean + domain.people.betas_std * rng.standard_normal(10)).clip(-3.0, 3.0)
