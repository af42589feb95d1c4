"""The body markers as serialized CDR bytes, built from numpy (no ROS, no message objects).

A TRIANGLE_LIST of one SMPL body is 3 points per face: 9,096 `geometry_msgs/Point` objects for
our 1,564-vertex body (20,670 for real SMPL) per body per marker. Built as rclpy messages that
cost ~36 ms of the inference thread per marker on 2 cores (py-spy, README "The node at camera
rate"); here the points are one `ndarray.tobytes()`. rclpy publishes such bytes as a
serialized message (`Publisher.publish(bytes)`, Humble and newer).

The layout is XCDR1 little endian, as rmw_fastrtps and rosbag2 write it: a 4-byte
encapsulation header, then fields in order, each primitive aligned to its size (8 at most)
relative to the end of that header. `visualization_msgs/Marker` gained `texture_resource`,
`texture`, `uv_coordinates` and `mesh_file` in newer releases (Jazzy; backported to later
Humble syncs); `textured=False` writes the older layout. `test/test_marker_cdr.py` compares
every byte with rosbags' serializer for both layouts, and the ROS suite with rclpy's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.frame import PersonEstimate
from .cdr import CdrWriter
from .markers import MARKER_ADD, MARKER_DELETEALL, MARKER_TRIANGLE_LIST, body_color, mesh_vertices


def _marker(w: CdrWriter, stamp_ns: int, frame_id: str, ns: str, action: int,
            marker_type: int, rgba: Sequence[float], points: np.ndarray,
            textured: bool, scale: float) -> None:
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    w.pack("iI", sec, nsec)  # header.stamp
    w.string(frame_id)
    w.string(ns)
    w.pack("3i", 0, marker_type, action)  # id, type, action
    w.pack("7d", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # pose: identity
    w.pack("3d", scale, scale, scale)
    w.pack("4f", *rgba)  # color
    w.pack("iI", 0, 0)  # lifetime
    w.pack("?", False)  # frame_locked
    w.sequence(points, 8)  # geometry_msgs/Point[]: (N, 3) float64
    w.pack("I", 0)  # colors: empty
    if textured:
        w.string("")  # texture_resource
        w.pack("iI", 0, 0)  # texture (CompressedImage): header.stamp
        w.string("")  # texture.header.frame_id
        w.string("")  # texture.format
        w.pack("I", 0)  # texture.data
        w.pack("I", 0)  # uv_coordinates
    w.string("")  # text
    w.string("")  # mesh_resource
    if textured:
        w.string("")  # mesh_file.filename
        w.pack("I", 0)  # mesh_file.data
    w.pack("?", False)  # mesh_use_embedded_materials


def bodies_to_markers_cdr(people: Sequence[PersonEstimate], faces: np.ndarray, stamp_ns: int,
                          frame_id: str, alpha: float = 0.8, textured: bool = True) -> bytes:
    """The serialized `visualization_msgs/MarkerArray` that `convert.bodies_to_markers`
    builds as objects: a DELETEALL marker, then one TRIANGLE_LIST per body (faces (F, 3)
    index each body's vertices (V, 3))."""
    faces = np.asarray(faces, dtype=np.int64)
    w = CdrWriter()
    w.pack("I", 1 + len(people))
    _marker(w, stamp_ns, frame_id, "", MARKER_DELETEALL, 0, (0.0, 0.0, 0.0, 0.0),
            np.zeros((0, 3)), textured, 0.0)
    for p in people:
        verts = mesh_vertices(p)
        if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
            from .factory import ConversionError

            raise ConversionError(f"body {p.id}: faces index vertices beyond the "
                                  f"{len(verts)} given")
        r, g, b = body_color(p.id)
        _marker(w, stamp_ns, frame_id, f"body_{max(int(p.id), 0)}", MARKER_ADD,
                MARKER_TRIANGLE_LIST, (float(r), float(g), float(b), float(alpha)),
                verts[faces.reshape(-1)], textured, 1.0)
    return w.getvalue()
