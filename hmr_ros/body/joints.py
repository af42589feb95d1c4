"""Joint sets and the mappings from SMPL to each of them.

Every mapping starts from the SMPL *source points*: the 24 SMPL joints followed by the
surface landmarks of `LANDMARK_NAMES` (vertices picked on the mesh: face, feet, finger tips,
head top). A target joint set is a weight matrix `(N_target, N_source)` over those points, so
exact correspondences are one-hot rows and approximations (for example OpenPose's neck as the
mean of the two shoulders) are convex combinations. Approximate joints are listed in each set's
`approximate` tuple and documented in its `note`: SMPL's joints are centres of rotation inside
the body, while detectors label points on the surface, so e.g. COCO hips sit a few centimetres
above and outside SMPL's hip joints. Metrics compare like with like (both sides through the
same mapping), so the approximation never biases an evaluation on our own data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)

# Parent of each SMPL joint in the kinematic tree (-1 for the root).
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)

# Surface landmarks, in the order smplx's VertexJointSelector appends them to the joints (its
# 21 keys: face, feet, then finger tips of the left and right hand), plus the head top that
# LSP and H36M need. Real SMPL files use smplx's default vertex ids for the first 21 and
# SMPL_HEAD_TOP_VERTEX for the last; the synthetic model stores its own ids.
SMPLX_LANDMARK_KEYS: tuple[str, ...] = (
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky",
    "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)
LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
    "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
    "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
    "head_top",
)
SMPL_HEAD_TOP_VERTEX = 411  # head-top vertex of the real 6890-vertex SMPL mesh

SOURCE_NAMES: tuple[str, ...] = SMPL_JOINT_NAMES + LANDMARK_NAMES
NUM_SOURCE = len(SOURCE_NAMES)  # 46


@dataclass(frozen=True)
class JointSet:
    """A named joint layout and how to get it from the SMPL source points.

    `sources[i]` lists `(source_name, weight)` pairs whose weighted sum is joint i.
    """

    name: str
    joint_names: tuple[str, ...]
    sources: tuple[tuple[tuple[str, float], ...], ...]
    approximate: tuple[str, ...] = ()
    note: str = ""

    def __len__(self) -> int:
        return len(self.joint_names)

    def index(self, joint: str) -> int:
        return self.joint_names.index(joint)

    def matrix(self) -> np.ndarray:
        """Mapping weights `(N_target, NUM_SOURCE)`; every row sums to 1."""
        m = np.zeros((len(self.joint_names), NUM_SOURCE), dtype=np.float64)
        for i, row in enumerate(self.sources):
            for name, w in row:
                m[i, SOURCE_NAMES.index(name)] += w
        return m


def _one(*names: str) -> tuple[tuple[tuple[str, float], ...], ...]:
    return tuple(((n, 1.0),) for n in names)


def _mean(*names: str) -> tuple[tuple[str, float], ...]:
    return tuple((n, 1.0 / len(names)) for n in names)


SMPL24 = JointSet("smpl24", SMPL_JOINT_NAMES, _one(*SMPL_JOINT_NAMES))

COCO17 = JointSet(
    "coco17",
    (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    _one(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    approximate=("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
    note="Shoulders and hips are SMPL's joint centres, not COCO's surface points.",
)

# OpenPose BODY_25 order.
BODY25 = JointSet(
    "body25",
    (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist", "mid_hip",
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
        "left_big_toe", "left_small_toe", "left_heel",
        "right_big_toe", "right_small_toe", "right_heel",
    ),
    (
        (("nose", 1.0),),
        _mean("left_shoulder", "right_shoulder"),
        *_one("right_shoulder", "right_elbow", "right_wrist"),
        *_one("left_shoulder", "left_elbow", "left_wrist"),
        _mean("left_hip", "right_hip"),
        *_one("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle"),
        *_one("right_eye", "left_eye", "right_ear", "left_ear"),
        *_one("left_big_toe", "left_small_toe", "left_heel"),
        *_one("right_big_toe", "right_small_toe", "right_heel"),
    ),
    approximate=("neck", "mid_hip", "right_shoulder", "left_shoulder", "right_hip", "left_hip"),
    note="OpenPose's neck is the mid-shoulder point and mid_hip the mid-hip point, as OpenPose "
    "defines them; shoulders and hips are SMPL joint centres.",
)

# REP-155 / hri_msgs Skeleton2D: OpenPose's 18-joint COCO layout with the eyes and ears in
# hri_msgs' order (LEFT_EYE=14, RIGHT_EYE=15, LEFT_EAR=16, RIGHT_EAR=17).
REP155_18 = JointSet(
    "rep155_18",
    (
        "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
        "left_hip", "left_knee", "left_ankle", "left_eye", "right_eye", "left_ear", "right_ear",
    ),
    (
        (("nose", 1.0),),
        _mean("left_shoulder", "right_shoulder"),
        *_one("right_shoulder", "right_elbow", "right_wrist"),
        *_one("left_shoulder", "left_elbow", "left_wrist"),
        *_one("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle"),
        *_one("left_eye", "right_eye", "left_ear", "right_ear"),
    ),
    approximate=("neck", "right_shoulder", "left_shoulder", "right_hip", "left_hip"),
    note="hri_msgs/Skeleton2D order; neck is the mid-shoulder point as in OpenPose.",
)

# Human3.6M's 17 joints in the usual order. H36M's own joints come from a vertex regressor we
# do not have; these are SMPL joints standing in for them.
H36M17 = JointSet(
    "h36m17",
    (
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "spine", "thorax", "neck_nose", "head",
        "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ),
    (
        (("pelvis", 1.0),),
        *_one("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle"),
        (("spine2", 1.0),),
        _mean("spine3", "neck"),
        (("nose", 1.0),),
        (("head_top", 1.0),),
        *_one("left_shoulder", "left_elbow", "left_wrist"),
        *_one("right_shoulder", "right_elbow", "right_wrist"),
    ),
    approximate=("pelvis", "right_hip", "left_hip", "spine", "thorax", "head"),
    note="Approximation of the H36M regressor from SMPL joints and landmarks.",
)

# LSP's 14 joints, the subset used for PA-MPJPE on 3DPW/H36M in BOA and SPIN.
LSP14 = JointSet(
    "lsp14",
    (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top",
    ),
    _one(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top",
    ),
    approximate=("right_hip", "left_hip", "right_shoulder", "left_shoulder", "neck"),
    note="SMPL joint centres standing in for LSP's surface annotations.",
)

# MediaPipe BlazePose's 33 landmarks in MediaPipe's order (PoseLandmark 0..32). MediaPipe
# names the mouth corners MOUTH_LEFT / MOUTH_RIGHT; they are called left_mouth / right_mouth
# here so that `flip_permutation` swaps them like every other left/right pair. Rows may hold
# negative weights: an affine combination (weights summing to 1) extrapolates a point, e.g. an
# outer eye corner beyond the eye centre, and stays consistent under any rigid motion.
BLAZEPOSE33 = JointSet(
    "blazepose33",
    (
        "nose", "left_eye_inner", "left_eye", "left_eye_outer",
        "right_eye_inner", "right_eye", "right_eye_outer", "left_ear", "right_ear",
        "left_mouth", "right_mouth", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_heel", "right_heel", "left_foot_index", "right_foot_index",
    ),
    (
        (("nose", 1.0),),
        # Eye corners: a quarter of the inter-eye distance from the eye centre, inwards or
        # outwards (SMPL has only the eye centres).
        (("left_eye", 0.75), ("right_eye", 0.25)),
        (("left_eye", 1.0),),
        (("left_eye", 1.25), ("right_eye", -0.25)),
        (("right_eye", 0.75), ("left_eye", 0.25)),
        (("right_eye", 1.0),),
        (("right_eye", 1.25), ("left_eye", -0.25)),
        *_one("left_ear", "right_ear"),
        # Mouth corners: a quarter of the way from the nose tip down to the neck joint, then
        # a third of the inter-eye distance sideways.
        (("nose", 0.75), ("neck", 0.25), ("left_eye", 0.35), ("right_eye", -0.35)),
        (("nose", 0.75), ("neck", 0.25), ("right_eye", 0.35), ("left_eye", -0.35)),
        *_one("left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
              "left_wrist", "right_wrist"),
        # BlazePose's hand points are knuckles (pinky and index: first knuckle; thumb: second
        # knuckle), between SMPL's hand joint and the finger-tip landmarks.
        (("left_hand", 0.7), ("left_pinky", 0.3)),
        (("right_hand", 0.7), ("right_pinky", 0.3)),
        (("left_hand", 0.7), ("left_index", 0.3)),
        (("right_hand", 0.7), ("right_index", 0.3)),
        (("left_hand", 0.375), ("left_thumb", 0.625)),
        (("right_hand", 0.375), ("right_thumb", 0.625)),
        *_one("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
              "left_heel", "right_heel", "left_big_toe", "right_big_toe"),
    ),
    approximate=(
        "left_eye_inner", "left_eye_outer", "right_eye_inner", "right_eye_outer",
        "left_mouth", "right_mouth", "left_shoulder", "right_shoulder",
        "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_foot_index", "right_foot_index",
    ),
    note="MediaPipe BlazePose (33 landmarks). Eye corners are extrapolated from the eye "
    "centres, mouth corners from nose, neck and eyes; the hand points are knuckles blended "
    "from SMPL's hand joint and the finger tips; foot_index is the big toe tip; shoulders and "
    "hips are SMPL joint centres.",
)

JOINT_SETS: dict[str, JointSet] = {
    s.name: s for s in (SMPL24, COCO17, BODY25, REP155_18, H36M17, LSP14, BLAZEPOSE33)
}


def get_joint_set(name: str) -> JointSet:
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise KeyError(
            f"unknown joint set {name!r}; known: {', '.join(sorted(JOINT_SETS))}"
        ) from None


def map_points(source: Tensor, joint_set: JointSet | str) -> Tensor:
    """Map SMPL source points to a joint set.

    source: (..., NUM_SOURCE, D) -- the 24 joints then the landmarks, as `BodyOutput.points`.
    Returns (..., N_target, D).
    """
    js = get_joint_set(joint_set) if isinstance(joint_set, str) else joint_set
    if source.shape[-2] != NUM_SOURCE:
        raise ValueError(f"expected {NUM_SOURCE} source points, got shape {tuple(source.shape)}")
    m = torch.as_tensor(js.matrix(), dtype=source.dtype, device=source.device)
    return torch.einsum("ts,...sd->...td", m, source)


def flip_permutation(names: tuple[str, ...]) -> list[int]:
    """Index permutation that swaps left and right joints (for mirror augmentation)."""
    out = []
    for n in names:
        if n.startswith("left_"):
            m = "right_" + n[5:]
        elif n.startswith("right_"):
            m = "left_" + n[6:]
        else:
            m = n
        out.append(names.index(m))
    return out
