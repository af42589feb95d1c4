"""Conversions between ROS 2 messages and the core's records, written against message FIELDS.

Nothing here imports rclpy: messages are built through a `MessageFactory`, which is a
`rosbags` typestore here (bags, tests) and rclpy's generated classes in the node
(`hmr_ros/ros/node.py`). Both accept every field as a keyword; they differ only in how array
fields want their values, which the factory's `array` handles.

Frames: images and 3D outputs are in the camera optical frame of the image header.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ..body.joints import get_joint_set
from ..data.frame import BodyParams, CameraModel, Detection, Keypoints

# Encodings we read: name -> (channels, dtype, how to get RGB)
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
        """A message of `typename` (e.g. `sensor_msgs/msg/Image`) with all fields given."""

    def array(self, values: np.ndarray, dtype: Any) -> Any:
        """A value for an array/sequence field of element type `dtype`."""


class RosbagsFactory:
    """Messages as rosbags dataclasses (for bags and tests)."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def new(self, typename: str, **fields: Any) -> Any:
        return self.typestore.types[typename](**fields)

    def array(self, values: np.ndarray, dtype: Any) -> Any:
        return np.ascontiguousarray(values, dtype=dtype).reshape(-1)


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
    """(H, W, 3) RGB uint8 -> sensor_msgs/Image in `rgb8` or `bgr8`."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConversionError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if encoding == "bgr8":
        image = image[:, :, ::-1]
    elif encoding != "rgb8":
        raise ConversionError(f"can only write rgb8 or bgr8, not {encoding!r}")
    h, w = image.shape[:2]
    return factory.new(
        "sensor_msgs/msg/Image", header=make_header(factory, stamp_ns, frame_id), height=h,
        width=w, encoding=encoding, is_bigendian=0, step=w * 3,
        data=factory.array(np.ascontiguousarray(image), np.uint8))


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
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data,
                         dtype=np.uint8)
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

    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data,
                        dtype=np.uint8)
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
