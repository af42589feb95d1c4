"""2D error between the projected predicted joints and the detected keypoints.

On real video there is no 3D ground truth; the detected keypoints are the only measurement.
For each person, the predicted SMPL points (camera frame) are mapped to the detector's layout
(the same joint-set matrix the adaptation losses use), projected through K, and compared with
the keypoints whose confidence is above a threshold: the mean pixel distance, and that distance
divided by the side of the person's square crop box (so near and far people count alike).

A frame's error is the mean over its people; a clip's is the mean over frames with people.
It is held-out evidence only for predictions made before the model adapted on that frame
(replay protocols `before` and `async`); under `after` the model has fitted these very
keypoints, and the number is a training loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..body.joints import get_joint_set
from ..data.frame import CameraModel

MIN_DEPTH = 0.1  # m, points nearer than this are projected as if at this depth


@dataclass(frozen=True)
class PersonKeypointError:
    """One person's error in one frame: mean px, mean px / crop box side, joints used."""

    id: int
    px: float
    normalised: float
    joints: int


def project_points(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) -> pixels (N, 2)."""
    p = np.asarray(points, dtype=np.float64)
    z = np.maximum(p[:, 2], MIN_DEPTH)
    uvw = p @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / z[:, None]


def person_errors(people: Sequence, camera: CameraModel, threshold: float = 0.2,
                  min_joints: int = 4) -> list[PersonKeypointError]:
    """Errors of the estimates (`PersonEstimate`s with keypoints) of one frame; people with
    fewer than `min_joints` keypoints above `threshold` are left out."""
    out = []
    for p in people:
        kp = p.keypoints
        if kp is None:
            continue
        ok = kp.confidence > threshold
        if ok.sum() < min_joints:
            continue
        mapped = get_joint_set(kp.format).matrix() @ np.asarray(p.points, dtype=np.float64)
        uv = project_points(mapped, camera.K)
        d = np.linalg.norm(uv[ok] - kp.xy[ok].astype(np.float64), axis=1)
        px = float(d.mean())
        out.append(PersonKeypointError(int(p.id), px, px / float(p.box[2]), int(ok.sum())))
    return out


class KeypointErrorMeter:
    """Collects per-frame errors over a clip; `summary()` averages them."""

    def __init__(self, threshold: float = 0.2) -> None:
        self.threshold = threshold
        self.frames: list[tuple[int, float, float, int]] = []  # index, px, normalised, people

    def add(self, index: int, people: Sequence, camera: CameraModel) -> float | None:
        """Add one frame; returns its mean error in px (None without measurable people)."""
        errs = person_errors(people, camera, self.threshold)
        if not errs:
            return None
        px = float(np.mean([e.px for e in errs]))
        self.frames.append((index, px, float(np.mean([e.normalised for e in errs])), len(errs)))
        return px

    def summary(self) -> dict:
        if not self.frames:
            return {"frames": 0, "people": 0, "mean_px": None, "median_px": None,
                    "mean_normalised": None, "thirds_px": None, "per_frame_px": []}
        px = np.array([f[1] for f in self.frames])
        norm = np.array([f[2] for f in self.frames])
        # Adaptation gains grow over the clip: the thirds show the trend.
        thirds = [float(part.mean()) for part in np.array_split(px, 3) if len(part)]
        return {"frames": len(self.frames), "people": int(sum(f[3] for f in self.frames)),
                "mean_px": float(px.mean()), "median_px": float(np.median(px)),
                "mean_normalised": float(norm.mean()), "thirds_px": thirds,
                "per_frame_px": [[f[0], round(f[1], 4)] for f in self.frames]}
