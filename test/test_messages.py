"""The .msg definitions in msg/: parse, register, CDR round trip and documentation checks.

ROS 2 is not needed: the files are parsed with rosbags, whose typestores for Humble and Jazzy
supply std_msgs / geometry_msgs. Under colcon the same files are compiled by rosidl.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from pathlib import Path

import numpy as np
import pytest
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

from hmr_ros.messages import definitions as msgdefs

MSG_DIR = Path(__file__).resolve().parents[1] / "msg"

EXPECTED = {"AdaptationStatus", "Keypoints2D", "Keypoints2DArray", "SMPLBody", "SMPLBodyArray"}

SMPL_JOINTS = (
    "pelvis left_hip right_hip spine1 left_knee right_knee spine2 left_ankle right_ankle spine3 "
    "left_foot right_foot neck left_collar right_collar head left_shoulder right_shoulder "
    "left_elbow right_elbow left_wrist right_wrist left_hand right_hand"
).split()

DISTROS = ("humble", "jazzy")

# Documented fixed array sizes.
FIXED_SIZES = {
    "SMPLBody": {"betas": 10, "body_pose": 69, "global_orient": 3, "bbox": 4},
}

# rosidl_adapter's naming rules (msg field, constant and type names), restated.
FIELD_RE = re.compile(r"^(?!.*__)(?!.*_$)[a-z][a-z0-9_]*$")
CONST_RE = re.compile(r"^[A-Z](?:[A-Z0-9_]?[A-Z0-9]+)*$")
TYPE_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
# Words a field may not be called in one of the generated languages or in IDL (a subset that
# covers what a message author could plausibly type).
RESERVED = set(keyword.kwlist) | {
    "and", "asm", "auto", "bool", "boolean", "break", "case", "catch", "char", "class", "const",
    "continue", "default", "delete", "do", "double", "else", "enum", "explicit", "extern",
    "false", "float", "for", "friend", "goto", "if", "inline", "int", "long", "module",
    "mutable", "namespace", "new", "not", "octet", "operator", "or", "private", "protected",
    "public", "register", "return", "sequence", "short", "signed", "sizeof", "static", "string",
    "struct", "switch", "template", "this", "throw", "true", "try", "typedef", "union",
    "unsigned", "using", "virtual", "void", "volatile", "while", "wstring",
}  # fmt: skip


def _msg_lines(name: str) -> list[str]:
    """Definition lines (field or constant) of msg/<name>.msg, comments still attached."""
    text = (MSG_DIR / f"{name}.msg").read_text(encoding="utf-8")
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _split(line: str) -> tuple[str, str, str, str]:
    """`type name[=value]  # comment` -> (type, name, value, comment)."""
    decl, _, comment = line.partition("#")
    typ, rest = decl.split(maxsplit=1)
    name, _, value = rest.strip().partition("=")
    return typ, name.strip(), value.strip(), comment.strip()


# --------------------------------------------------------------------------- message builders


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _f32(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def _header(ts, sec: int = 1_700_000_123, nanosec: int = 456_789_000, frame: str = "cam_optical"):
    time = ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return ts.types["std_msgs/msg/Header"](stamp=time, frame_id=frame)


def _body(ts, rng, track_id: int, n_vertices: int = 6890):
    point = ts.types["geometry_msgs/msg/Point"]
    joints = [point(x=float(j[0]), y=float(j[1]), z=float(j[2])) for j in rng.random((24, 3))]
    return ts.types[msgdefs.SMPL_BODY](
        id=track_id,
        betas=_f32(rng, 10),
        body_pose=_f32(rng, 69),
        global_orient=_f32(rng, 3),
        translation=ts.types["geometry_msgs/msg/Vector3"](x=0.125, y=-0.5, z=3.25),
        joints=joints,
        vertices=_f32(rng, 3 * n_vertices),
        bbox=np.array([10.5, 20.25, 310.0, 470.75], dtype=np.float32),
        confidence=0.875,
    )


def _build(ts, name: str):
    rng = _rng()
    cls = ts.types[msgdefs.full_type_name(name)]
    if name == "SMPLBody":
        return _body(ts, rng, 7)
    if name == "SMPLBodyArray":
        # Two bodies: one with the full mesh, one without (vertices are optional).
        bodies = [_body(ts, rng, 3), _body(ts, rng, 11, n_vertices=0)]
        return cls(header=_header(ts), model_version=42, model_name="hmr2_boa", bodies=bodies)
    if name == "Keypoints2D":
        return _keypoints(ts, rng, 5, "coco17", 17)
    if name == "Keypoints2DArray":
        people = [_keypoints(ts, rng, 1, "body25", 25), _keypoints(ts, rng, 2, "smpl24", 24)]
        return cls(header=_header(ts), people=people)
    if name == "AdaptationStatus":
        return cls(
            header=_header(ts, frame=""),
            state=cls.STATE_RUNNING,
            enabled=True,
            method="boa_2nd",
            model_version=17,
            steps=2**40 + 3,  # needs the full uint64
            rollbacks=2,
            steps_per_second=12.5,
            last_loss=0.0078125,
            buffered_frames=64,
            message="rolled back: loss rose 3x",
        )
    raise AssertionError(name)


def _keypoints(ts, rng, track_id: int, fmt: str, n: int):
    conf = rng.random(n).astype(np.float32)
    conf[::4] = 0.0  # some joints missing
    return ts.types[msgdefs.KEYPOINTS_2D](
        id=track_id,
        format=fmt,
        x=(rng.random(n) * 640).astype(np.float32),
        y=(rng.random(n) * 480).astype(np.float32),
        confidence=conf,
    )


def _assert_same(a, b, path: str = "msg") -> None:
    """Field-by-field equality; arrays must keep dtype and match exactly."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        assert np.array_equal(a, b), path
    elif dataclasses.is_dataclass(a):
        assert type(a).__msgtype__ == type(b).__msgtype__, path
        for field in dataclasses.fields(a):
            _assert_same(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) or {type(a), type(b)} <= {int, bool, float}, path
        assert a == b, f"{path}: {a!r} != {b!r}"


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=DISTROS)
def ts(request):
    # setup.py pins a rosbags range that has both typestores; a missing one is a failure.
    assert hasattr(Stores, f"ROS2_{request.param.upper()}"), \
        f"this rosbags version has no {request.param} typestore"
    return msgdefs.hmr_typestore(request.param)


# ------------------------------------------------------------------------------------ tests


def test_msg_folder_holds_exactly_the_expected_messages():
    assert {p.stem for p in MSG_DIR.glob("*.msg")} == EXPECTED
    assert set(msgdefs.MSG_NAMES) == EXPECTED
    assert not [p for p in MSG_DIR.iterdir() if p.suffix != ".msg"]


def test_no_python_package_named_msg():
    # A hand-written hmr_ros/msg/ (or srv/) would collide with the package rosidl generates
    # under ROS. Checked in the source tree: the installed package legitimately has one.
    pkg = MSG_DIR.parent / "hmr_ros"
    assert not (pkg / "msg").exists()
    assert not (pkg / "srv").exists()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_definition_line_is_documented(name):
    lines = _msg_lines(name)
    assert lines, name
    for line in lines:
        assert "#" in line, f"{name}.msg: no comment on {line!r}"
        assert len(_split(line)[3]) >= 8, f"{name}.msg: comment too short on {line!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_names_follow_rosidl_rules(name):
    assert TYPE_RE.match(name)
    for line in _msg_lines(name):
        typ, field, value, _ = _split(line)
        if value:
            assert CONST_RE.match(field), f"{name}: constant {field}"
        else:
            assert FIELD_RE.match(field), f"{name}: field {field}"
            assert field not in RESERVED, f"{name}: field {field} is a reserved word"
        base = typ.split("[")[0]
        if "/" in base:
            assert base.split("/")[0] in {"std_msgs", "geometry_msgs"}, f"{name}: {typ}"


def test_smpl_joint_names_listed_in_order():
    text = (MSG_DIR / "SMPLBody.msg").read_text(encoding="utf-8")
    found = re.findall(r"(\d+): ([a-z0-9_]+)", text)
    assert [int(i) for i, _ in found] == list(range(24))
    assert [n for _, n in found] == SMPL_JOINTS


def test_adaptation_state_constants(ts):
    cls = ts.types[msgdefs.ADAPTATION_STATUS]
    assert (cls.STATE_IDLE, cls.STATE_RUNNING, cls.STATE_PAUSED, cls.STATE_ERROR) == (0, 1, 2, 3)


def test_fixed_array_sizes_in_definitions(ts):
    for name, sizes in FIXED_SIZES.items():
        _, fields = ts.fielddefs[msgdefs.full_type_name(name)]
        declared = {
            field: spec[1]
            for field, (nodetype, spec) in fields
            if nodetype.name == "ARRAY"  # fixed size; SEQUENCE is unbounded
        }
        assert declared == sizes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cdr_round_trip(ts, name):
    typename = msgdefs.full_type_name(name)
    msg = _build(ts, name)
    raw = ts.serialize_cdr(msg, typename)
    back = ts.deserialize_cdr(raw, typename)
    _assert_same(msg, back)
    # And the bytes are stable.
    assert bytes(ts.serialize_cdr(back, typename)) == bytes(raw)


def test_body_array_contents_survive(ts):
    msg = _build(ts, "SMPLBodyArray")
    back = ts.deserialize_cdr(
        ts.serialize_cdr(msg, msgdefs.SMPL_BODY_ARRAY), msgdefs.SMPL_BODY_ARRAY
    )
    assert [b.id for b in back.bodies] == [3, 11]
    assert [len(b.joints) for b in back.bodies] == [24, 24]
    assert back.bodies[0].vertices.shape == (6890 * 3,)
    assert back.bodies[1].vertices.shape == (0,)
    assert back.header.frame_id == "cam_optical"
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1_700_000_123, 456_789_000)


@pytest.mark.parametrize(
    ("field", "length"),
    [("betas", 9), ("betas", 11), ("body_pose", 68), ("global_orient", 4), ("bbox", 3)],
)
def test_wrong_fixed_array_length_is_rejected(ts, field, length):
    body = _body(ts, _rng(), 1, n_vertices=2)
    setattr(body, field, np.zeros(length, dtype=np.float32))
    with pytest.raises(SerdeError):
        ts.serialize_cdr(body, msgdefs.SMPL_BODY)


def test_float64_array_is_not_silently_converted(ts):
    # Observed rosbags behaviour: arrays must already have the declared dtype. Code that fills
    # these messages has to cast to float32 itself.
    body = _body(ts, _rng(), 1, n_vertices=2)
    body.betas = body.betas.astype(np.float64)
    with pytest.raises((ValueError, TypeError, SerdeError)):
        ts.serialize_cdr(body, msgdefs.SMPL_BODY)


# ------------------------------------------------------------------------- msgdefs helpers


def test_register_into_fresh_store_and_again(ts):
    store = get_typestore(Stores.ROS2_HUMBLE)
    names = msgdefs.register_hmr_types(store)
    assert names == sorted(msgdefs.full_type_name(n) for n in EXPECTED)
    assert msgdefs.register_hmr_types(store) == names  # idempotent
    # The base store is not modified by registering into a copy.
    assert msgdefs.SMPL_BODY not in get_typestore(Stores.ROS2_HUMBLE).fielddefs


def test_conflicting_definition_is_refused():
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg("uint8 id  # wrong type", msgdefs.SMPL_BODY))
    with pytest.raises(TypesysError):
        msgdefs.register_hmr_types(store)


def test_store_without_dependencies_fails_clearly():
    with pytest.raises(ValueError, match="does not know"):
        msgdefs.register_hmr_types(get_typestore(Stores.EMPTY))


def test_unknown_distro():
    with pytest.raises(ValueError, match="Unknown ROS 2 distro"):
        msgdefs.hmr_typestore("nonesuch")


def test_msg_dir_lookup(tmp_path, monkeypatch):
    # Default lookup: the repository (source/editable) or the installed share/ copy.
    found = msgdefs.find_msg_dir()
    for p in MSG_DIR.glob("*.msg"):
        assert (found / p.name).read_text() == p.read_text()
    # Explicit folder and environment override.
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in MSG_DIR.glob("*.msg"):
        (copy / p.name).write_text(p.read_text())
    monkeypatch.setenv(msgdefs.ENV_MSG_DIR, str(copy))
    assert msgdefs.find_msg_dir() == copy
    assert msgdefs.find_msg_dir(copy) == copy
    with pytest.raises(FileNotFoundError, match="lacks"):
        msgdefs.find_msg_dir(tmp_path)


def test_msg_dir_missing_everywhere_gives_a_hint(tmp_path, monkeypatch):
    from hmr_ros import resources

    monkeypatch.setattr(resources, "_candidates", lambda kind: [tmp_path / "nowhere" / kind])
    with pytest.raises(FileNotFoundError, match="HMR_ROS_SHARE"):
        msgdefs.find_msg_dir()
    (tmp_path / "nowhere" / "msg").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=msgdefs.ENV_MSG_DIR):
        msgdefs.find_msg_dir()
