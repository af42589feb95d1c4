"""config/hmr_ros.rviz and the `rviz` argument of launch/adapt.launch.py, checked without ROS:
every topic and frame the RViz config names must be one the node publishes under the launch
file's defaults (a misspelt topic shows nothing in RViz and fails nowhere else), and the launch
file must start rviz2 with that config only on request."""

from __future__ import annotations

import ast
import copy
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from micro import module_literals

from hmr_ros.data.frame import CameraModel
from hmr_ros.messages.tf import body_frames
from hmr_ros.ros.params import read_params_file
from hmr_ros.stream.frames import DEFAULT_FRAME

ROOT = Path(__file__).resolve().parents[1]
RVIZ = ROOT / "config" / "hmr_ros.rviz"
LAUNCH = ROOT / "launch" / "adapt.launch.py"
NODE = ROOT / "hmr_ros" / "ros" / "node.py"
PARAMS = ROOT / "config" / "adapt.yaml"

#: The displays the config may use -> the message type (class name) of their topic; None: the
#: display takes no topic (TF reads the transform buffer).
DISPLAY_TYPES = {
    "rviz_default_plugins/Image": "Image",
    "rviz_default_plugins/MarkerArray": "MarkerArray",
    "rviz_default_plugins/TF": None,
    "rviz_default_plugins/PointCloud2": "PointCloud2",
}
#: Keys under which rviz2 configs name a frame; "<Fixed Frame>" is RViz's "follow the fixed
#: frame".
FRAME_KEYS = ("Fixed Frame", "Target Frame", "Reference Frame")
#: Sections rviz2 writes (and reads back) in every saved config.
SECTIONS = ("Panels", "Visualization Manager", "Window Geometry")
MANAGER_SECTIONS = ("Displays", "Global Options", "Tools", "Views")


@dataclasses.dataclass(frozen=True)
class NodeOutputs:
    """What the node, launched by adapt.launch.py with its defaults, offers a viewer."""

    topics: dict[str, str]  # resolved topic name -> message type (class name)
    fixed_frame: str  # the frame every output is expressed in
    tf_children: frozenset[str]  # TF child frames of the person with id 0

    def is_frame(self, name: str) -> bool:
        """The camera frame, or a TF frame the node broadcasts for some person id."""
        if name == self.fixed_frame:
            return True
        m = re.fullmatch(r"(.+)_(\d+)", name)
        return m is not None and f"{m[1]}_0" in self.tf_children


def resolve(name: str, node: str, namespace: str) -> str:
    """A topic name as ROS resolves it for node `node` in `namespace`: `~/x` is private
    (/<ns>/<node>/x), `/x` absolute, `x` relative to the namespace."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("~/"):
        return f"{ns}/{node}/{name[2:]}"
    if name.startswith("/"):
        return name
    return f"{ns}/{name}"


def node_outputs() -> NodeOutputs:
    """The node's outputs under the launch defaults, from the sources that decide them: the
    publishers node.py creates, the node name and namespace adapt.launch.py passes, the image
    topic and output frame of the installed params file, the TF names of messages/tf.py."""
    args = module_literals(LAUNCH)["ARGUMENTS"]
    node, namespace = args["node_name"][0], args["namespace"][0]
    created = re.findall(r"create_publisher\(\s*(\w+),\s*\"([^\"]+)\"", NODE.read_text())
    assert created, "no create_publisher(Type, \"name\", ...) found in node.py"
    topics = {resolve(name, node, namespace): kind for kind, name in created}
    params = read_params_file(PARAMS, node)
    assert params["image_transport"] == "raw"  # the Image display subscribes to raw images
    # The launch file's `camera` is empty by default, so the params file's topic is the one.
    assert args["camera"][0] == ""
    topics[resolve(params["image_topic"], node, namespace)] = "Image"
    frame = params["camera_frame"] or DEFAULT_FRAME
    children = {f.child for f in body_frames(np.zeros((24, 3)), np.zeros((24, 3)), 0, frame,
                                             prefix=params["tf_prefix"])}
    return NodeOutputs(topics, frame, frozenset(children))


def _topic(entry: dict) -> str | None:
    """The topic of a display or tool: `Topic: {Value: /x, ...}` (rviz2) or `Topic: /x`."""
    topic = entry.get("Topic")
    if isinstance(topic, dict):
        topic = topic.get("Value")
    return None if topic is None else str(topic)


def _walk(value, path: str = ""):
    """(path, key, value) of every mapping entry in a parsed YAML document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, str(key), item
            yield from _walk(item, f"{path}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def config_problems(config: dict, outputs: NodeOutputs) -> list[str]:
    """Everything in a parsed rviz2 config that would show nothing with the node's outputs:
    unknown display classes, topics the node does not publish (or of another type), frames it
    does not broadcast. Empty when the config is right."""
    problems = [f"no {s} section" for s in SECTIONS if s not in config]
    manager = config.get("Visualization Manager") or {}
    problems += [f"no Visualization Manager/{s}" for s in MANAGER_SECTIONS if s not in manager]
    displays = manager.get("Displays") or []
    for d in displays:
        cls, name, topic = d.get("Class"), d.get("Name"), _topic(d)
        if cls not in DISPLAY_TYPES:
            problems.append(f"display {name!r}: class {cls!r} is not one of {list(DISPLAY_TYPES)}")
            continue
        want = DISPLAY_TYPES[cls]
        if want is None:
            if topic is not None:
                problems.append(f"display {name!r} ({cls}) takes no topic, names {topic}")
        elif topic is None:
            problems.append(f"display {name!r} ({cls}) names no topic")
        elif topic not in outputs.topics:
            problems.append(f"display {name!r}: topic {topic} is not published by the node "
                            f"(it publishes {sorted(outputs.topics)})")
        elif outputs.topics[topic] != want:
            problems.append(f"display {name!r} ({cls}): {topic} carries "
                            f"{outputs.topics[topic]}, not {want}")
        if cls == "rviz_default_plugins/TF":
            named = [k for k in (d.get("Frames") or {}) if k != "All Enabled"]
            named += [k for _, k, _ in _walk(d.get("Tree") or {})]
            problems += [f"display {name!r}: frame {k!r} is not broadcast by the node"
                         for k in named if not outputs.is_frame(k)]
    missing = set(DISPLAY_TYPES) - {d.get("Class") for d in displays}
    problems += [f"no {cls} display" for cls in sorted(missing)]
    # Topics outside the displays (tools, panels) must be the node's too.
    rest = {k: v for k, v in manager.items() if k != "Displays"}
    rest.update({k: v for k, v in config.items() if k != "Visualization Manager"})
    for path, key, value in _walk(rest):
        if key == "Topic":
            topic = _topic({"Topic": value})
            if topic not in outputs.topics:
                problems.append(f"{path}: topic {topic} is not published by the node")
    for path, key, value in _walk(config):
        if key not in FRAME_KEYS:
            continue
        if key == "Fixed Frame":
            if value != outputs.fixed_frame:
                problems.append(f"{path}: Fixed Frame {value!r} is not the outputs' frame "
                                f"{outputs.fixed_frame!r}")
        elif value != "<Fixed Frame>" and not outputs.is_frame(str(value)):
            problems.append(f"{path}: {key} {value!r} is not broadcast by the node")
    return problems


@pytest.fixture(scope="module")
def outputs() -> NodeOutputs:
    return node_outputs()


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load(RVIZ.read_text())


def _display(config: dict, cls: str) -> dict:
    (d,) = [d for d in config["Visualization Manager"]["Displays"] if d["Class"] == cls]
    return d


def test_node_outputs_are_those_docs_ros_md_lists(outputs):
    # The resolution the checks rely on, pinned to the names docs/ros.md gives.
    assert outputs.topics["/hmr_ros/markers"] == "MarkerArray"
    assert outputs.topics["/hmr_ros/vertices"] == "PointCloud2"
    assert outputs.topics["/hmr_ros/bodies"] == "SMPLBodyArray"
    assert outputs.topics["/diagnostics"] == "DiagnosticArray"
    assert outputs.topics["/camera/image_raw"] == "Image"
    assert outputs.fixed_frame == "camera_optical_frame"
    # The synthetic bags' images carry the same frame (CameraModel's default frame_id).
    (field,) = [f for f in dataclasses.fields(CameraModel) if f.name == "frame_id"]
    assert field.default == DEFAULT_FRAME
    assert {"body_0", "pelvis_0", "head_0", "left_wrist_0"} <= outputs.tf_children
    assert len(outputs.tf_children) == 25  # body_<id> and the 24 SMPL joints
    assert outputs.is_frame("body_12") and outputs.is_frame("left_wrist_3")
    assert not outputs.is_frame("body") and not outputs.is_frame("bdy_0")
    docs = (ROOT / "docs" / "ros.md").read_text()
    assert "/hmr_ros/bodies" in docs and "`~/markers`" in docs and "`~/vertices`" in docs


def test_resolve_follows_ros_name_rules():
    assert resolve("~/markers", "hmr_ros", "") == "/hmr_ros/markers"
    assert resolve("~/markers", "n", "/robot/") == "/robot/n/markers"
    assert resolve("/diagnostics", "n", "robot") == "/diagnostics"
    assert resolve("image", "n", "robot") == "/robot/image"
    assert resolve("image", "n", "") == "/image"


def test_image_topic_is_also_what_camera_argument_gives(outputs):
    # `camera:=/camera` (the topics of `hmr-ros synth` bags) gives the same image topic as the
    # params file, so the config fits both ways of launching.
    from hmr_ros.synth import TOPIC_IMAGE

    suffix = module_literals(LAUNCH)["CAMERA_TOPICS"]["image_topic"]
    assert f"/camera/{suffix}" == TOPIC_IMAGE == "/camera/image_raw"
    assert outputs.topics[TOPIC_IMAGE] == "Image"


def test_rviz_config_names_only_node_outputs(config, outputs):
    assert config_problems(config, outputs) == []
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    assert [d["Class"] for d in manager["Displays"]] == list(DISPLAY_TYPES)
    assert _topic(_display(config, "rviz_default_plugins/Image")) == "/camera/image_raw"
    assert _topic(_display(config, "rviz_default_plugins/MarkerArray")) == "/hmr_ros/markers"
    assert _topic(_display(config, "rviz_default_plugins/PointCloud2")) == "/hmr_ros/vertices"
    assert all(d["Enabled"] is True for d in manager["Displays"])
    # The comment says where the image topic comes from.
    assert "camera:=/camera" in RVIZ.read_text()


def _set_topic(cls: str, topic: str):
    def edit(c):
        _display(c, cls)["Topic"]["Value"] = topic
    return edit


def _set_class(c):
    _display(c, "rviz_default_plugins/MarkerArray")["Class"] = "rviz_default_plugins/Marker"


def _add_tf_frame(name: str):
    def edit(c):
        _display(c, "rviz_default_plugins/TF")["Frames"][name] = {"Value": True}
    return edit


def _add_tool_topic(c):
    c["Visualization Manager"]["Tools"].append(
        {"Class": "rviz_default_plugins/SetGoal", "Topic": {"Value": "/goal_pose"}})


def _set(path: tuple[str, ...], value):
    def edit(c):
        node = c
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _drop_display(cls: str):
    def edit(c):
        displays = c["Visualization Manager"]["Displays"]
        displays.remove(_display(c, cls))
    return edit


@pytest.mark.parametrize("edit, expected", [
    (_set_topic("rviz_default_plugins/MarkerArray", "/hmr_ros/marker"),
     "topic /hmr_ros/marker is not published"),
    (_set_topic("rviz_default_plugins/MarkerArray", "/markers"),
     "topic /markers is not published"),
    (_set_topic("rviz_default_plugins/Image", "/camera/image"),
     "topic /camera/image is not published"),
    (_set_topic("rviz_default_plugins/PointCloud2", "/hmr_ros/bodies"),
     "/hmr_ros/bodies carries SMPLBodyArray, not PointCloud2"),
    (_set_class, "class 'rviz_default_plugins/Marker' is not one of"),
    (_add_tf_frame("bdy_0"), "frame 'bdy_0' is not broadcast"),
    (_add_tool_topic, "topic /goal_pose is not published"),
    (_set(("Visualization Manager", "Global Options", "Fixed Frame"), "map"),
     "Fixed Frame 'map' is not the outputs' frame 'camera_optical_frame'"),
    (_set(("Visualization Manager", "Views", "Current", "Target Frame"), "base_link"),
     "Target Frame 'base_link' is not broadcast"),
    (_drop_display("rviz_default_plugins/TF"), "no rviz_default_plugins/TF display"),
    (_set(("Visualization Manager", "Displays"), []), "no rviz_default_plugins/Image display"),
])
def test_a_wrong_config_is_rejected(config, outputs, edit, expected):
    bad = copy.deepcopy(config)
    edit(bad)
    problems = config_problems(bad, outputs)
    assert any(expected in p for p in problems), problems


def test_named_node_frames_and_missing_sections(config, outputs):
    # Frames the node does broadcast pass (the frame check is not a blanket rejection) ...
    good = copy.deepcopy(config)
    _add_tf_frame("body_3")(good)
    _add_tf_frame("right_ankle_0")(good)
    _set(("Visualization Manager", "Views", "Current", "Target Frame"), "body_1")(good)
    assert config_problems(good, outputs) == []
    # ... and a config without the sections rviz2 saves is not one.
    bare = {"Visualization Manager": {"Displays": config["Visualization Manager"]["Displays"]}}
    problems = config_problems(bare, outputs)
    for section in ("Panels", "Window Geometry"):
        assert f"no {section} section" in problems
    for section in ("Global Options", "Tools", "Views"):
        assert f"no Visualization Manager/{section}" in problems


# ------------------------------------------------------------------------ launch file


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _keyword(call: ast.Call, name: str) -> ast.expr:
    (value,) = [k.value for k in call.keywords if k.arg == name]
    return value


def _is_call(node: ast.expr, name: str, *args: str) -> bool:
    """`node` is `name(<string constants args>, ...)`."""
    return isinstance(node, ast.Call) and _callee(node) == name and \
        [a.value for a in node.args[:len(args)] if isinstance(a, ast.Constant)] == list(args)


def test_launch_declares_rviz_default_false():
    lits = module_literals(LAUNCH)
    default, text = lits["ARGUMENTS"]["rviz"]
    assert default == "false" and "rviz2" in text
    assert "rviz" not in lits["PARAMETER_ARGUMENTS"]  # not a node parameter
    # Every argument is declared from ARGUMENTS (so `rviz` is too).
    assert "for name, (default, text) in ARGUMENTS.items()" in LAUNCH.read_text()


def test_launch_starts_rviz2_only_with_rviz_true_and_the_installed_config():
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    found = [(name, call) for name, f in functions.items() for call in ast.walk(f)
             if isinstance(call, ast.Call) and _callee(call) == "Node"
             and any(k.arg == "package" and isinstance(k.value, ast.Constant)
                     and k.value.value == "rviz2" for k in call.keywords)]
    assert len(found) == 1, "expected one Node(package='rviz2', ...)"
    ((owner, node),) = found
    assert ast.literal_eval(_keyword(node, "executable")) == "rviz2"
    condition = _keyword(node, "condition")
    assert _is_call(condition, "IfCondition") and \
        _is_call(condition.args[0], "LaunchConfiguration", "rviz")
    arguments = _keyword(node, "arguments")
    assert isinstance(arguments, ast.List) and ast.literal_eval(arguments.elts[0]) == "-d"
    path = arguments.elts[1]
    assert _is_call(path, "PathJoinSubstitution")
    share, *parts = path.args[0].elts
    assert _is_call(share, "FindPackageShare", "hmr_ros")
    parts = [ast.literal_eval(p) for p in parts]
    assert parts == ["config", "hmr_ros.rviz"] and ROOT.joinpath(*parts) == RVIZ
    assert RVIZ.is_file()
    # The function that builds it is part of the launch description.
    generate = functions["generate_launch_description"]
    assert any(_is_call(c, owner) for c in ast.walk(generate)), \
        f"{owner}() is not called in generate_launch_description"


def test_config_folder_is_installed_wholesale():
    # share/hmr_ros/config/hmr_ros.rviz exists after colcon (CMake) and pip (setup.py) alike.
    cmake = (ROOT / "CMakeLists.txt").read_text()
    (folders,) = re.findall(r"foreach\(share_dir ([^)]*)\)", cmake)
    assert "config" in folders.split()
    assert ".rviz" not in cmake  # no pattern excludes it
    setup = module_literals(ROOT / "setup.py")
    assert "config" in setup["DATA_FOLDERS"]
    assert 'Path(folder).rglob("*")' in (ROOT / "setup.py").read_text()
