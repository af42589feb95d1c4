"""SMPL body model: the smplx wrapper, joint sets and the bundled synthetic model."""

from .joints import (
    JOINT_SETS,
    LANDMARK_NAMES,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    JointSet,
    get_joint_set,
    map_points,
)
from .model import BodyModel, BodyOutput

__all__ = [
    "JOINT_SETS",
    "LANDMARK_NAMES",
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "BodyModel",
    "BodyOutput",
    "JointSet",
    "get_joint_set",
    "map_points",
]
