"""sensor_msgs/Image and CompressedImage <-> (H, W, 3) RGB uint8 arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from .factory import ConversionError, MessageFactory, byte_view, make_header

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
    data = byte_view(msg.data)
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

    buf = byte_view(msg.data)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ConversionError(f"could not decode compressed image (format {msg.format!r}, "
                              f"{buf.size} bytes)")
    return np.ascontiguousarray(img[:, :, ::-1])


