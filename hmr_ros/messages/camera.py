"""sensor_msgs/CameraInfo <-> `CameraModel`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.frame import CameraModel
from .factory import ConversionError, MessageFactory, make_header


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


