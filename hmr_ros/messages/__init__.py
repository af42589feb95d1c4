"""The message layer: ROS 2 messages <-> the core's records, without ROS.

One module per message family (`image`, `camera`, `keypoints`, `bodies`, `tf`, `markers`,
`status`), the `MessageFactory` they build through (`factory`), our .msg definitions in a
rosbags typestore (`definitions`), rosbag2 files (`bag`) and CDR bytes for the node's
hot paths (`cdr`, `marker_cdr`). Nothing here imports rclpy; `hmr_ros/ros/` (the node) is
the only layer above that does. The conversions are re-exported here.
"""

from __future__ import annotations

from .bodies import (
    bodies_to_msg,
    msg_to_bodies,
)
from .camera import (
    camera_to_msg,
    msg_to_camera,
)
from .factory import (
    ConversionError,
    MessageFactory,
    RosbagsFactory,
    byte_view,
    make_header,
    make_points,
    ns_to_stamp,
    stamp_to_ns,
    vector3,
)
from .image import (
    SUPPORTED_ENCODINGS,
    compressed_to_image,
    image_to_msg,
    msg_to_image,
)
from .keypoints import (
    detections_to_msg,
    msg_to_detections,
)
from .markers import (
    MARKER_ADD,
    MARKER_DELETEALL,
    MARKER_TRIANGLE_LIST,
    bodies_to_markers,
    body_color,
    body_marker,
    cloud_to_xyz,
    faces_to_msg,
    mesh_vertices,
    msg_to_faces,
    vertices_to_cloud,
)
from .status import (
    ADAPT_STATES,
    DIAG_ERROR,
    DIAG_OK,
    DIAG_STALE,
    DIAG_WARN,
    DiagnosticEntry,
    adaptation_status_to_msg,
    diagnostics_to_msg,
)
from .tf import (
    LEFT_HIP,
    RIGHT_HIP,
    SMPL_TO_BODY,
    FramePose,
    body_frame,
    body_frames,
    frame_poses,
    global_rotations,
    quaternions_xyzw,
    transforms_to_msgs,
)

__all__ = [
    "ConversionError",
    "MessageFactory",
    "RosbagsFactory",
    "make_points",
    "stamp_to_ns",
    "ns_to_stamp",
    "make_header",
    "byte_view",
    "vector3",
    "SUPPORTED_ENCODINGS",
    "image_to_msg",
    "msg_to_image",
    "compressed_to_image",
    "camera_to_msg",
    "msg_to_camera",
    "detections_to_msg",
    "msg_to_detections",
    "bodies_to_msg",
    "msg_to_bodies",
    "SMPL_TO_BODY",
    "LEFT_HIP",
    "RIGHT_HIP",
    "FramePose",
    "quaternions_xyzw",
    "global_rotations",
    "body_frame",
    "body_frames",
    "frame_poses",
    "transforms_to_msgs",
    "MARKER_TRIANGLE_LIST",
    "MARKER_ADD",
    "MARKER_DELETEALL",
    "body_color",
    "faces_to_msg",
    "msg_to_faces",
    "mesh_vertices",
    "body_marker",
    "bodies_to_markers",
    "vertices_to_cloud",
    "cloud_to_xyz",
    "ADAPT_STATES",
    "adaptation_status_to_msg",
    "DIAG_OK",
    "DIAG_WARN",
    "DIAG_ERROR",
    "DIAG_STALE",
    "DiagnosticEntry",
    "diagnostics_to_msg",
]
