"""hmr_ros/SMPLBodyArray <-> estimates (`PersonEstimate`) and ground truth (`BodyParams`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.frame import BodyParams, PersonEstimate
from .factory import MessageFactory, make_header


def bodies_to_msg(factory: MessageFactory, people: Sequence[PersonEstimate], stamp_ns: int,
                  frame_id: str, model_version: int, model_name: str,
                  with_vertices: bool = False) -> Any:
    """Estimates -> hmr_ros/SMPLBodyArray (vertices only `with_vertices`)."""
    bodies = []
    for p in people:
        prm: BodyParams = p.params
        joints = [factory.new("geometry_msgs/msg/Point", x=float(j[0]), y=float(j[1]),
                              z=float(j[2])) for j in np.asarray(p.joints, dtype=np.float64)]
        verts = (np.asarray(p.vertices, np.float32) if with_vertices and p.vertices is not None
                 else np.zeros(0, np.float32))
        t = np.asarray(prm.transl, dtype=np.float64)
        bodies.append(factory.new(
            "hmr_ros/msg/SMPLBody", id=max(int(p.id), 0),
            betas=factory.array(prm.betas, np.float32),
            body_pose=factory.array(prm.body_pose, np.float32),
            global_orient=factory.array(prm.global_orient, np.float32),
            translation=factory.new("geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]),
                                    z=float(t[2])),
            joints=joints, vertices=factory.array(verts, np.float32),
            bbox=factory.array(p.bbox_xyxy, np.float32), confidence=float(p.confidence)))
    return factory.new("hmr_ros/msg/SMPLBodyArray",
                       header=make_header(factory, stamp_ns, frame_id),
                       model_version=int(model_version), model_name=model_name, bodies=bodies)


def msg_to_bodies(msg: Any) -> dict[int, BodyParams]:
    """hmr_ros/SMPLBodyArray -> {id: BodyParams}."""
    out = {}
    for b in msg.bodies:
        t = b.translation
        out[int(b.id)] = BodyParams(
            betas=np.asarray(b.betas, np.float32).copy(),
            global_orient=np.asarray(b.global_orient, np.float32).copy(),
            body_pose=np.asarray(b.body_pose, np.float32).reshape(23, 3).copy(),
            transl=np.array([t.x, t.y, t.z], np.float32))
    return out


