"""ROS4HRI (REP-155) body messages <-> our estimates: tracked ids, regions of interest, 2D
skeletons, postures.

REP-155 body ids are short strings that start with a letter, valid while the body is tracked.
Ours are `b<track id>` (`hri_id`): track 7 is body `b7`, its TF frame `body_b7`, its topics
`/humans/bodies/b7/...`, for as long as the tracker keeps track 7. Bodies whose 2D skeletons
came from another ROS4HRI detector keep that detector's id string (`HriIds`).

The message definitions of `hri_msgs` (ros4hri/hri_msgs, BSD) that we use are written out
below as their field lists, so that bags and the ROS-free tests can build and read them
through a rosbags typestore without the colcon-built package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..body.joints import get_joint_set
from ..data.frame import CameraModel, Keypoints, PersonEstimate
from .factory import ConversionError, MessageFactory, make_header

TRACKED = "/humans/bodies/tracked"
BODY_TOPICS = ("roi", "cropped", "skeleton2d", "posture")
IDS_LIST = "hri_msgs/msg/IdsList"
ROI = "hri_msgs/msg/NormalizedRegionOfInterest2D"
POINT = "hri_msgs/msg/NormalizedPointOfInterest2D"
SKELETON = "hri_msgs/msg/Skeleton2D"
POSTURE = "hri_msgs/msg/BodyPosture"
SKELETON_FORMAT = "rep155_18"  # hri_msgs/Skeleton2D's 18 points (OpenPose COCO order)

DEFINITIONS = {
    IDS_LIST: "std_msgs/Header header\nstring[] ids\n",
    ROI: "std_msgs/Header header\nfloat32 xmin\nfloat32 ymin\nfloat32 xmax\nfloat32 ymax\n"
         "float32 c\n",
    POINT: "float32 x\nfloat32 y\nfloat32 c\n",
    SKELETON: "std_msgs/Header header\nhri_msgs/NormalizedPointOfInterest2D[18] skeleton\n",
    POSTURE: "std_msgs/Header header\nuint8 STANDING=1\nuint8 SITTING=2\nuint8 CROUCHING=3\n"
             "uint8 LAYING=4\nuint8 OTHER=0\nuint8 posture\n",
}

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def register_hri_types(typestore: Any) -> None:
    """Add the hri_msgs types above to a rosbags typestore (kept if already there)."""
    from rosbags.typesys import get_types_from_msg

    for name in (POINT, IDS_LIST, ROI, SKELETON, POSTURE):
        if name not in typestore.types:
            typestore.register(get_types_from_msg(DEFINITIONS[name], name))


def hri_id(track: int) -> str:
    """Our REP-155 id of track `track`: `b<track>`."""
    return f"b{max(int(track), 0)}"


def body_topic(body: str, name: str) -> str:
    """`/humans/bodies/<id>/<name>`."""
    return f"/humans/bodies/{body}/{name}"


class HriIds:
    """Track ids <-> REP-155 id strings, stable for a track's lifetime. Our own tracks are
    `b<n>`; ids from another ROS4HRI detector keep their string and get a track number of
    their own (from 1_000_000 up, never colliding with ours)."""

    FOREIGN_BASE = 1_000_000

    def __init__(self) -> None:
        self._to_track: dict[str, int] = {}
        self._to_name: dict[int, str] = {}

    def name(self, track: int) -> str:
        return self._to_name.get(int(track)) or hri_id(track)

    def track(self, name: str) -> int:
        """The track number of a foreign id string (assigned on first sight)."""
        if not _ID.match(name):
            raise ConversionError(f"REP-155 ids start with a letter and hold letters, digits "
                                  f"and '_': got {name!r}")
        if name not in self._to_track:
            n = self.FOREIGN_BASE + len(self._to_track)
            self._to_track[name] = n
            self._to_name[n] = name
        return self._to_track[name]

    def forget(self, track: int) -> None:
        name = self._to_name.pop(int(track), None)
        if name is not None:
            self._to_track.pop(name, None)


def ids_to_msg(factory: MessageFactory, ids: Iterable[str], stamp_ns: int, frame_id: str
               ) -> Any:
    return factory.new(IDS_LIST, header=make_header(factory, stamp_ns, frame_id),
                       ids=list(ids))


def roi_to_msg(factory: MessageFactory, person: PersonEstimate, width: int, height: int,
               stamp_ns: int, frame_id: str) -> Any:
    """The person's crop box, normalised to the image and clipped to [0, 1]."""
    x0, y0, x1, y1 = _roi(person, width, height)
    return factory.new(ROI, header=make_header(factory, stamp_ns, frame_id),
                       xmin=x0 / width, ymin=y0 / height, xmax=x1 / width, ymax=y1 / height,
                       c=float(np.clip(person.confidence, 0.0, 1.0)))


def _roi(person: PersonEstimate, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, y0, x1, y1) of the crop box clipped to the image."""
    b = np.asarray(person.bbox_xyxy, dtype=np.float64)
    x0, x1 = (int(np.clip(round(v), 0, width)) for v in (b[0], b[2]))
    y0, y1 = (int(np.clip(round(v), 0, height)) for v in (b[1], b[3]))
    return x0, y0, x1, y1


def cropped_image(image: np.ndarray, person: PersonEstimate) -> np.ndarray:
    """(h, w, 3) the part of the image under the person's crop box (at least 1x1)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = _roi(person, width, height)
    x1, y1 = max(x1, min(x0 + 1, width)), max(y1, min(y0 + 1, height))
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    return np.ascontiguousarray(image[y0:y1, x0:x1])


_SKELETON = get_joint_set(SKELETON_FORMAT)
_SKELETON_MATRIX = _SKELETON.matrix()  # (18, 46)


def skeleton_points(person: PersonEstimate, camera: CameraModel) -> np.ndarray:
    """(18, 3) x, y normalised to the image and confidence c, in Skeleton2D order: our 3D
    points projected through K. Confidence: the input keypoint's where the input has that
    joint, else the person's; 0 for points behind the camera or off the image."""
    pts = _SKELETON_MATRIX @ np.asarray(person.points, dtype=np.float64)  # (18, 3)
    z = pts[:, 2]
    safe = np.where(z > 1e-6, z, 1.0)
    uv = (camera.K[:2, :2] @ (pts[:, :2] / safe[:, None]).T).T + camera.K[:2, 2]
    out = np.zeros((18, 3), dtype=np.float64)
    out[:, 0] = uv[:, 0] / camera.width
    out[:, 1] = uv[:, 1] / camera.height
    conf = np.full(18, float(np.clip(person.confidence, 0.0, 1.0)))
    kp = person.keypoints
    if kp is not None:
        names = get_joint_set(kp.format).joint_names
        for i, name in enumerate(_SKELETON.joint_names):
            if name in names:
                conf[i] = float(kp.confidence[names.index(name)])
            elif name == "neck" and {"left_shoulder", "right_shoulder"} <= set(names):
                conf[i] = float(min(kp.confidence[names.index("left_shoulder")],
                                    kp.confidence[names.index("right_shoulder")]))
    inside = (z > 1e-6) & np.all((out[:, :2] >= 0.0) & (out[:, :2] <= 1.0), axis=1)
    out[:, 2] = np.where(inside, conf, 0.0)
    out[:, :2] = np.clip(np.nan_to_num(out[:, :2], nan=0.0), 0.0, 1.0)
    return out


def skeleton_to_msg(factory: MessageFactory, points: np.ndarray, stamp_ns: int,
                    frame_id: str) -> Any:
    """(18, 3) normalised x, y, c -> hri_msgs/Skeleton2D."""
    pts = np.asarray(points, dtype=np.float64).reshape(18, 3)
    return factory.new(SKELETON, header=make_header(factory, stamp_ns, frame_id), skeleton=[
        factory.new(POINT, x=float(x), y=float(y), c=float(c)) for x, y, c in pts])


def msg_to_skeleton(msg: Any, width: int, height: int) -> Keypoints:
    """hri_msgs/Skeleton2D (normalised) -> Keypoints in pixels of a width x height image."""
    points = list(msg.skeleton)
    if len(points) != 18:
        raise ConversionError(f"Skeleton2D has {len(points)} points, expected 18")
    xy = np.array([[p.x * width, p.y * height] for p in points], dtype=np.float32)
    conf = np.array([p.c for p in points], dtype=np.float32)
    return Keypoints(SKELETON_FORMAT, xy, conf)


def posture_to_msg(factory: MessageFactory, code: int, stamp_ns: int, frame_id: str) -> Any:
    if int(code) not in (0, 1, 2, 3, 4):
        raise ConversionError(f"BodyPosture is 0..4, got {code}")
    return factory.new(POSTURE, header=make_header(factory, stamp_ns, frame_id),
                       posture=int(code))


def tracked_names(ids: HriIds, tracks: Sequence[int]) -> list[str]:
    return [ids.name(t) for t in sorted(tracks)]
