"""Message conversions of hmr_ros/messages/ on rosbags' classes, and `RclpyFactory` on
stand-in classes that follow rosidl_generator_py's rules (no ROS needed)."""

from __future__ import annotations

import array
import sys
import types

import numpy as np
import pytest
import torch

from hmr_ros import messages as cv
from hmr_ros.body import BodyModel
from hmr_ros.body.joints import SMPL_JOINT_NAMES, SOURCE_NAMES
from hmr_ros.data.frame import BodyParams, CameraModel, Detection, Keypoints, PersonEstimate
from hmr_ros.geometry import quaternion_to_matrix
from hmr_ros.messages.definitions import hmr_typestore
from hmr_ros.messages.factory import ConversionError, RosbagsFactory
from hmr_ros.messages.tf import SMPL_TO_BODY, body_frames, global_rotations
from hmr_ros.ros.rclpy_factory import RclpyFactory, adapt_value

STAMP = 1_700_000_123_456_789_000


@pytest.fixture(scope="module", params=["humble", "jazzy"])
def ts(request):
    return hmr_typestore(request.param)


@pytest.fixture(scope="module")
def body():
    return BodyModel()


def roundtrip(ts, msg, typename):
    """Through CDR and back, as a bag or the wire would carry it."""
    return ts.deserialize_cdr(ts.serialize_cdr(msg, typename), typename)


def person(body, pid=3, global_orient=(np.pi, 0.0, 0.0), transl=(0.1, -0.2, 3.0),
           body_pose=None, betas=None) -> PersonEstimate:
    pose = np.zeros((24, 3), np.float32)
    pose[0] = global_orient
    if body_pose is not None:
        pose[1:] = body_pose
    betas = np.zeros(10, np.float32) if betas is None else np.asarray(betas, np.float32)
    t = np.asarray(transl, np.float32)
    with torch.inference_mode():
        out = body.forward_axis_angle(torch.from_numpy(pose).reshape(1, 72),
                                      torch.from_numpy(betas)[None], torch.from_numpy(t)[None])
    params = BodyParams(betas=betas, global_orient=pose[0].copy(), body_pose=pose[1:].copy(),
                        transl=t)
    return PersonEstimate(id=pid, box=np.array([100.0, 80.0, 120.0]), cam=np.zeros(3),
                          params=params, joints=out.joints[0].numpy(),
                          points=out.points[0].numpy(), vertices=out.vertices[0].numpy(),
                          keypoints=None, confidence=0.9)


# ------------------------------------------------------------------------ images


COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3")


@pytest.mark.parametrize("encoding", COLOR_ENCODINGS)
def test_color_image_round_trips_to_the_same_pixels(ts, encoding):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = cv.image_to_msg(RosbagsFactory(ts), img, STAMP, "cam", encoding)
    assert msg.encoding == encoding and msg.step == 7 * (4 if "a" in encoding[2:] else 3)
    back = roundtrip(ts, msg, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(cv.msg_to_image(back), img)
    assert cv.stamp_to_ns(back.header.stamp) == STAMP and back.header.frame_id == "cam"


@pytest.mark.parametrize("encoding", ("mono8", "8UC1"))
def test_mono_image_round_trips_to_gray_rgb(ts, encoding):
    gray = np.random.default_rng(2).integers(0, 256, (4, 6), dtype=np.uint8)
    f = RosbagsFactory(ts)
    for given in (gray, np.repeat(gray[..., None], 3, axis=2)):
        back = roundtrip(ts, cv.image_to_msg(f, given, 1, "cam", encoding),
                         "sensor_msgs/msg/Image")
        assert back.step == 6
        np.testing.assert_array_equal(cv.msg_to_image(back), np.repeat(gray[..., None], 3, 2))


def test_every_supported_encoding_is_covered():
    assert set(cv.SUPPORTED_ENCODINGS) == set(COLOR_ENCODINGS) | {"mono8", "8UC1"}


def test_padded_rows_are_read_correctly(ts):
    img = np.random.default_rng(3).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    padded = np.zeros((3, 16), np.uint8)
    padded[:, :12] = img.reshape(3, 12)
    padded[:, 12:] = 99  # padding must not leak into pixels
    msg = ts.types["sensor_msgs/msg/Image"](
        header=cv.make_header(RosbagsFactory(ts), 1, "cam"), height=3, width=4,
        encoding="rgb8", is_bigendian=0, step=16, data=padded.reshape(-1))
    np.testing.assert_array_equal(cv.msg_to_image(msg), img)


def _raw_image(ts, encoding="rgb8", h=2, w=3, step=9, size=18):
    return ts.types["sensor_msgs/msg/Image"](
        header=cv.make_header(RosbagsFactory(ts), 1, "cam"), height=h, width=w,
        encoding=encoding, is_bigendian=0, step=step, data=np.zeros(size, np.uint8))


@pytest.mark.parametrize("kwargs, words", [
    (dict(encoding="yuv422"), ["unsupported image encoding 'yuv422'", "rgb8"]),
    (dict(encoding="16UC1"), ["unsupported", "mono8"]),
    (dict(step=8), ["step 8 is shorter than a row"]),
    (dict(size=10), ["10 bytes, expected step*height = 18"]),
    (dict(h=0, size=0), ["empty image"]),
])
def test_bad_images_raise_clear_errors(ts, kwargs, words):
    with pytest.raises(ConversionError) as err:
        cv.msg_to_image(_raw_image(ts, **kwargs))
    for w in words:
        assert w in str(err.value)


def test_image_to_msg_rejects_bad_input(ts):
    f = RosbagsFactory(ts)
    with pytest.raises(ConversionError, match="expected \\(H, W, 3\\) uint8"):
        cv.image_to_msg(f, np.zeros((4, 4, 3), np.float32), 1, "cam")
    with pytest.raises(ConversionError, match="expected \\(H, W, 3\\) uint8"):
        cv.image_to_msg(f, np.zeros((4, 4), np.uint8), 1, "cam", "rgb8")
    with pytest.raises(ConversionError, match="cannot write encoding 'jpeg'"):
        cv.image_to_msg(f, np.zeros((4, 4, 3), np.uint8), 1, "cam", "jpeg")
    color = np.zeros((2, 2, 3), np.uint8)
    color[0, 0] = (255, 0, 0)
    with pytest.raises(ConversionError, match="gray image"):
        cv.image_to_msg(f, color, 1, "cam", "mono8")


# ------------------------------------------------------------------------ camera, keypoints


def test_camera_info_round_trip(ts):
    cam = CameraModel(np.array([[500.0, 0, 319.5], [0, 505.0, 239.5], [0, 0, 1]]), 640, 480,
                      "cam_optical")
    back = cv.msg_to_camera(roundtrip(ts, cv.camera_to_msg(RosbagsFactory(ts), cam, STAMP),
                                      "sensor_msgs/msg/CameraInfo"))
    np.testing.assert_allclose(back.K, cam.K)
    assert (back.width, back.height, back.frame_id) == (640, 480, "cam_optical")


def test_uncalibrated_camera_info_is_refused(ts):
    msg = ts.types["sensor_msgs/msg/CameraInfo"]
    f = RosbagsFactory(ts)
    empty = f.new("sensor_msgs/msg/CameraInfo", header=cv.make_header(f, 1, "c"), height=480,
                  width=640)
    assert isinstance(empty, msg)
    with pytest.raises(ConversionError, match="no valid K"):
        cv.msg_to_camera(empty)


def test_keypoints_round_trip_and_errors(ts):
    f = RosbagsFactory(ts)
    xy = np.random.default_rng(4).uniform(0, 100, (17, 2)).astype(np.float32)
    conf = np.linspace(0, 1, 17).astype(np.float32)
    dets = (Detection(5, Keypoints("coco17", xy, conf)), Detection(-1, None, np.ones(4)))
    msg = roundtrip(ts, cv.detections_to_msg(f, dets, STAMP, "cam"),
                    "hmr_ros/msg/Keypoints2DArray")
    (back,) = cv.msg_to_detections(msg)
    assert back.id == 5 and back.keypoints.format == "coco17"
    np.testing.assert_allclose(back.keypoints.xy, xy)
    msg.people[0].x = msg.people[0].x[:10]
    with pytest.raises(ConversionError, match="person 0: format coco17 has 17 joints"):
        cv.msg_to_detections(msg)
    msg.people[0].format = "nonsense"
    with pytest.raises(ConversionError, match="person 0"):
        cv.msg_to_detections(msg)


def test_bodies_round_trip(ts, body):
    p = person(body)
    msg = roundtrip(ts, cv.bodies_to_msg(RosbagsFactory(ts), [p], STAMP, "cam", 7, "m",
                                         with_vertices=True), "hmr_ros/msg/SMPLBodyArray")
    assert msg.model_version == 7 and len(msg.bodies[0].vertices) == 3 * body.num_vertices
    back = cv.msg_to_bodies(msg)[3]
    np.testing.assert_allclose(back.global_orient, p.params.global_orient, atol=1e-6)


# ------------------------------------------------------------------------ TF (REP-155)


def _tf_dict(msgs):
    out = {}
    for m in msgs:
        t, q = m.transform.translation, m.transform.rotation
        rot = quaternion_to_matrix(torch.tensor([q.w, q.x, q.y, q.z], dtype=torch.float64))
        pose = np.eye(4)
        pose[:3, :3] = rot.numpy()
        pose[:3, 3] = (t.x, t.y, t.z)
        out[m.child_frame_id] = (m.header.frame_id, pose, cv.stamp_to_ns(m.header.stamp))
    return out


def test_body_frame_of_a_body_facing_the_camera(ts, body):
    """Rest pose rotated by pi about x: the person faces the camera (-z), head up (-y)."""
    p = person(body, pid=3)
    tfs = _tf_dict(cv.transforms_to_msgs(RosbagsFactory(ts), [p], STAMP, "cam_optical"))
    parent, pose, stamp = tfs["body_b3"]
    assert parent == "cam_optical" and stamp == STAMP
    mid_hip = 0.5 * (p.joints[1] + p.joints[2])
    np.testing.assert_allclose(pose[:3, 3], mid_hip, atol=1e-6)
    x, y, z = pose[:3, 0], pose[:3, 1], pose[:3, 2]
    np.testing.assert_allclose(x, [0, 0, -1], atol=1e-6)  # out of the front: towards camera
    np.testing.assert_allclose(z, [0, -1, 0], atol=1e-6)  # towards the head: image up
    np.testing.assert_allclose(y, [1, 0, 0], atol=1e-6)  # person's left: image right
    # The same from the body's own geometry, independent of the axis table:
    nose = p.points[SOURCE_NAMES.index("nose")]
    head = p.joints[SMPL_JOINT_NAMES.index("head")]
    assert (nose - mid_hip) @ x > 0.05  # the face is in front
    assert (head - mid_hip) @ z > 0.4  # the head is up
    assert (p.joints[1] - mid_hip) @ y > 0.05  # left hip on the left


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_body_frame_axes_follow_the_body_in_any_orientation(body, seed):
    rng = np.random.default_rng(seed)
    aa = rng.normal(size=3)
    aa *= rng.uniform(0.3, 3.0) / np.linalg.norm(aa)
    p = person(body, pid=0, global_orient=aa, transl=rng.uniform(-1, 1, 3) + [0, 0, 4])
    (bf,) = body_frames(p.params.full_pose(), p.joints, 0, "cam", with_joints=False)
    mid_hip = 0.5 * (p.joints[1] + p.joints[2])
    x, y, z = bf.rotation.T
    assert (p.points[SOURCE_NAMES.index("nose")] - mid_hip) @ x > 0.05
    assert (p.joints[SMPL_JOINT_NAMES.index("head")] - mid_hip) @ z > 0.4
    assert (p.joints[1] - p.joints[2]) @ y > 0.1
    np.testing.assert_allclose(bf.rotation @ bf.rotation.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(bf.rotation) == pytest.approx(1.0)


def test_joint_frames_are_children_of_the_body_and_recompose(ts, body):
    rng = np.random.default_rng(5)
    p = person(body, pid=2, global_orient=(2.5, 0.3, -0.4), transl=(0.3, 0.1, 2.5),
               body_pose=rng.normal(scale=0.3, size=(23, 3)).astype(np.float32))
    tfs = _tf_dict(cv.transforms_to_msgs(RosbagsFactory(ts), [p], STAMP, "cam"))
    assert len(tfs) == 25
    _, body_pose, _ = tfs["body_b2"]
    g = global_rotations(p.params.full_pose())
    for k, name in enumerate(SMPL_JOINT_NAMES):
        parent, pose, stamp = tfs[f"{name}_b2"]
        assert parent == "body_b2" and stamp == STAMP
        in_camera = body_pose @ pose
        np.testing.assert_allclose(in_camera[:3, 3], p.joints[k], atol=1e-5)
        np.testing.assert_allclose(in_camera[:3, :3], g[k] @ SMPL_TO_BODY, atol=1e-5)


def test_rest_pose_joint_frames_are_parallel_to_the_body(body):
    p = person(body, pid=1)
    frames = body_frames(p.params.full_pose(), p.joints, 1, "cam")
    for f in frames[1:]:
        np.testing.assert_allclose(f.rotation, np.eye(3), atol=1e-6)


def test_all_bodies_in_one_list_with_prefix(ts, body):
    people = [person(body, pid=1), person(body, pid=4, transl=(1.0, 0.0, 4.0))]
    msgs = cv.transforms_to_msgs(RosbagsFactory(ts), people, STAMP, "cam", prefix="front/")
    assert len(msgs) == 50
    children = [m.child_frame_id for m in msgs]
    assert "front/body_b4" in children and "front/left_wrist_b1" in children
    assert {m.header.frame_id for m in msgs} == {"cam", "front/body_b1", "front/body_b4"}
    for m in msgs:
        roundtrip(ts, m, "geometry_msgs/msg/TransformStamped")
    assert cv.transforms_to_msgs(RosbagsFactory(ts), [], STAMP, "cam") == []


def test_bad_body_input_is_refused(ts, body):
    p = person(body)
    bad = PersonEstimate(p.id, p.box, p.cam, p.params, np.full((24, 3), np.nan), p.points,
                         p.vertices, None, 1.0)
    with pytest.raises(ConversionError, match="not finite"):
        cv.transforms_to_msgs(RosbagsFactory(ts), [bad], STAMP, "cam")
    with pytest.raises(ConversionError, match="camera_frame"):
        cv.transforms_to_msgs(RosbagsFactory(ts), [p], STAMP, "")


# ------------------------------------------------------------------------ mesh outputs


def test_marker_has_three_points_per_face(ts, body):
    people = [person(body, pid=2), person(body, pid=5, transl=(1.0, 0, 4))]
    arr = roundtrip(ts, cv.bodies_to_markers(RosbagsFactory(ts), people, body.faces, STAMP,
                                             "cam"), "visualization_msgs/msg/MarkerArray")
    clear, m2, m5 = arr.markers
    assert clear.action == cv.MARKER_DELETEALL
    assert m2.type == cv.MARKER_TRIANGLE_LIST and m2.ns == "body_2" and m5.ns == "body_5"
    assert len(m2.points) == 3 * len(body.faces)
    pts = np.array([[q.x, q.y, q.z] for q in m2.points])
    np.testing.assert_allclose(pts, people[0].vertices[body.faces.reshape(-1)], atol=1e-6)
    assert m2.header.frame_id == "cam" and cv.stamp_to_ns(m2.header.stamp) == STAMP
    assert m2.pose.orientation.w == 1.0 and 0 < m2.color.a <= 1


def test_marker_errors(ts, body):
    p = person(body)
    f = RosbagsFactory(ts)
    no_verts = PersonEstimate(p.id, p.box, p.cam, p.params, p.joints, p.points, None, None, 1)
    with pytest.raises(ConversionError, match="no vertices"):
        cv.body_marker(f, no_verts, body.faces, 1, "cam")
    with pytest.raises(ConversionError, match="beyond"):
        cv.body_marker(f, p, body.faces + 10_000, 1, "cam")
    with pytest.raises(ConversionError, match="\\(F, 3\\)"):
        cv.body_marker(f, p, body.faces.reshape(-1), 1, "cam")


def test_faces_message_round_trip(ts, body):
    msg = roundtrip(ts, cv.faces_to_msg(RosbagsFactory(ts), body.faces),
                    "std_msgs/msg/UInt32MultiArray")
    assert [d.label for d in msg.layout.dim] == ["faces", "vertices"]
    assert msg.layout.dim[0].size == len(body.faces) and msg.layout.dim[1].size == 3
    np.testing.assert_array_equal(cv.msg_to_faces(msg), body.faces)
    with pytest.raises(ConversionError):
        cv.faces_to_msg(RosbagsFactory(ts), np.zeros((0, 3)))


def test_vertex_cloud_round_trip(ts, body):
    people = [person(body, pid=1), person(body, pid=2, transl=(1, 0, 4))]
    msg = roundtrip(ts, cv.vertices_to_cloud(RosbagsFactory(ts), people, STAMP, "cam"),
                    "sensor_msgs/msg/PointCloud2")
    assert msg.width == 2 * body.num_vertices and msg.point_step == 12
    np.testing.assert_allclose(cv.cloud_to_xyz(msg), np.concatenate(
        [p.vertices for p in people]), atol=1e-6)
    empty = cv.vertices_to_cloud(RosbagsFactory(ts), [], STAMP, "cam")
    assert empty.width == 0


# ------------------------------------------------------------------------ status messages


def _status(state="running", loss=0.25):
    from hmr_ros.adapt.worker import AdaptStatus

    return AdaptStatus(state, True, "boa_2nd", 12, 340, 2, 3.5, loss, 16, 1, 0, "ok")


def test_adaptation_status(ts):
    msg = roundtrip(ts, cv.adaptation_status_to_msg(RosbagsFactory(ts), _status(), STAMP),
                    "hmr_ros/msg/AdaptationStatus")
    assert (msg.state, msg.enabled, msg.method, msg.model_version, msg.steps) == \
        (1, True, "boa_2nd", 12, 340)
    assert msg.rollbacks == 2 and msg.buffered_frames == 16 and msg.message == "ok"
    assert msg.steps_per_second == pytest.approx(3.5)
    nan = cv.adaptation_status_to_msg(RosbagsFactory(ts), _status("stopped", float("nan")), 1)
    assert nan.state == 2 and np.isnan(nan.last_loss)
    with pytest.raises(ConversionError, match="unknown adaptation state"):
        cv.adaptation_status_to_msg(RosbagsFactory(ts), _status("dancing"), 1)


def test_diagnostics(ts):
    entries = [cv.DiagnosticEntry("hmr_ros: estimator", cv.DIAG_WARN, "no camera info",
                                  {"input rate (Hz)": "30.0"}, "cam"),
               cv.DiagnosticEntry("hmr_ros: adaptation", cv.DIAG_OK, "running")]
    msg = roundtrip(ts, cv.diagnostics_to_msg(RosbagsFactory(ts), entries, STAMP),
                    "diagnostic_msgs/msg/DiagnosticArray")
    assert [s.level for s in msg.status] == [1, 0]
    assert msg.status[0].values[0].key == "input rate (Hz)"
    assert msg.status[0].hardware_id == "cam"
    with pytest.raises(ConversionError, match="0..3"):
        cv.diagnostics_to_msg(RosbagsFactory(ts), [cv.DiagnosticEntry("x", 7, "")], 1)


def test_rosbags_factory_defaults_and_unknown_fields(ts):
    f = RosbagsFactory(ts)
    m = f.new("visualization_msgs/msg/Marker", ns="a")
    assert m.ns == "a" and m.id == 0 and len(m.points) == 0
    roundtrip(ts, m, "visualization_msgs/msg/Marker")
    with pytest.raises(ConversionError, match="has no field"):
        f.new("std_msgs/msg/Header", frame="x")
    with pytest.raises(ConversionError, match="no message type"):
        f.new("nope_msgs/msg/Nothing")


# ------------------------------------------------------------------------ RclpyFactory


def test_adapt_value_follows_rosidl_rules():
    assert type(adapt_value("float", np.float32(1.5))) is float
    assert type(adapt_value("uint32", np.int64(3))) is int
    assert adapt_value("octet", 2) == b"\x02"
    seq = adapt_value("sequence<float>", np.arange(3, dtype=np.float64))
    assert isinstance(seq, array.array) and seq.typecode == "f" and list(seq) == [0, 1, 2]
    data = adapt_value("sequence<uint8>", np.arange(5, dtype=np.uint8))
    assert data.typecode == "B" and bytes(data) == bytes(range(5))
    fixed = adapt_value("float[3]", [1, 2, 3])
    assert isinstance(fixed, np.ndarray) and fixed.dtype == np.float32 and fixed.shape == (3,)
    with pytest.raises(ConversionError, match="float\\[10\\] got 3"):
        adapt_value("float[10]", np.zeros(3))
    with pytest.raises(ConversionError, match="at most 2"):
        adapt_value("sequence<int32, 2>", [1, 2, 3])
    with pytest.raises(ConversionError, match="non-integer"):
        adapt_value("int32", 1.5)


# Stand-ins for rosidl_generator_py classes, made from the rosbags definitions of the same
# messages, with the checks and conversions the generated code does (see rclpy_factory.py).
_ROSIDL = {"float32": "float", "float64": "double", "bool": "boolean", "byte": "octet",
           "char": "uint8"}
_CODES = {"float": ("f", np.float32), "double": ("d", np.float64), "int8": ("b", np.int8),
          "uint8": ("B", np.uint8), "int16": ("h", np.int16), "uint16": ("H", np.uint16),
          "int32": ("i", np.int32), "uint32": ("I", np.uint32), "int64": ("q", np.int64),
          "uint64": ("Q", np.uint64)}


def _rosidl_type(desc) -> str:
    kind, spec = int(desc[0]), desc[1]
    if kind == 1:
        return _ROSIDL.get(spec[0], spec[0])
    if kind == 2:
        pkg, _, name = spec.split("/")
        return f"{pkg}/{name}"
    sub, n = spec
    inner = _rosidl_type(sub)
    if kind == 3:
        return f"{inner}[{n}]"
    return f"sequence<{inner}, {n}>" if n else f"sequence<{inner}>"


class _FakeRosidl:
    """Builds strict stand-in classes for every message type on demand."""

    def __init__(self, ts):
        self.ts = ts
        self.classes: dict[str, type] = {}

    def cls(self, full: str) -> type:
        if full in self.classes:
            return self.classes[full]
        fields = self.ts.fielddefs[full][1]
        types_ = {name: _rosidl_type(desc) for name, desc in fields}
        registry = self

        def check(name, t, value):
            if t in ("float", "double"):
                assert isinstance(value, float), f"{name}: {type(value)} is not float"
            elif t in _CODES:
                assert isinstance(value, int), f"{name}: {type(value)} is not int"
            elif t == "boolean":
                assert isinstance(value, bool), f"{name} must be bool"
            elif t == "octet":
                assert isinstance(value, bytes) and len(value) == 1, f"{name} must be bytes"
            elif t == "string":
                assert isinstance(value, str), f"{name} must be str"
            elif t.startswith("sequence<") or t.endswith("]"):
                inner = t[9:-1].split(",")[0] if t.startswith("sequence<") else \
                    t[:t.index("[")]
                if inner in _CODES:
                    if t.endswith("]"):
                        assert isinstance(value, np.ndarray) and \
                            value.dtype == _CODES[inner][1], f"{name}: numpy {inner} expected"
                    else:
                        assert isinstance(value, array.array) and \
                            value.typecode == _CODES[inner][0], f"{name}: array.array expected"
                else:
                    assert isinstance(value, (list, tuple)), f"{name}: a list expected"
                    for v in value:
                        check(name, inner, v)
            else:
                pkg, name_ = t.split("/")
                expected = registry.cls(f"{pkg}/msg/{name_}")
                assert isinstance(value, expected), f"{name}: {type(value)} is not {t}"

        def __init__(self, **kwargs):
            assert set(kwargs) <= set(types_), f"unknown {set(kwargs) - set(types_)}"
            for name, t in types_.items():
                if name not in kwargs:
                    continue
                value = kwargs[name]
                inner = t[:t.index("[")] if t.endswith("]") else None
                if inner in _CODES:  # constructor: numpy.array(value, dtype), flat shape
                    value = np.array(value, dtype=_CODES[inner][1])
                    assert value.shape == (int(t[t.index("[") + 1:-1]),), f"{name} shape"
                elif t.startswith("sequence<") and t[9:-1].split(",")[0] in _CODES:
                    value = array.array(_CODES[t[9:-1].split(",")[0]][0], value)
                check(name, t, value)
                setattr(self, name, value)

        cls = type(full.split("/")[-1], (), {
            "__init__": __init__, "_fields_and_field_types": types_,
            "get_fields_and_field_types": classmethod(lambda c: dict(c._fields_and_field_types)),
        })
        self.classes[full] = cls
        return cls

    def install(self, monkeypatch, typenames):
        pkgs: dict[str, types.ModuleType] = {}
        for full in typenames:
            pkg = full.split("/")[0]
            mod = pkgs.setdefault(pkg, types.ModuleType(f"{pkg}.msg"))
            setattr(mod, full.split("/")[-1], self.cls(full))
        for pkg, mod in pkgs.items():
            monkeypatch.setitem(sys.modules, f"{pkg}.msg", mod)


def test_rclpy_factory_builds_every_output_under_rosidl_rules(monkeypatch, body):
    ts = hmr_typestore("humble")
    fake = _FakeRosidl(ts)
    fake.install(monkeypatch, [n for n in ts.types if n.split("/")[0] in (
        "std_msgs", "builtin_interfaces", "geometry_msgs", "sensor_msgs", "visualization_msgs",
        "diagnostic_msgs", "hmr_ros")])
    f = RclpyFactory()
    img = np.random.default_rng(6).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    msg = cv.image_to_msg(f, img, STAMP, "cam")
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    np.testing.assert_array_equal(cv.msg_to_image(msg), img)  # reads rclpy's array('B')
    cam = CameraModel.from_focal(400.0, 8, 6)
    info = cv.camera_to_msg(f, cam, STAMP)
    assert isinstance(info.k, np.ndarray) and info.k.shape == (9,)
    np.testing.assert_allclose(cv.msg_to_camera(info).K, cam.K)
    p = person(body, pid=4)
    bodies = cv.bodies_to_msg(f, [p], STAMP, "cam", 3, "m", with_vertices=True)
    assert bodies.bodies[0].betas.dtype == np.float32
    assert isinstance(bodies.bodies[0].vertices, array.array)
    kp = cv.detections_to_msg(f, [Detection(1, Keypoints("coco17", np.zeros((17, 2)),
                                                         np.ones(17)))], STAMP, "cam")
    assert cv.msg_to_detections(kp)[0].id == 1
    tfs = cv.transforms_to_msgs(f, [p], STAMP, "cam")
    assert len(tfs) == 25 and isinstance(tfs[0].transform.rotation.w, float)
    markers = cv.bodies_to_markers(f, [p], body.faces, STAMP, "cam")
    assert len(markers.markers[1].points) == 3 * len(body.faces)
    assert cv.msg_to_faces(cv.faces_to_msg(f, body.faces)).shape == body.faces.shape
    cloud = cv.vertices_to_cloud(f, [p], STAMP, "cam")
    np.testing.assert_allclose(cv.cloud_to_xyz(cloud), p.vertices, atol=1e-6)
    status = cv.adaptation_status_to_msg(f, _status(loss=float("nan")), STAMP)
    assert status.state == 1 and np.isnan(status.last_loss)
    diag = cv.diagnostics_to_msg(f, [cv.DiagnosticEntry("n", cv.DIAG_ERROR, "m", {"k": 1})], 1)
    assert diag.status[0].level == b"\x02"  # rclpy's byte field
    with pytest.raises(ConversionError, match="has no field"):
        f.new("std_msgs/msg/Header", nope=1)
    with pytest.raises(ConversionError, match="cannot import"):
        f.new("no_such_msgs/msg/Thing")


def test_stand_in_classes_reject_what_rosidl_rejects(monkeypatch):
    """The stand-ins are strict: numpy float32 scalars, numpy arrays in sequences and ints in
    float fields fail, as with rclpy."""
    ts = hmr_typestore("humble")
    fake = _FakeRosidl(ts)
    point = fake.cls("geometry_msgs/msg/Point")
    with pytest.raises(AssertionError):
        point(x=np.float32(1.0), y=0.0, z=0.0)
    with pytest.raises(AssertionError):
        point(x=1, y=0.0, z=0.0)
    status = fake.cls("diagnostic_msgs/msg/DiagnosticStatus")
    with pytest.raises(AssertionError):
        status(level=1)
    body_cls = fake.cls("hmr_ros/msg/SMPLBody")
    with pytest.raises(AssertionError):
        body_cls(betas=np.zeros((2, 5), np.float32))


def test_tf_from_the_kept_rotation_matrices_equals_tf_from_axis_angle(ts, body):
    """The pipeline keeps each joint's accumulated rotation (`PersonEstimate.rotations`, from
    `BodyModel.global_rotations`), so TF needs no axis-angle and no second kinematics: the
    frames equal those recomputed from the axis-angle parameters."""
    import dataclasses

    from hmr_ros.geometry import axis_angle_to_matrix

    rng = np.random.default_rng(11)
    p = person(body, pid=4, global_orient=(2.0, -0.4, 0.7), transl=(0.2, -0.1, 3.0),
               body_pose=rng.normal(scale=0.4, size=(23, 3)).astype(np.float32))
    local = axis_angle_to_matrix(torch.as_tensor(p.params.full_pose(), dtype=torch.float32))
    kept = body.global_rotations(local[None])[0].numpy()
    np.testing.assert_allclose(kept, global_rotations(p.params.full_pose()), atol=1e-5)
    with_rot = dataclasses.replace(p, rotations=kept)
    a = _tf_dict(cv.transforms_to_msgs(RosbagsFactory(ts), [p], STAMP, "cam"))
    b = _tf_dict(cv.transforms_to_msgs(RosbagsFactory(ts), [with_rot], STAMP, "cam"))
    assert a.keys() == b.keys() and len(a) == 25
    for name in a:
        np.testing.assert_allclose(b[name][1], a[name][1], atol=1e-5)
    bad = dataclasses.replace(p, rotations=np.full((24, 3, 3), np.nan))
    with pytest.raises(cv.ConversionError, match="body 4"):
        cv.transforms_to_msgs(RosbagsFactory(ts), [bad], STAMP, "cam")
