"""Mesh visualisation: the mesh triangles (hmr_ros/MeshFaces), RViz triangle-list markers
and the vertex point cloud (sensor_msgs/PointCloud2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.frame import PersonEstimate
from .factory import ConversionError, MessageFactory, byte_view, make_header, make_points, vector3

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


def mesh_vertices(person: PersonEstimate) -> np.ndarray:
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


def body_marker(factory: MessageFactory, person: PersonEstimate, faces: np.ndarray, stamp_ns: int,
                frame_id: str, alpha: float = 0.8) -> Any:
    """One visualization_msgs/Marker TRIANGLE_LIST for a body: 3 points per face (camera
    frame, identity pose), namespace `body_<id>`, colour by id."""
    verts = mesh_vertices(person)
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
        action=MARKER_ADD, pose=identity, scale=vector3(factory, np.ones(3)),
        color=factory.new("std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b),
                          a=float(alpha)),
        lifetime=factory.new("builtin_interfaces/msg/Duration", sec=0, nanosec=0),
        frame_locked=False, points=make_points(factory, verts[faces.reshape(-1)]),
        colors=[], text="", mesh_resource="", mesh_use_embedded_materials=False)


def bodies_to_markers(factory: MessageFactory, people: Sequence[PersonEstimate], faces: np.ndarray,
                      stamp_ns: int, frame_id: str, alpha: float = 0.8) -> Any:
    """visualization_msgs/MarkerArray: a DELETEALL marker (clears bodies no longer seen),
    then one TRIANGLE_LIST per body."""
    clear = factory.new("visualization_msgs/msg/Marker",
                        header=make_header(factory, stamp_ns, frame_id), ns="", id=0,
                        action=MARKER_DELETEALL, pose=_identity_pose(factory))
    return factory.new("visualization_msgs/msg/MarkerArray", markers=[clear] + [
        body_marker(factory, p, faces, stamp_ns, frame_id, alpha) for p in people])


def vertices_to_cloud(factory: MessageFactory, people: Sequence[PersonEstimate], stamp_ns: int,
                      frame_id: str) -> Any:
    """All bodies' vertices as one sensor_msgs/PointCloud2 with float32 x, y, z (what
    sensor_msgs_py.point_cloud2.create_cloud_xyz32 makes), unorganised (height 1)."""
    parts = [mesh_vertices(p) for p in people]
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
    raw = byte_view(msg.data)
    if raw.size < n * step:
        raise ConversionError(f"cloud data has {raw.size} bytes, expected {n * step}")
    rows = raw[: n * step].reshape(n, step)[:, :12]
    return np.ascontiguousarray(rows).view(np.float32).reshape(n, 3)


