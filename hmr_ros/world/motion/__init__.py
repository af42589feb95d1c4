"""Procedural SMPL motions (see `clip` for how a pose is made)."""

from .clip import (
    ACTIONS,
    JOINT_LIMITS,
    NUM_PARAMS,
    PARAM_NAMES,
    MotionClip,
    clip_seed,
    generate_library,
    generate_motion,
    params_to_pose,
)
