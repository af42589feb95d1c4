"""MediaPipe BlazePose in-process: 33 landmarks per person, format `blazepose33`.

MediaPipe is an optional dependency (`pip install -e ".[mediapipe]"`, mediapipe 0.10.14).
We use its legacy `mp.solutions.pose.Pose` graph because the wheel carries the models it
needs (the BlazePose person detector and the full landmark model), so nothing is downloaded;
the newer Tasks API (PoseLandmarker) needs a separately downloaded .task file. The graph finds
one person per image, so for several people:

- `BlazePoseWhole` (detector.kind = mediapipe): the whole image, one person, in MediaPipe's
  video mode (it follows the person from the previous frame's landmarks).
- `BlazePoseBoxes` (detector.kind = mediapipe_hog, `multi_pose.py`): several people, each
  followed by a graph of their own, new ones found in proposal boxes.

A landmark's confidence is MediaPipe's visibility (the legacy graph leaves `presence` at 0);
landmarks predicted outside the image get confidence 0.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..config import DetectorConfig
from ..data.frame import Detection, Keypoints
from .base import DetectorUnavailable, box_iou, keypoint_box
from .tracker import keypoint_similarity

FORMAT = "blazepose33"
VISIBLE = 0.5  # visibility above which a landmark counts as seen (box, min_visible)
MIN_BOX_FRACTION = 0.4  # a pose's box must be this tall relative to the box it was sought in
MISSING = ('MediaPipe is not installed: pip install -e ".[mediapipe]" (mediapipe 0.10.14, whose '
           "wheel carries the BlazePose models); or give keypoints another way (a keypoint "
           "topic in the bag, detector.kind=none)")
_MODEL_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite",
                2: "pose_landmark_heavy.tflite"}


def _pose_module():
    try:
        import mediapipe as mp
    except ImportError as err:
        raise DetectorUnavailable(f"{MISSING} ({err})") from err
    pose = getattr(getattr(mp, "solutions", None), "pose", None)
    if pose is None:
        raise DetectorUnavailable(
            f"mediapipe {getattr(mp, '__version__', '?')} has no legacy mp.solutions.pose "
            "graph with bundled models; install mediapipe==0.10.14 (the [mediapipe] extra)")
    return mp, pose


def _protobuf_version() -> str:
    try:
        from google.protobuf import __version__ as version
    except ImportError:
        return "none"
    return str(version)


class BlazePose:
    """One BlazePose graph (person detector + landmark model).

    static: still-image mode (every call detects afresh: crops of different people) or video
    mode (follows the person between calls: one camera stream, or a crop that moves with its
    person). smooth: MediaPipe's landmark filter (default: in video mode), which must be off
    where the crop moves between calls (the filter runs in crop coordinates).
    """

    def __init__(self, complexity: int = 1, min_detection_confidence: float = 0.5,
                 static: bool = True, smooth: bool | None = None) -> None:
        mp, pose = _pose_module()
        # mediapipe 0.10.14 calls a protobuf method that protobuf 4.25 marks deprecated, once
        # per result: noise for our users, nothing they can act on. Filtered for the process
        # (warnings.catch_warnings around each call is not thread-safe, and graphs run on
        # several threads).
        warnings.filterwarnings("ignore", message=".*GetPrototype", category=UserWarning)
        # Only the full landmark model ships in the wheel; MediaPipe would try to download
        # the others on first use, which fails offline with an obscure error.
        model = Path(mp.__file__).parent / "modules" / "pose_landmark" / _MODEL_FILES[complexity]
        if not model.is_file():
            raise DetectorUnavailable(
                f"BlazePose model_complexity {complexity} needs {model.name}, which this "
                "mediapipe wheel does not carry (MediaPipe downloads it on first use); use "
                "detector.model_complexity=1")
        try:
            smooth = not static if smooth is None else smooth
            self._pose = pose.Pose(static_image_mode=static, model_complexity=complexity,
                                   smooth_landmarks=smooth, enable_segmentation=False,
                                   min_detection_confidence=min_detection_confidence)
            # One call on a blank image: a mismatched protobuf breaks MediaPipe's graph setup
            # or its first result, and should fail here, with the fix, not mid-stream.
            self._process(np.zeros((64, 64, 3), np.uint8))
        except Exception as err:
            raise DetectorUnavailable(
                f"mediapipe {getattr(mp, '__version__', '?')} does not work here "
                f"({type(err).__name__}: {err}); it needs protobuf<5 (installed: "
                f"{_protobuf_version()}): pip install -e \".[mediapipe]\"") from err

    def _process(self, rgb: np.ndarray):
        return self._pose.process(rgb)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Landmarks of the one person found in `rgb` (H, W, 3) uint8: xy (33, 2) pixels,
        visibility (33,); None when no person is found."""
        res = self._process(np.ascontiguousarray(rgb))
        if res.pose_landmarks is None:
            return None
        arr = np.array([[p.x, p.y, p.visibility] for p in res.pose_landmarks.landmark],
                       dtype=np.float64)
        h, w = rgb.shape[:2]
        # MediaPipe's normalised coordinates run from the image's left edge (0) to its right
        # edge (1); our pixel centres sit at integers, so the left edge is x = -0.5.
        xy = arr[:, :2] * np.array([w, h]) - 0.5
        return xy, arr[:, 2]

    def reset(self) -> None:
        """Forget the person followed in video mode (the next call detects afresh)."""
        self._pose.reset()

    def close(self) -> None:
        self._pose.close()


def landmarks_to_detection(xy: np.ndarray, visibility: np.ndarray, width: int, height: int,
                           min_visible: int) -> Detection | None:
    """A Detection (id -1, blazepose33 keypoints, keypoint box) from image-pixel landmarks,
    or None with fewer than `min_visible` landmarks seen inside the image."""
    conf = np.clip(np.asarray(visibility, dtype=np.float64), 0.0, 1.0)
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) \
        & (xy[:, 1] <= height - 0.5)
    conf = np.where(inside, conf, 0.0)
    if int((conf > VISIBLE).sum()) < max(min_visible, 2):
        return None
    kp = Keypoints(FORMAT, xy.astype(np.float32), conf.astype(np.float32))
    box = keypoint_box(kp, VISIBLE)
    if box is None:
        return None
    return Detection(-1, kp, box)


def same_person(a: Detection, b: Detection, iou: float) -> bool:
    """Two poses of one person: their keypoint boxes overlap more than `iou`, or their
    landmarks agree (OKS above one half; two crops around one person give slightly
    different boxes but the same landmarks)."""
    if box_iou(a.box, b.box)[0, 0] > iou:
        return True
    height = float(max(a.box[3] - a.box[1], b.box[3] - b.box[1]))
    oks = keypoint_similarity(a.keypoints, b.keypoints, np.zeros(2), height, VISIBLE)
    return oks is not None and oks > 0.5


def suppress(dets: list[Detection], iou: float, max_people: int) -> list[Detection]:
    """Non-maximum suppression: of the poses of one person (`same_person`) the one with more
    (then surer) visible landmarks wins; at most `max_people`, the largest first."""
    def strength(d: Detection) -> tuple[int, float]:
        c = d.keypoints.confidence
        return int((c > VISIBLE).sum()), float(c.mean())

    kept: list[Detection] = []
    for d in sorted(dets, key=strength, reverse=True):
        if not any(same_person(d, k, iou) for k in kept):
            kept.append(d)
    kept.sort(key=lambda d: -float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
    return kept[:max_people]


class BlazePoseWhole:
    """detector.kind = mediapipe: one person, BlazePose on the whole image."""

    name = "mediapipe"

    def __init__(self, cfg: DetectorConfig | None = None, static: bool = False) -> None:
        self.cfg = cfg or DetectorConfig()
        self.pose = BlazePose(self.cfg.model_complexity, self.cfg.min_detection_confidence,
                              static)

    def detect(self, image: np.ndarray, stamp_ns: int) -> list[Detection]:
        found = self.pose(image)
        if found is None:
            return []
        det = landmarks_to_detection(found[0], found[1], image.shape[1], image.shape[0],
                                     self.cfg.min_visible)
        return [det] if det is not None else []

    def close(self) -> None:
        self.pose.close()
