"""Images read straight from their CDR bytes (what the node subscribes to with raw=True) are
the images the message conversion gives, for every encoding, padded rows and both byte
orders of the encapsulation; truncated bytes are a ConversionError, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.messages.cdr import CdrReader, image_from_cdr
from hmr_ros.messages.definitions import hmr_typestore
from hmr_ros.messages.factory import ConversionError, RosbagsFactory
from hmr_ros.messages.image import image_to_msg, msg_to_image


@pytest.fixture(scope="module")
def ts():
    return hmr_typestore("jazzy")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8"])
@pytest.mark.parametrize("size", [(7, 5), (64, 48)])
def test_image_from_cdr_equals_the_message_conversion(ts, encoding, size):
    rng = np.random.default_rng(1)
    w, h = size
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if encoding == "mono8":
        img = img[:, :, 0]
    msg = image_to_msg(RosbagsFactory(ts), img, 1_700_000_000_987_654_321, "cam_left",
                       encoding)
    raw = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    got = image_from_cdr(raw)
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1_700_000_000, 987_654_321)
    assert got.header.frame_id == "cam_left" and got.encoding == encoding
    assert (got.width, got.height, got.step) == (w, h, msg.step)
    np.testing.assert_array_equal(msg_to_image(got), msg_to_image(msg))


def test_padded_rows_and_big_endian_encapsulation(ts):
    img = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(3, 5, 3)
    msg = image_to_msg(RosbagsFactory(ts), img, 5, "c", "rgb8")
    padded = np.zeros((3, 20), np.uint8)  # step 20 > 15 bytes of pixels per row
    padded[:, :15] = img.reshape(3, 15)
    msg = type(msg)(header=msg.header, height=3, width=5, encoding="rgb8", is_bigendian=0,
                    step=20, data=padded.reshape(-1))
    raw = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    np.testing.assert_array_equal(msg_to_image(image_from_cdr(raw)), img)
    big = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/Image", little_endian=False))
    assert big[1] == 0 and CdrReader(big).order == ">"
    np.testing.assert_array_equal(msg_to_image(image_from_cdr(big)), img)


def test_truncated_or_empty_bytes_are_conversion_errors(ts):
    img = np.zeros((4, 4, 3), np.uint8)
    raw = bytes(ts.serialize_cdr(image_to_msg(RosbagsFactory(ts), img, 1, "c", "rgb8"),
                                 "sensor_msgs/msg/Image"))
    for cut in (0, 3, 10, len(raw) - 1):
        with pytest.raises(ConversionError, match="bytes|truncated"):
            image_from_cdr(raw[:cut])
