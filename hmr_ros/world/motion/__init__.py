"""Procedural, deterministic library of smooth, plausible SMPL motions with root trajectories.

A clip is a sequence of action segments (walk, turn, reach, wave, squat, sit, idle), each 2-5 s
long, cross-faded into one another; a seed fully determines a clip. Each segment is an analytic
function of time (and of the clip-wide gait phase) returning anatomical angle parameters; the
blend is clipped to the joint limits and only then converted to SMPL axis-angle.

Modules, in dependency order:
  limits   the angle parameters, their limits, the per-joint axis table, `params_to_pose`
  blocks   envelopes, soft clipping, noise, a person's style, parameter edits, `_Segment`
  gait     the gait cycle and the walk and turn actions
  actions  idle, reach, wave, squat and sit
  clip     `MotionClip`, sequencing and cross-fades, `generate_motion`, `generate_library`,
           `library_poses`

The names below are the package's interface; the underscored helpers the modules share among
themselves are not.
"""

from .clip import (
    ACTIONS,
    MotionClip,
    clip_seed,
    generate_library,
    generate_motion,
    library_poses,
)
from .limits import JOINT_LIMITS, NUM_PARAMS, PARAM_NAMES, params_to_pose

__all__ = [
    "ACTIONS",
    "JOINT_LIMITS",
    "NUM_PARAMS",
    "PARAM_NAMES",
    "MotionClip",
    "clip_seed",
    "generate_library",
    "generate_motion",
    "library_poses",
    "params_to_pose",
]
