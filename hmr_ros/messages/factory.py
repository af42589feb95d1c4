"""Building messages without ROS: the `MessageFactory` protocol (rosbags typestores here,
rclpy classes in the node), stamps and headers, and the conversion error.

Conversions are written against message FIELDS: both factories accept every field as a
keyword; they differ only in how array fields want their values, which `array` handles.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


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


def byte_view(data: Any) -> np.ndarray:
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


def vector3(factory: MessageFactory, v: np.ndarray) -> Any:
    return factory.new("geometry_msgs/msg/Vector3", x=float(v[0]), y=float(v[1]),
                       z=float(v[2]))

