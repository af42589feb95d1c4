"""ROS parameters -> typed configs (hmr_ros/ros/params.py), the params YAML and the launch
files, checked without ROS: every name they use must exist (no silent typos)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from micro import module_literals

from hmr_ros.config import ConfigError, PipelineConfig, to_flat_dict
from hmr_ros.ros.params import (
    DYNAMIC,
    NodeConfig,
    check_update,
    is_ros_builtin,
    load_parameters,
    markdown_table,
    node_defaults,
    parameter_defaults,
    parameter_descriptions,
    read_params_file,
    unknown_names,
)

ROOT = Path(__file__).resolve().parents[1]
# A core parameter name as written in code or docs: quoted or in backticks.
# (file names such as adapt.yaml and adapt.launch.py are not parameters).
CORE_NAME = re.compile(
    r"(?<=[`\"'])(?:inference|adapt)\.(?!yaml\b|launch\b|py\b)[a-z_0-9]+(?=[`\"'])")


def test_defaults_map_to_default_configs():
    pipeline, node = load_parameters({})
    assert pipeline == PipelineConfig() and node == NodeConfig()
    assert load_parameters(parameter_defaults()) == (PipelineConfig(), NodeConfig())


def test_every_core_field_is_a_parameter():
    assert set(to_flat_dict(PipelineConfig())) <= set(parameter_defaults())
    assert not set(node_defaults()) & set(to_flat_dict(PipelineConfig()))


def test_flat_and_nested_names_and_types():
    pipeline, node = load_parameters({
        "inference": {"fallback_focal": 600, "weights": "/w.pt"},  # int for a float is fine
        "adapt.method": "boa_1st", "adapt.enabled": False,
        "marker_rate": 2, "image_transport": "compressed", "image_topic": "/cam/image",
        "use_sim_time": True, "qos_overrides./tf.publisher.depth": 10,  # ROS' own: ignored
    })
    assert pipeline.inference.fallback_focal == 600.0
    assert isinstance(pipeline.inference.fallback_focal, float)
    assert pipeline.inference.weights == "/w.pt" and pipeline.adapt.method == "boa_1st"
    assert pipeline.adapt.enabled is False
    assert node.marker_rate == 2.0 and isinstance(node.marker_rate, float)
    assert node.image_subscription_topic == "/cam/image/compressed"


@pytest.mark.parametrize("values, words", [
    ({"inference.fallback_focal": "abc"}, ["inference.fallback_focal", "number"]),
    ({"inference.max_people": 2.5}, ["inference.max_people", "integer"]),
    ({"adapt.enabled": "yes"}, ["adapt.enabled", "true/false"]),
    ({"publish_tf": 1}, ["publish_tf", "true/false"]),
    ({"image_qos_depth": 1.5}, ["image_qos_depth", "integer"]),
    ({"keypoints_topic": 3}, ["keypoints_topic", "string"]),
    ({"marker_rate": True}, ["marker_rate", "number"]),
])
def test_wrong_types_are_rejected_naming_the_parameter(values, words):
    with pytest.raises(ConfigError) as err:
        load_parameters(values)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("values, words", [
    ({"adapt.method": "boa_3rd"}, ["adapt.method"]),
    ({"image_transport": "jpeg"}, ["image_transport", "raw", "compressed"]),
    ({"image_qos": "fast"}, ["image_qos", "sensor_data"]),
    ({"marker_rate": 0.0}, ["marker_rate", "> 0"]),
    ({"keypoints_tolerance": -0.1}, ["keypoints_tolerance"]),
    ({"image_buffer": 0}, ["image_buffer", ">= 1"]),
    ({"image_topic": " "}, ["image_topic", "empty"]),
    ({"marker_alpha": 2.0}, ["marker_alpha"]),
])
def test_invalid_values_are_rejected(values, words):
    with pytest.raises(ConfigError) as err:
        load_parameters(values)
    for w in words:
        assert w in str(err.value)


def test_unknown_names_are_rejected_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        load_parameters({"inference.fallback_focl": 500.0, "publish_markrs": True})
    text = str(err.value)
    assert "'inference.fallback_focl' (did you mean 'inference.fallback_focal'" in text
    assert "'publish_markrs' (did you mean 'publish_markers'" in text
    with pytest.raises(ConfigError, match="unknown parameter"):
        load_parameters({"inference": {"not_a_field": 1}})
    assert unknown_names(["use_sim_time", "qos_overrides./x.reliability", "x"]) == ["x"]
    assert is_ros_builtin("start_type_description_service")


def test_related_core_values_in_any_order():
    pipeline, _ = load_parameters({"adapt.tau": 20, "adapt.buffer_frames": 24})
    assert (pipeline.adapt.tau, pipeline.adapt.buffer_frames) == (20, 24)
    with pytest.raises(ConfigError, match="buffer_frames >= tau"):
        load_parameters({"adapt.tau": 20})


def test_run_time_updates():
    pipeline, node = PipelineConfig(), NodeConfig()
    p2, n2 = check_update("marker_rate", 10, pipeline, node)
    assert n2.marker_rate == 10.0 and p2 == pipeline
    p3, _ = check_update("adapt.enabled", False, pipeline, node)
    assert p3.adapt.enabled is False
    with pytest.raises(ConfigError, match="read at start only"):
        check_update("image_topic", "/x", pipeline, node)
    with pytest.raises(ConfigError, match="read at start only"):
        check_update("adapt.method", "joint", pipeline, node)
    with pytest.raises(ConfigError, match="unknown parameter"):
        check_update("marker_rat", 1.0, pipeline, node)
    with pytest.raises(ConfigError, match="true/false"):
        check_update("publish_tf", "no", pipeline, node)
    assert check_update("use_sim_time", True, pipeline, node) == (pipeline, node)
    assert DYNAMIC <= set(parameter_defaults())


def test_every_parameter_has_a_description():
    desc = parameter_descriptions()
    assert set(desc) == set(parameter_defaults())
    missing = [k for k, v in desc.items() if not v.strip()]
    assert not missing, f"describe these (a comment in hmr_ros/config.py or params.py): {missing}"


# ------------------------------------------------------------------------ params YAML


def test_params_yaml_names_exist_and_load():
    values = read_params_file(ROOT / "config" / "adapt.yaml")
    assert not unknown_names(values), unknown_names(values)
    pipeline, node = load_parameters(values)
    assert node.keypoints_topic == "/camera/keypoints"
    assert pipeline.adapt.method == "boa_2nd"


def test_params_yaml_values_are_the_defaults_except_topics():
    """The YAML says its values are the defaults (only the topics follow camera names, and
    a live camera runs HOG in its own thread where replays of files keep it inline)."""
    values = read_params_file(ROOT / "config" / "adapt.yaml")
    defaults = parameter_defaults()
    differ = {k: v for k, v in values.items() if v != defaults[k]}
    assert set(differ) == {"image_topic", "camera_info_topic", "keypoints_topic",
                           "detector.hog.thread"}, differ


def test_params_file_reader(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("other_node:\n  ros__parameters:\n    x: 1\n"
                    "/robot/hmr_ros:\n  ros__parameters:\n    adapt: {enabled: false}\n")
    assert read_params_file(path) == {"adapt.enabled": False}
    path.write_text("hmr_ros:\n  params: {}\n")
    with pytest.raises(ConfigError, match="no ros__parameters"):
        read_params_file(path)
    path.write_text("other:\n  ros__parameters: {}\n")
    with pytest.raises(ConfigError, match="no '/\\*\\*' or 'hmr_ros' entry"):
        read_params_file(path)


# ------------------------------------------------------------------------ launch files


def test_adapt_launch_parameters_exist():
    path = ROOT / "launch" / "adapt.launch.py"
    lits = module_literals(path)
    args, mapping = lits["ARGUMENTS"], lits["PARAMETER_ARGUMENTS"]
    known = parameter_defaults()
    for arg, param in mapping.items():
        assert arg in args, f"{arg} maps to a parameter but is not a launch argument"
        assert param in known or is_ros_builtin(param), f"{arg} -> unknown parameter {param}"
    assert set(lits["CAMERA_TOPICS"]) <= set(mapping)
    assert {"camera", "params_file", "weights", "keypoints_topic", "adapt",
            "use_sim_time"} <= set(args)
    for name in CORE_NAME.findall(path.read_text()):  # any core name written anywhere
        assert name in known, f"{path.name} names unknown parameter {name}"
    assert "generate_launch_description" in path.read_text()


def test_eval_launch_forwards_only_real_arguments():
    adapt = module_literals(ROOT / "launch" / "adapt.launch.py")["ARGUMENTS"]
    path = ROOT / "launch" / "eval_bag.launch.py"
    lits = module_literals(path)
    assert set(lits["FORWARDED"]) <= set(adapt)
    assert {"bag", "out", "rate"} <= set(lits["ARGUMENTS"])
    assert "ros2', 'bag', 'record" not in path.read_text()  # sanity: list form below
    text = path.read_text()
    assert '"record", "-s", "mcap"' in text and '"--clock"' in text
    for name in CORE_NAME.findall(text):
        assert name in parameter_defaults()


# ------------------------------------------------------------------------ documentation


def test_docs_list_every_parameter_with_its_default():
    text = (ROOT / "docs" / "ros.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in markdown_table().splitlines()[2:]}
    for name, line in rows.items():
        prefix = "|".join(line.split("|")[:3])  # "| `name` | `default`"
        assert prefix in text, f"docs/ros.md lacks the row of {name}: paste the output of " \
                               "`python -m hmr_ros.ros.params`"
    for name in CORE_NAME.findall(text):
        assert name in parameter_defaults(), f"docs/ros.md names unknown parameter {name}"


def _readme_ros_commands() -> list[str]:
    """The `ros2 ...` and `hmr-ros ...` lines of README's "ROS 2 without a ROS install"."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### ROS 2 without a ROS install"):]
    block = section[section.index("```bash"):].split("```")[1]
    return [line.split("#")[0].strip() for line in block.splitlines()
            if line.startswith(("ros2 ", "hmr-ros "))]


def test_readme_ros_commands_each_run_in_a_test():
    """Each command README shows for the ROS workspace appears, as an argument list, in the
    ROS suite's command-line tests (`ros2 launch hmr_ros FILE`: FILE through `ros2 launch`)."""
    tests = "".join((ROOT / "test" / name).read_text()
                    for name in ("test_ros_cli.py", "test_ros_eval_bag.py"))
    commands = _readme_ros_commands()
    assert len(commands) >= 10, commands
    for command in commands:
        words = command.split()
        if words[:3] == ["ros2", "launch", "hmr_ros"]:
            assert f'Launched("{words[3]}"' in tests and "ros2=True" in tests, command
        elif words[0] == "hmr-ros":
            assert f'_hmr_ros("{words[1]}"' in tests, command
        else:
            verb = ", ".join(f'"{w}"' for w in words[1:4 if words[1] == "run" else 3])
            assert verb in tests, f"{command}: no {verb} in the ROS command-line tests"
