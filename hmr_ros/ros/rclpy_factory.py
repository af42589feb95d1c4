"""`RclpyFactory`: the `MessageFactory` (messages/factory.py) over rclpy's generated message
classes.

This module does not import rclpy: it imports the generated message modules
(`sensor_msgs.msg`, `hmr_ros.msg`, ...) by name when a message is first built, so it is only
usable where ROS 2 is sourced, but importable (and testable with stand-in classes) anywhere.

rosidl_generator_py's classes check every field in their setters (with `python -O` the checks
are skipped, the conversions are not). What they accept, per field type string from
`get_fields_and_field_types()`:

- `float`/`double`: a Python `float` only (numpy.float32 and int are rejected);
- integer types: a Python `int` (numpy integers are rejected);
- `boolean`: `bool`; `octet` (msg `byte`): `bytes` of length 1; `string`: `str`;
- fixed arrays `T[N]` of numbers: a numpy array of dtype T and size N (the constructor runs
  `numpy.array(value, dtype)` and asserts the shape is `(N,)`, so the array must be flat);
- sequences `sequence<T>` of numbers: `array.array` with T's type code (the constructor wraps
  any iterable with `array.array(code, value)`, which walks numpy arrays element by element:
  ~0.1 s for a 1 MB image, hence `frombytes` here);
- sequences of messages: a list of instances of the exact class.

`new` converts each given value to that form, so the conversions can pass numpy arrays and
numpy scalars as they do for rosbags.
"""

from __future__ import annotations

import array
import importlib
import re
from typing import Any

import numpy as np

from ..messages.factory import ConversionError

# rosidl basic type -> (numpy dtype, array.array type code)
_NUMERIC = {
    "float": (np.float32, "f"), "double": (np.float64, "d"),
    "int8": (np.int8, "b"), "uint8": (np.uint8, "B"), "char": (np.uint8, "B"),
    "int16": (np.int16, "h"), "uint16": (np.uint16, "H"),
    "int32": (np.int32, "i"), "uint32": (np.uint32, "I"),
    "int64": (np.int64, "q"), "uint64": (np.uint64, "Q"),
}
_FLOATS = ("float", "double")
_SEQUENCE = re.compile(r"^sequence<\s*([^,>]+?)\s*(?:,\s*(\d+)\s*)?>$")
_ARRAY = re.compile(r"^(.+?)\[(\d+)\]$")


def adapt_value(type_str: str, value: Any, where: str = "") -> Any:
    """`value` in the form a generated class accepts for a field of rosidl type `type_str`
    (e.g. 'double', 'float[10]', 'sequence<uint8>', 'std_msgs/Header')."""
    t = type_str.strip()
    m = _SEQUENCE.match(t)
    if m:
        return _adapt_sequence(m.group(1), value, None if m.group(2) is None else
                               int(m.group(2)), where, fixed=False)
    m = _ARRAY.match(t)
    if m:
        return _adapt_sequence(m.group(1), value, int(m.group(2)), where, fixed=True)
    if t in _FLOATS:
        return float(value)
    if t in _NUMERIC:
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise ConversionError(f"{where}: {type_str} field got non-integer {value!r}")
        return int(value)
    if t == "boolean":
        return bool(value)
    if t == "octet":
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return bytes([int(value) & 0xFF])
    if t.startswith("string") or t.startswith("wstring"):
        return str(value)
    return value  # nested message (or anything else): passed as is


def _adapt_sequence(elem: str, value: Any, size: int | None, where: str, fixed: bool) -> Any:
    elem = elem.strip()
    if elem in _NUMERIC:
        dtype, code = _NUMERIC[elem]
        if isinstance(value, array.array) and value.typecode == code and not fixed:
            values = value
        else:
            arr = np.ascontiguousarray(np.asarray(value, dtype=dtype)).reshape(-1)
            if fixed:
                if size is not None and arr.size != size:
                    raise ConversionError(f"{where}: {elem}[{size}] got {arr.size} values")
                return arr
            values = array.array(code)
            values.frombytes(arr.tobytes())
        if size is not None and not fixed and len(values) > size:
            raise ConversionError(f"{where}: at most {size} values, got {len(values)}")
        return values
    items = list(value)
    if elem == "octet":
        items = [adapt_value("octet", v, where) for v in items]
    elif elem in _FLOATS or elem == "boolean" or elem.startswith("string"):
        items = [adapt_value(elem, v, where) for v in items]
    if fixed and size is not None and len(items) != size:
        raise ConversionError(f"{where}: {elem}[{size}] got {len(items)} values")
    return items


class RclpyFactory:
    """Messages as rclpy's generated classes (in the node). Classes are looked up once per
    type name (`pkg/msg/Name` -> `pkg.msg.Name`)."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._fields: dict[str, dict[str, str]] = {}
        self._textured: bool | None = None

    @property
    def marker_bytes_textured(self) -> bool:
        """Markers go out as serialized bytes (`marker_cdr`: ~36 ms of Point objects per
        body saved); this Marker's layout has the texture fields (Jazzy, later Humble)."""
        if self._textured is None:
            fields = self.message_class("visualization_msgs/msg/Marker"
                                        ).get_fields_and_field_types()
            self._textured = "texture_resource" in fields
        return self._textured

    def message_class(self, typename: str) -> type:
        cls = self._classes.get(typename)
        if cls is None:
            parts = typename.split("/")
            if len(parts) != 3:
                raise ConversionError(f"expected a type name like 'pkg/msg/Name', got "
                                      f"{typename!r}")
            pkg, kind, name = parts
            try:
                cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
            except (ImportError, AttributeError) as err:
                raise ConversionError(f"cannot import message class {typename}: {err} (is the "
                                      "ROS 2 workspace sourced?)") from err
            self._classes[typename] = cls
            self._fields[typename] = dict(cls.get_fields_and_field_types())
        return cls

    def new(self, typename: str, **fields: Any) -> Any:
        cls = self.message_class(typename)
        types = self._fields[typename]
        unknown = sorted(set(fields) - set(types))
        if unknown:
            raise ConversionError(f"{typename} has no field(s) {unknown}; fields: "
                                  f"{sorted(types)}")
        try:
            return cls(**{k: adapt_value(types[k], v, f"{typename}.{k}")
                          for k, v in fields.items()})
        except (AssertionError, TypeError, ValueError) as err:
            if isinstance(err, ConversionError):
                raise
            raise ConversionError(f"{typename}: {err}") from err

    def array(self, values: np.ndarray, dtype: Any) -> Any:
        return np.ascontiguousarray(values, dtype=dtype).reshape(-1)

    def points(self, xyz: np.ndarray) -> list[Any]:
        """geometry_msgs/Point for each row of (N, 3): the fast path for marker meshes
        (Python floats straight into the constructor, no per-field adaptation)."""
        cls = self.message_class("geometry_msgs/msg/Point")
        return [cls(x=a, y=b, z=c) for a, b, c in np.asarray(xyz, np.float64).tolist()]
