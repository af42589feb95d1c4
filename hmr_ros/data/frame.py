"""Records passed between input (camera, bag, synthetic world), the pipeline and outputs.

Everything is plain numpy and typed; the ROS layer converts messages to and from these.
Conventions: images are RGB uint8 (H, W, 3); pixel centres at integer coordinates; 3D in the
camera optical frame (x right, y down, z forward), metres; SMPL rotations axis-angle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..body.joints import get_joint_set


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics of a rectified image: K (3, 3) in pixels, image size."""

    K: np.ndarray
    width: int
    height: int
    frame_id: str = "camera_optical_frame"

    def __post_init__(self) -> None:
        k = np.array(self.K, dtype=np.float64)  # a private, writable copy
        if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ValueError(f"K must be a finite 3x3 matrix with positive focal, got {k}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "K", k)

    @classmethod
    def from_focal(cls, focal: float, width: int, height: int,
                   frame_id: str = "camera_optical_frame") -> CameraModel:
        """Square pixels, principal point at the image centre."""
        K = np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0],
                      [0.0, 0.0, 1.0]])
        return cls(K, width, height, frame_id)

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])


@dataclass(frozen=True)
class Keypoints:
    """One person's 2D keypoints in a named joint layout (`hmr_ros.body.joints`).

    xy (J, 2) float32 pixels; confidence (J,) float32 in [0, 1], 0 = missing. Non-finite
    coordinates are accepted and marked missing (confidence 0), never propagated.
    """

    format: str
    xy: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        js = get_joint_set(self.format)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf -> missing
            xy = np.asarray(self.xy, dtype=np.float32).reshape(-1, 2)
            conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        if xy.shape[0] != len(js) or conf.shape[0] != len(js):
            raise ValueError(f"{self.format} has {len(js)} joints; got xy {xy.shape}, "
                             f"confidence {conf.shape}")
        bad = ~np.all(np.isfinite(xy), axis=1) | ~np.isfinite(conf)
        conf = np.where(bad, 0.0, np.clip(conf, 0.0, 1.0)).astype(np.float32)
        xy = np.where(bad[:, None], 0.0, xy).astype(np.float32)
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "confidence", conf)

    def __len__(self) -> int:
        return len(self.confidence)

    def visible(self, threshold: float = 0.0) -> np.ndarray:
        return self.confidence > threshold


@dataclass(frozen=True)
class BodyParams:
    """SMPL parameters of one person in the camera frame.

    betas (10,); global_orient (3,) axis-angle of the pelvis in the camera frame; body_pose
    (23, 3) axis-angle, parent-relative; transl (3,) metres, camera-frame vertices =
    SMPL(betas, pose) + transl.
    """

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray

    def full_pose(self) -> np.ndarray:
        """(24, 3) axis-angle, root first."""
        return np.concatenate([np.reshape(self.global_orient, (1, 3)),
                               np.reshape(self.body_pose, (23, 3))], axis=0)


@dataclass(frozen=True)
class Detection:
    """One person in one frame as the input provides it: a track id (-1 when unknown), 2D
    keypoints and/or a box (4,) x_min, y_min, x_max, y_max in pixels."""

    id: int = -1
    keypoints: Keypoints | None = None
    box: np.ndarray | None = None


@dataclass(frozen=True)
class Frame:
    """One camera image with what is known about the people in it.

    `ground_truth` maps detection ids to true SMPL parameters (synthetic data and datasets).
    """

    image: np.ndarray
    stamp_ns: int
    camera: CameraModel | None
    detections: tuple[Detection, ...] = ()
    index: int = 0
    ground_truth: dict[int, BodyParams] = field(default_factory=dict)
    frame_id: str = ""  # the camera optical frame of the outputs; "" = the camera's

    @property
    def output_frame_id(self) -> str:
        """Where this frame's 3D outputs live: `frame_id`, else the camera's frame, else
        `camera_optical_frame` (the rule of `hmr_ros.stream.frames`)."""
        if self.frame_id:
            return self.frame_id
        return self.camera.frame_id if self.camera is not None else "camera_optical_frame"

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class PersonEstimate:
    """One person's estimate in one frame (camera frame, metres).

    box (3,) [cx, cy, size] crop box in pixels; cam (3,) crop camera [s, tx, ty]; joints
    (24, 3); points (46, 3) joints then landmarks; vertices (V, 3) or None; keypoints: the 2D
    input used (or None when the crop came from a box).
    """

    id: int
    box: np.ndarray
    cam: np.ndarray
    params: BodyParams
    joints: np.ndarray
    points: np.ndarray
    vertices: np.ndarray | None
    keypoints: Keypoints | None
    confidence: float
    rotations: np.ndarray | None = None

    @property
    def bbox_xyxy(self) -> np.ndarray:
        """(4,) x_min, y_min, x_max, y_max of the square crop box."""
        cx, cy, s = np.asarray(self.box, dtype=np.float64).reshape(3)
        return np.array([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline made of one frame."""

    index: int
    stamp_ns: int
    people: tuple[PersonEstimate, ...]
    model_version: int
    latency_ms: float
    skipped: tuple[str, ...] = ()  # one reason per detection that produced no estimate
    crops: np.ndarray | None = None  # (N, R, R, 3) the crops used, same order as people
