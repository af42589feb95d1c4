"""Conversions between ROS 2 messages and the core's records, written against message FIELDS.

Nothing here imports rclpy: messages are built through a `MessageFactory`, which is a
`rosbags` typestore here (bags, tests) and rclpy's generated classes in the node
(`hmr_ros/ros/node.py`). Both accept every field as a keyword; they differ only in how array
fields want their values, which the factory's `array` handles.

Frames: images and 3D outputs are in the camera optical frame of the image header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..body.joints import get_joint_set
from ..data.frame import BodyParams, CameraModel, Detection, Keypoints

# Encodings we read and write: name -> (channels, dtype)
_ENCODINGS = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "8UC3": (3, np.uint8),  # OpenCV's name, treated as bgr8 as cv_bridge does
    "8UC1": (1, np.uint8),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


class ConversionError(ValueError):
    """A message that cannot be converted, with the reason."""


class MessageFactory(Protocol):
    def new(self, typename: str, **fields: Any) -> Any:
        """A message of `typename` (e.g. `sensor_msgs/msg/Image`) with all fields given.

        Fields left out get their ROS default (zero, empty, default sub-message); the
        conversions below give every field they mean to set, and leave out only those that
        differ between distros (e.g. the texture fields Jazzy added to Marker)."""

    def array(self, values: np.ndarray, dtype: Any) -> Any:
        """A value for an array/sequence field of element type `dtype` (flat)."""

    #: Where markers are published as serialized bytes (`marker_cdr`), whether this Marker
    #: has the texture fields; None: build message objects (`bodies_to_markers`).
    marker_bytes_textured: bool | None


class RosbagsFactory:
    """Messages as rosbags dataclasses (for bags and tests)."""

    marker_bytes_textured = None  # rosbags messages are objects

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def new(self, typename: str, **fields: Any) -> Any:
        try:
            cls = self.typestore.types[typename]
        except KeyError:
            raise ConversionError(f"the typestore has no message type {typename!r}") from None
        fielddefs = self.typestore.fielddefs[typename][1]
        names = [name for name, _ in fielddefs]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise ConversionError(f"{typename} has no field(s) {unknown}; fields: {names}")
        for name, desc in fielddefs:
            if name not in fields:
                fields[name] = self._default(desc)
        return cls(**fields)

    def array(self, values: np.ndarray, dtype: Any) -> Any:
        return np.ascontiguousarray(values, dtype=dtype).reshape(-1)

    def points(self, xyz: np.ndarray) -> list[Any]:
        """geometry_msgs/Point messages for the rows of an (N, 3) array."""
        cls = self.typestore.types["geometry_msgs/msg/Point"]
        return [cls(x=a, y=b, z=c) for a, b, c in np.asarray(xyz, np.float64).tolist()]

    def _default(self, desc: Any) -> Any:
        kind, spec = desc
        kind = int(kind)  # rosbags Nodetype: BASE 1, NAME 2, ARRAY 3, SEQUENCE 4
        if kind == 1:
            base = spec[0]
            if base in ("string", "wstring"):
                return ""
            if base == "bool":
                return False
            return 0.0 if base.startswith("float") else 0
        if kind == 2:
            return self.new(spec)
        sub, count = spec
        count = int(count) if kind == 3 else 0
        if int(sub[0]) == 1 and sub[1][0] in _NUMPY_BASE:
            return np.zeros(count, dtype=_NUMPY_BASE[sub[1][0]])
        return [self._default(sub) for _ in range(count)]


_NUMPY_BASE = {
    "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
    "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


def make_points(factory: MessageFactory, xyz: np.ndarray) -> list[Any]:
    """geometry_msgs/Point for each row of (N, 3), through the factory's fast path if any."""
    fast = getattr(factory, "points", None)
    if fast is not None:
        return fast(xyz)
    return [factory.new("geometry_msgs/msg/Point", x=a, y=b, z=c)
            for a, b, c in np.asarray(xyz, np.float64).tolist()]


# ------------------------------------------------------------------------ time and header


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(factory: MessageFactory, ns: int) -> Any:
    return factory.new("builtin_interfaces/msg/Time", sec=int(ns // 1_000_000_000),
                       nanosec=int(ns % 1_000_000_000))


def make_header(factory: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    return factory.new("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp_ns),
                       frame_id=frame_id)


# ------------------------------------------------------------------------ images


def image_to_msg(factory: MessageFactory, image: np.ndarray, stamp_ns: int, frame_id: str,
                 encoding: str = "rgb8") -> Any:
    """(H, W, 3) RGB uint8 -> sensor_msgs/Image in any of SUPPORTED_ENCODINGS.

    Colour encodings take an (H, W, 3) RGB image (alpha is written as 255); `mono8`/`8UC1`
    take an (H, W) image or an (H, W, 3) one whose three channels are equal."""
    if image.dtype != np.uint8 or not (image.ndim == 3 and image.shape[2] == 3 or
                                       image.ndim == 2 and encoding in ("mono8", "8UC1")):
        raise ConversionError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if encoding not in _ENCODINGS:
        raise ConversionError(f"cannot write encoding {encoding!r}; supported: "
                              f"{', '.join(SUPPORTED_ENCODINGS)}")
    if encoding in ("bgr8", "8UC3"):
        image = image[:, :, ::-1]
    elif encoding in ("rgba8", "bgra8"):
        rgb = image if encoding == "rgba8" else image[:, :, ::-1]
        image = np.concatenate([rgb, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    elif encoding in ("mono8", "8UC1") and image.ndim == 3:
        if not (np.array_equal(image[..., 0], image[..., 1]) and
                np.array_equal(image[..., 0], image[..., 2])):
            raise ConversionError(f"{encoding} needs a gray image (equal R, G, B); convert it "
                                  "first")
        image = image[:, :, 0]
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    return factory.new(
        "sensor_msgs/msg/Image", header=make_header(factory, stamp_ns, frame_id), height=h,
        width=w, encoding=encoding, is_bigendian=0, step=w * channels,
        data=factory.array(np.ascontiguousarray(image), np.uint8))


def _byte_view(data: Any) -> np.ndarray:
    """uint8 view of a `uint8[]` field without copying where possible: numpy (rosbags),
    array.array('B') (rclpy), bytes; lists of ints are copied."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.frombuffer(data.tobytes(), np.uint8)
    try:
        view = memoryview(data)
    except TypeError:
        return np.frombuffer(bytes(data), dtype=np.uint8)
    return np.frombuffer(view.cast("B") if view.format != "B" or view.ndim != 1 else view,
                         dtype=np.uint8)


def msg_to_image(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) RGB uint8; ConversionError for anything unsupported."""
    enc = str(msg.encoding)
    if enc not in _ENCODINGS:
        raise ConversionError(f"unsupported image encoding {enc!r}; supported: "
                              f"{', '.join(SUPPORTED_ENCODINGS)}")
    channels, dtype = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f"empty image {w}x{h}")
    row = w * channels * np.dtype(dtype).itemsize
    if step < row:
        raise ConversionError(f"step {step} is shorter than a row of {w} {enc} pixels ({row})")
    data = _byte_view(msg.data)
    if data.size < step * h:
        raise ConversionError(f"image data has {data.size} bytes, expected step*height = "
                              f"{step * h}")
    rows = data[: step * h].reshape(h, step)[:, :row]
    pix = rows.reshape(h, w, channels)
    if channels == 1:
        return np.repeat(pix, 3, axis=2)
    if enc in ("bgr8", "8UC3", "bgra8"):
        return np.ascontiguousarray(pix[:, :, 2::-1])
    return np.ascontiguousarray(pix[:, :, :3])


def compressed_to_image(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) RGB uint8."""
    import cv2

    buf = _byte_view(msg.data)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ConversionError(f"could not decode compressed image (format {msg.format!r}, "
                              f"{buf.size} bytes)")
    return np.ascontiguousarray(img[:, :, ::-1])


# ------------------------------------------------------------------------ camera info


def camera_to_msg(factory: MessageFactory, camera: CameraModel, stamp_ns: int) -> Any:
    K = camera.K
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = factory.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0,
                      width=0, do_rectify=False)
    return factory.new(
        "sensor_msgs/msg/CameraInfo", header=make_header(factory, stamp_ns, camera.frame_id),
        height=camera.height, width=camera.width, distortion_model="plumb_bob",
        d=factory.array(np.zeros(5), np.float64), k=factory.array(K, np.float64),
        r=factory.array(np.eye(3), np.float64), p=factory.array(P, np.float64),
        binning_x=0, binning_y=0, roi=roi)


def msg_to_camera(msg: Any) -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel; ConversionError for an uncalibrated camera."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ConversionError("CameraInfo has no valid K (uncalibrated camera?)")
    d = np.asarray(msg.d, dtype=np.float64)
    if d.size and np.any(np.abs(d) > 1e-6):
        # We treat images as rectified; distortion is ignored rather than silently applied.
        pass
    try:
        return CameraModel(k, int(msg.width), int(msg.height), str(msg.header.frame_id) or
                           "camera_optical_frame")
    except ValueError as err:
        raise ConversionError(f"CameraInfo: {err}") from err


# ------------------------------------------------------------------------ keypoints


def detections_to_msg(factory: MessageFactory, detections: Sequence[Detection], stamp_ns: int,
                      frame_id: str) -> Any:
    people = []
    for det in detections:
        if det.keypoints is None:
            continue
        kp = det.keypoints
        people.append(factory.new(
            "hmr_ros/msg/Keypoints2D", id=max(int(det.id), 0), format=kp.format,
            x=factory.array(kp.xy[:, 0], np.float32), y=factory.array(kp.xy[:, 1], np.float32),
            confidence=factory.array(kp.confidence, np.float32)))
    return factory.new("hmr_ros/msg/Keypoints2DArray",
                       header=make_header(factory, stamp_ns, frame_id), people=people)


def msg_to_detections(msg: Any) -> tuple[Detection, ...]:
    """hmr_ros/Keypoints2DArray -> detections (ConversionError names the bad person)."""
    out = []
    for i, p in enumerate(msg.people):
        x, y = np.asarray(p.x, np.float32), np.asarray(p.y, np.float32)
        c = np.asarray(p.confidence, np.float32)
        try:
            js = get_joint_set(str(p.format))
        except KeyError as err:
            raise ConversionError(f"person {i}: {err.args[0]}") from None
        if not (len(x) == len(y) == len(c) == len(js)):
            raise ConversionError(f"person {i}: format {js.name} has {len(js)} joints, got "
                                  f"x {len(x)}, y {len(y)}, confidence {len(c)}")
        out.append(Detection(int(p.id), Keypoints(js.name, np.stack([x, y], 1), c)))
    return tuple(out)


# ------------------------------------------------------------------------ bodies


def bodies_to_msg(factory: MessageFactory, people: Sequence[Any], stamp_ns: int, frame_id: str,
                  model_version: int, model_name: str, with_vertices: bool = False) -> Any:
    """Estimates (objects with id, params, joints, bbox_xyxy, confidence and optionally
    vertices) -> hmr_ros/SMPLBodyArray."""
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


# ------------------------------------------------------------------------ TF frames


def _vector3(factory: MessageFactory, v: np.ndarray) -> Any:
    return factory.new("geometry_msgs/msg/Vector3", x=float(v[0]), y=float(v[1]),
                       z=float(v[2]))


def _quaternion(factory: MessageFactory, q_xyzw: np.ndarray) -> Any:
    return factory.new("geometry_msgs/msg/Quaternion", x=float(q_xyzw[0]), y=float(q_xyzw[1]),
                       z=float(q_xyzw[2]), w=float(q_xyzw[3]))


def frame_poses(people: Sequence[Any], camera_frame: str, prefix: str = "",
                with_joints: bool = True) -> list[Any]:
    """REP-155 `body_<id>` frames (mid-hip, x forward, z up) under `camera_frame` and, with
    `with_joints`, the 24 joint frames `<joint>_<id>` under each body (`frames.FramePose`)."""
    from .frames import body_frames

    out = []
    for p in people:
        try:
            out += body_frames(p.params.full_pose(), p.joints, max(int(p.id), 0), camera_frame,
                               prefix, with_joints)
        except ValueError as err:
            raise ConversionError(f"body {p.id}: {err}") from None
    return out


def transforms_to_msgs(factory: MessageFactory, people: Sequence[Any], stamp_ns: int,
                       camera_frame: str, prefix: str = "", with_joints: bool = True
                       ) -> list[Any]:
    """geometry_msgs/TransformStamped for every frame of `frame_poses`, all stamped `stamp_ns`
    (one list, meant for ONE sendTransform call)."""
    from .frames import quaternions_xyzw

    poses = frame_poses(people, camera_frame, prefix, with_joints)
    if not poses:
        return []
    quats = quaternions_xyzw(np.stack([f.rotation for f in poses]))
    out = []
    for f, q in zip(poses, quats):
        out.append(factory.new(
            "geometry_msgs/msg/TransformStamped",
            header=make_header(factory, stamp_ns, f.parent), child_frame_id=f.child,
            transform=factory.new("geometry_msgs/msg/Transform",
                                  translation=_vector3(factory, f.translation),
                                  rotation=_quaternion(factory, q))))
    return out


# ------------------------------------------------------------------------ mesh and markers

MARKER_TRIANGLE_LIST = 11
MARKER_ADD = 0
MARKER_DELETEALL = 3

# Distinct, RViz-friendly colours, picked by body id.
_PALETTE = np.array([
    [0.90, 0.60, 0.20], [0.25, 0.60, 0.90], [0.40, 0.80, 0.35], [0.85, 0.35, 0.55],
    [0.65, 0.50, 0.90], [0.95, 0.85, 0.30], [0.30, 0.80, 0.80], [0.80, 0.45, 0.30],
])


def body_color(body_id: int) -> np.ndarray:
    return _PALETTE[max(int(body_id), 0) % len(_PALETTE)]


def faces_to_msg(factory: MessageFactory, faces: np.ndarray) -> Any:
    """Mesh triangles (F, 3) vertex indices -> std_msgs/UInt32MultiArray with a 2-D layout
    (dim[0] "faces" F, dim[1] "vertices" 3; row-major, data_offset 0)."""
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0:
        raise ConversionError(f"faces must be a non-empty (F, 3) array, got {faces.shape}")
    if faces.min() < 0 or faces.max() >= 2**32:
        raise ConversionError("face indices must fit uint32")
    n = faces.shape[0]
    dims = [factory.new("std_msgs/msg/MultiArrayDimension", label="faces", size=n,
                        stride=3 * n),
            factory.new("std_msgs/msg/MultiArrayDimension", label="vertices", size=3,
                        stride=3)]
    layout = factory.new("std_msgs/msg/MultiArrayLayout", dim=dims, data_offset=0)
    return factory.new("std_msgs/msg/UInt32MultiArray", layout=layout,
                       data=factory.array(faces, np.uint32))


def msg_to_faces(msg: Any) -> np.ndarray:
    """std_msgs/UInt32MultiArray from `faces_to_msg` -> (F, 3) int64."""
    data = np.asarray(msg.data, dtype=np.int64)
    if data.size % 3:
        raise ConversionError(f"face data has {data.size} values, not a multiple of 3")
    return data.reshape(-1, 3)


def _vertices(person: Any) -> np.ndarray:
    if getattr(person, "vertices", None) is None:
        raise ConversionError(f"body {person.id} has no vertices (inference.vertices is "
                              "false)")
    v = np.asarray(person.vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ConversionError(f"body {person.id}: vertices must be (V, 3), got {v.shape}")
    return v


def _identity_pose(factory: MessageFactory) -> Any:
    # Explicit: rclpy's default Quaternion is (0, 0, 0, 1), rosbags' is all zeros.
    return factory.new(
        "geometry_msgs/msg/Pose",
        position=factory.new("geometry_msgs/msg/Point", x=0.0, y=0.0, z=0.0),
        orientation=factory.new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))


def body_marker(factory: MessageFactory, person: Any, faces: np.ndarray, stamp_ns: int,
                frame_id: str, alpha: float = 0.8) -> Any:
    """One visualization_msgs/Marker TRIANGLE_LIST for a body: 3 points per face (camera
    frame, identity pose), namespace `body_<id>`, colour by id."""
    verts = _vertices(person)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ConversionError(f"faces must be (F, 3), got {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise ConversionError(f"body {person.id}: faces index vertices beyond the "
                              f"{len(verts)} given")
    r, g, b = body_color(person.id)
    identity = _identity_pose(factory)
    return factory.new(
        "visualization_msgs/msg/Marker", header=make_header(factory, stamp_ns, frame_id),
        ns=f"body_{max(int(person.id), 0)}", id=0, type=MARKER_TRIANGLE_LIST,
        action=MARKER_ADD, pose=identity, scale=_vector3(factory, np.ones(3)),
        color=factory.new("std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b),
                          a=float(alpha)),
        lifetime=factory.new("builtin_interfaces/msg/Duration", sec=0, nanosec=0),
        frame_locked=False, points=make_points(factory, verts[faces.reshape(-1)]),
        colors=[], text="", mesh_resource="", mesh_use_embedded_materials=False)


def bodies_to_markers(factory: MessageFactory, people: Sequence[Any], faces: np.ndarray,
                      stamp_ns: int, frame_id: str, alpha: float = 0.8) -> Any:
    """visualization_msgs/MarkerArray: a DELETEALL marker (clears bodies no longer seen),
    then one TRIANGLE_LIST per body."""
    clear = factory.new("visualization_msgs/msg/Marker",
                        header=make_header(factory, stamp_ns, frame_id), ns="", id=0,
                        action=MARKER_DELETEALL, pose=_identity_pose(factory))
    return factory.new("visualization_msgs/msg/MarkerArray", markers=[clear] + [
        body_marker(factory, p, faces, stamp_ns, frame_id, alpha) for p in people])


def vertices_to_cloud(factory: MessageFactory, people: Sequence[Any], stamp_ns: int,
                      frame_id: str) -> Any:
    """All bodies' vertices as one sensor_msgs/PointCloud2 with float32 x, y, z (what
    sensor_msgs_py.point_cloud2.create_cloud_xyz32 makes), unorganised (height 1)."""
    parts = [_vertices(p) for p in people]
    xyz = (np.concatenate(parts) if parts else np.zeros((0, 3))).astype(np.float32)
    fields = [factory.new("sensor_msgs/msg/PointField", name=n, offset=4 * i, datatype=7,
                          count=1) for i, n in enumerate("xyz")]  # 7 = FLOAT32
    return factory.new(
        "sensor_msgs/msg/PointCloud2", header=make_header(factory, stamp_ns, frame_id),
        height=1, width=len(xyz), fields=fields, is_bigendian=False, point_step=12,
        row_step=12 * len(xyz), data=factory.array(np.frombuffer(xyz.tobytes(), np.uint8),
                                                   np.uint8),
        is_dense=True)


def cloud_to_xyz(msg: Any) -> np.ndarray:
    """sensor_msgs/PointCloud2 with float32 x, y, z at offsets 0, 4, 8 -> (N, 3)."""
    names = [(f.name, int(f.offset), int(f.datatype)) for f in msg.fields]
    if names[:3] != [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)]:
        raise ConversionError(f"expected float32 x, y, z at offsets 0, 4, 8, got {names}")
    n, step = int(msg.width) * int(msg.height), int(msg.point_step)
    raw = _byte_view(msg.data)
    if raw.size < n * step:
        raise ConversionError(f"cloud data has {raw.size} bytes, expected {n * step}")
    rows = raw[: n * step].reshape(n, step)[:, :12]
    return np.ascontiguousarray(rows).view(np.float32).reshape(n, 3)


# ------------------------------------------------------------------------ adaptation status

#: AdaptationWorker state names -> AdaptationStatus.STATE_* (a stopped worker reads as paused).
ADAPT_STATES = {"idle": 0, "running": 1, "paused": 2, "error": 3, "stopped": 2}


def _clip_uint(value: Any, bits: int) -> int:
    return int(min(max(int(value), 0), 2**bits - 1))


def adaptation_status_to_msg(factory: MessageFactory, status: Any, stamp_ns: int) -> Any:
    """An `AdaptStatus` (hmr_ros.adapt.worker) -> hmr_ros/AdaptationStatus."""
    if status.state not in ADAPT_STATES:
        raise ConversionError(f"unknown adaptation state {status.state!r}; known: "
                              f"{sorted(ADAPT_STATES)}")
    return factory.new(
        "hmr_ros/msg/AdaptationStatus", header=make_header(factory, stamp_ns, ""),
        state=ADAPT_STATES[status.state], enabled=bool(status.enabled),
        method=str(status.method), model_version=_clip_uint(status.version, 32),
        steps=_clip_uint(status.steps, 64), rollbacks=_clip_uint(status.rollbacks, 32),
        steps_per_second=float(status.steps_per_second), last_loss=float(status.last_loss),
        buffered_frames=_clip_uint(status.buffered, 32), message=str(status.message))


# ------------------------------------------------------------------------ diagnostics

DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


@dataclass(frozen=True)
class DiagnosticEntry:
    """One diagnostic_msgs/DiagnosticStatus: level (DIAG_*), name, message, values."""

    name: str
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)
    hardware_id: str = ""


def diagnostics_to_msg(factory: MessageFactory, entries: Sequence[DiagnosticEntry],
                       stamp_ns: int) -> Any:
    """diagnostic_msgs/DiagnosticArray (the level is a `byte`: an int here, a 1-byte `bytes`
    in rclpy, which RclpyFactory converts)."""
    status = []
    for e in entries:
        if e.level not in (DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE):
            raise ConversionError(f"diagnostic level must be 0..3, got {e.level}")
        values = [factory.new("diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v))
                  for k, v in e.values.items()]
        status.append(factory.new("diagnostic_msgs/msg/DiagnosticStatus", level=int(e.level),
                                  name=e.name, message=e.message, hardware_id=e.hardware_id,
                                  values=values))
    return factory.new("diagnostic_msgs/msg/DiagnosticArray",
                       header=make_header(factory, stamp_ns, ""), status=status)
