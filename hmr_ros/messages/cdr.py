"""Plain CDR (XCDR1, as rmw_fastrtps and rosbag2 write it) for the two hot messages: the
images that come in and the body markers that go out (`marker_cdr.py`).

rclpy turns every received message into Python objects under the GIL; for a 640x480 rgb8
image that conversion in the executor's thread was the largest single holder of the GIL in the
node (py-spy, README "The node at camera rate"). Subscribed with `raw=True`, rclpy hands over
the serialized bytes instead, and `image_from_cdr` reads the few header fields with `struct`
and the pixels as a numpy view of those bytes (no copy). No ROS imports here.

Layout: a 4-byte encapsulation header (byte 1: 1 little endian, 0 big endian), then the
fields in order, each primitive aligned to its size (8 at most) relative to the end of that
header; strings are a uint32 length (with the NUL) and the bytes; sequences a uint32 count
and the elements.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .factory import ConversionError


class CdrWriter:
    """Little-endian CDR (XCDR1) with alignment relative to the payload start."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [b"\x00\x01\x00\x00"]  # CDR_LE, no options
        self.size = 0  # bytes after the encapsulation header

    def _align(self, n: int) -> None:
        pad = -self.size % n
        if pad:
            self.parts.append(b"\x00" * pad)
            self.size += pad

    def raw(self, data: bytes, align: int) -> None:
        self._align(align)
        self.parts.append(data)
        self.size += len(data)

    def pack(self, fmt: str, *values: Any) -> None:
        """Values of one primitive kind (`fmt` like "3d", "i", "2I")."""
        self.raw(struct.pack("<" + fmt, *values), struct.calcsize(fmt[-1]))

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self.pack("I", len(data))
        self.raw(data, 1)

    def sequence(self, array: np.ndarray, align: int) -> None:
        """A sequence of fixed-size elements: the count, then the packed rows."""
        self.pack("I", len(array))
        if len(array):
            self.raw(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"),
                                                         copy=False).tobytes(), align)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)



class CdrReader:
    def __init__(self, raw: bytes | memoryview) -> None:
        self.buf = memoryview(raw).cast("B")
        if len(self.buf) < 4:
            raise ConversionError(f"{len(self.buf)} bytes are no CDR message")
        self.order = "<" if self.buf[1] & 1 else ">"
        self.pos = 4

    def _align(self, n: int) -> None:
        self.pos += -(self.pos - 4) % n

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        self._align(struct.calcsize(fmt[-1]))
        if self.pos + size > len(self.buf):
            raise ConversionError(f"CDR message truncated at byte {self.pos} of "
                                  f"{len(self.buf)}")
        out = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def string(self) -> str:
        (n,) = self.unpack("I")
        return bytes(self.bytes(n)).rstrip(b"\x00").decode(errors="replace")

    def bytes(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ConversionError(f"CDR message truncated: {n} bytes wanted at byte "
                                  f"{self.pos} of {len(self.buf)}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


@dataclass(frozen=True)
class Stamp:
    sec: int
    nanosec: int


@dataclass(frozen=True)
class Header:
    stamp: Stamp
    frame_id: str


@dataclass(frozen=True)
class CdrImage:
    """A sensor_msgs/Image read from its CDR bytes, with the message's field names (so the
    conversions treat it as the message); `data` (N,) uint8 is a view of those bytes."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def image_from_cdr(raw: bytes | memoryview) -> CdrImage:
    """Serialized sensor_msgs/Image -> CdrImage; ConversionError when truncated."""
    r = CdrReader(raw)
    sec, nanosec = r.unpack("iI")
    frame_id = r.string()
    height, width = r.unpack("2I")
    encoding = r.string()
    (bigendian,) = r.unpack("B")
    (step,) = r.unpack("I")
    (n,) = r.unpack("I")
    data = np.frombuffer(r.bytes(n), dtype=np.uint8)
    return CdrImage(Header(Stamp(sec, nanosec), frame_id), height, width, encoding, bigendian,
                    step, data)
