"""The body markers serialized from numpy are byte for byte what a CDR serializer makes of
the message objects (`convert.bodies_to_markers`), in both Marker layouts."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import get_types_from_msg

from hmr_ros.data.frame import BodyParams
from hmr_ros.messages.definitions import hmr_typestore
from hmr_ros.messages.factory import ConversionError, RosbagsFactory
from hmr_ros.messages.marker_cdr import bodies_to_markers_cdr
from hmr_ros.messages.markers import bodies_to_markers


class Person:
    def __init__(self, pid, verts):
        self.id = pid
        self.vertices = verts
        self.params = BodyParams(np.zeros(10, np.float32), np.zeros(3, np.float32),
                                 np.zeros((23, 3), np.float32), np.zeros(3, np.float32))


def _people(n_vertices=12, count=2, seed=0):
    rng = np.random.default_rng(seed)
    return [Person(i * 7 + 1, rng.normal(size=(n_vertices, 3)).astype(np.float32))
            for i in range(count)]


FACES = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 11], [7, 8, 9]])

# The Marker of releases before the texture and mesh-file fields (early Humble).
OLD_MARKER = """
std_msgs/Header header
string ns
int32 id
int32 type
int32 action
geometry_msgs/Pose pose
geometry_msgs/Vector3 scale
std_msgs/ColorRGBA color
builtin_interfaces/Duration lifetime
bool frame_locked
geometry_msgs/Point[] points
std_msgs/ColorRGBA[] colors
string text
string mesh_resource
bool mesh_use_embedded_materials
"""


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_marker_bytes_equal_the_serialized_message(distro, count):
    ts = hmr_typestore(distro)
    people = _people(count=count)
    stamp, frame = 1_700_000_123_456_789_012, "cam_optical"
    msg = bodies_to_markers(RosbagsFactory(ts), people, FACES, stamp, frame, 0.6)
    expected = bytes(ts.serialize_cdr(msg, "visualization_msgs/msg/MarkerArray"))
    got = bodies_to_markers_cdr(people, FACES, stamp, frame, 0.6, textured=True)
    assert got == expected
    back = ts.deserialize_cdr(got, "visualization_msgs/msg/MarkerArray")
    if count:
        pts = np.array([[p.x, p.y, p.z] for p in back.markers[1].points])
        np.testing.assert_array_equal(pts, people[0].vertices[FACES.reshape(-1)])


def test_marker_bytes_in_the_layout_without_textures():
    ts = hmr_typestore("humble")
    ts.register(get_types_from_msg(OLD_MARKER, "hmr_test/msg/OldMarker"))
    ts.register(get_types_from_msg("hmr_test/OldMarker[] markers", "hmr_test/msg/OldArray"))
    people = _people(count=2, seed=3)
    got = bodies_to_markers_cdr(people, FACES, 5_000_000_001, "c", 0.8, textured=False)
    back = ts.deserialize_cdr(got, "hmr_test/msg/OldArray")
    assert [m.ns for m in back.markers] == ["", "body_1", "body_8"]
    assert bytes(ts.serialize_cdr(back, "hmr_test/msg/OldArray")) == got
    np.testing.assert_array_equal(
        np.array([[p.x, p.y, p.z] for p in back.markers[2].points]),
        people[1].vertices[FACES.reshape(-1)])


def test_marker_bytes_refuse_faces_beyond_the_vertices():
    with pytest.raises(ConversionError, match="beyond"):
        bodies_to_markers_cdr(_people(n_vertices=5), FACES, 0, "c")
