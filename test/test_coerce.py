"""One coercion of configuration values (hmr_ros.config.coerce_value): a YAML config file,
`--set key=value` and the ROS parameters (a params file, or typed values as the node reads
them; core and node-only parameters) turn the same input into the same value or the same
ConfigError."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmr_ros.cli import _config, build_parser
from hmr_ros.config import (
    ConfigError,
    PipelineConfig,
    coerce_value,
    load_config_file,
    replace_path,
    to_flat_dict,
)
from hmr_ros.ros.params import (
    NodeConfig,
    check_update,
    load_parameters,
    node_defaults,
    read_params_file,
)

# One core field and one node-only field of each type, with no range check that the table's
# values could trip (the table is about types, test_ros_params.py about ranges).
FIELDS = {
    "float": ("inference.keypoint_threshold", "keypoints_tolerance"),
    "int": ("inference.min_keypoints", "image_buffer"),
    "bool": ("inference.vertices", "publish_tf"),
    "str": ("inference.weights", "model_name"),
}
ERROR = {"float": "expected a number", "int": "expected an integer",
         "bool": "expected true/false", "str": "expected a string"}
FINITE = "must be a finite number"

# (field type, the value as written in YAML, the value every path gives or the error's words)
YAML_TABLE = [
    ("float", "0.5", 0.5),
    ("float", "1e-5", 1e-5),  # YAML 1.1: a string; read as the number it spells
    ("float", "1.5e-3", 1.5e-3),
    ("float", "'0.25'", 0.25),
    ("float", "2", 2.0),
    ("float", "0", 0.0),
    ("float", ".nan", FINITE),
    ("float", ".inf", FINITE),
    ("float", "nan", FINITE),
    ("float", "'-inf'", FINITE),
    ("float", "1e400", FINITE),
    ("float", "abc", ERROR["float"]),
    ("float", "true", ERROR["float"]),
    ("float", "''", ERROR["float"]),
    ("float", "", ERROR["float"]),  # empty YAML value: None
    ("float", "[0.5]", ERROR["float"]),
    ("int", "4", 4),
    ("int", "0x10", 16),
    ("int", "4.0", ERROR["int"]),
    ("int", "'4'", ERROR["int"]),
    ("int", "1e3", ERROR["int"]),
    ("int", "true", ERROR["int"]),
    ("int", "", ERROR["int"]),
    ("bool", "true", True),
    ("bool", "False", False),
    ("bool", "yes", True),  # YAML 1.1 booleans (ROS' own params parser reads them too)
    ("bool", "off", False),
    ("bool", "1", ERROR["bool"]),
    ("bool", "0", ERROR["bool"]),
    ("bool", "'true'", ERROR["bool"]),
    ("bool", "", ERROR["bool"]),
    ("str", "/w.pt", "/w.pt"),
    ("str", "''", ""),
    ("str", "'3'", "3"),
    ("str", "3", ERROR["str"]),
    ("str", "true", ERROR["str"]),
    ("str", "", ERROR["str"]),
    ("str", "[a]", ERROR["str"]),
]

# Typed values, as a ROS parameter, a Python caller or a flat dict hands them over.
VALUE_TABLE = [
    ("float", 0.5, 0.5),
    ("float", 3, 3.0),
    ("float", " 1e-5 ", 1e-5),
    ("float", "1_000.5", 1000.5),
    ("float", float("nan"), FINITE),
    ("float", -math.inf, FINITE),
    pytest.param("float", 10 ** 400, FINITE, id="float-10**400-finite"),
    ("float", "inf", FINITE),
    ("float", True, ERROR["float"]),
    ("float", None, ERROR["float"]),
    ("float", "", ERROR["float"]),
    ("float", [1.0], ERROR["float"]),
    ("int", 7, 7),
    ("int", 7.0, ERROR["int"]),
    ("int", "7", ERROR["int"]),
    ("int", False, ERROR["int"]),
    ("int", None, ERROR["int"]),
    ("bool", True, True),
    ("bool", False, False),
    ("bool", 1, ERROR["bool"]),
    ("bool", "true", ERROR["bool"]),
    ("bool", "no", ERROR["bool"]),
    ("bool", None, ERROR["bool"]),
    ("str", "x", "x"),
    ("str", "", ""),
    ("str", None, ERROR["str"]),
    ("str", 3, ERROR["str"]),
    ("str", b"x", ERROR["str"]),
]


def _outcome(fn):
    """The value `fn()` returns, or ("error", message)."""
    try:
        return fn()
    except ConfigError as err:
        return ("error", str(err))


def _via_config_file(tmp: Path, key: str, text: str):
    path = tmp / "config.yaml"
    path.write_text(f"{key}: {text}\n")
    return _outcome(lambda: to_flat_dict(load_config_file(str(path)))[key])


def _via_set(key: str, text: str):
    args = build_parser().parse_args(["replay", "in", "--out", "out", "--set", f"{key}={text}"])
    return _outcome(lambda: to_flat_dict(_config(args))[key])


def _via_params_file(tmp: Path, key: str, text: str):
    path = tmp / "params.yaml"
    path.write_text(f"hmr_ros:\n  ros__parameters:\n    {key}: {text}\n")
    return _outcome(lambda: _loaded(read_params_file(path), key))


def _loaded(values: dict, key: str):
    pipeline, node = load_parameters(values)
    return to_flat_dict(pipeline)[key] if "." in key else getattr(node, key)


def _check(outcome, expected, key: str) -> None:
    """`outcome` is the value `expected`, or a one-line ConfigError naming `key` when
    `expected` is the words of an error."""
    if isinstance(expected, str) and expected in (FINITE, *ERROR.values()):
        assert isinstance(outcome, tuple) and outcome[0] == "error", outcome
        assert key in outcome[1] and expected in outcome[1], outcome
        assert "\n" not in outcome[1]
    else:
        assert outcome == expected and type(outcome) is type(expected), (outcome, expected)


def _error_text(outcome, key: str) -> object:
    """The outcome with the field's name taken out, so that a core and a node field's errors
    compare equal."""
    if isinstance(outcome, tuple):
        return ("error", outcome[1].replace(key, "NAME"))
    return outcome


@pytest.mark.parametrize("kind, text, expected", YAML_TABLE)
def test_yaml_text_gives_the_same_result_through_every_path(tmp_path, kind, text, expected):
    core, node = FIELDS[kind]
    outcomes = {
        "config file": _via_config_file(tmp_path, core, text),
        "--set": _via_set(core, text),
        "ROS params file (core)": _via_params_file(tmp_path, core, text),
    }
    for outcome in outcomes.values():
        _check(outcome, expected, core)
    node_outcome = _via_params_file(tmp_path, node, text)
    _check(node_outcome, expected, node)
    # Not only the same kind of outcome: the same value, or the same message.
    seen = {_error_text(o, core) for o in outcomes.values()} | {_error_text(node_outcome, node)}
    assert len(seen) == 1, seen


@pytest.mark.parametrize("kind, value, expected", VALUE_TABLE)
def test_typed_values_give_the_same_result_through_every_path(kind, value, expected):
    core, node = FIELDS[kind]
    outcomes = {
        "replace_path": (core, _outcome(
            lambda: to_flat_dict(replace_path(PipelineConfig(), core, value))[core])),
        "ROS parameters (core)": (core, _outcome(lambda: _loaded({core: value}, core))),
        "ROS parameters (node)": (node, _outcome(lambda: _loaded({node: value}, node))),
        "coerce_value": (core, _outcome(
            lambda: coerce_value(core, to_flat_dict(PipelineConfig())[core], value))),
    }
    for key, outcome in outcomes.values():
        _check(outcome, expected, key)
    assert len({_error_text(o, k) for k, o in outcomes.values()}) == 1, outcomes


def test_run_time_updates_use_the_same_coercion():
    pipeline, node = PipelineConfig(), NodeConfig()
    _, n2 = check_update("marker_rate", "2e1", pipeline, node)
    assert n2.marker_rate == 20.0
    for value in (float("nan"), "inf"):
        with pytest.raises(ConfigError, match=f"marker_rate {FINITE}"):
            check_update("marker_rate", value, pipeline, node)
    with pytest.raises(ConfigError, match="adapt.enabled: expected true/false, got 1"):
        check_update("adapt.enabled", 1, pipeline, node)


def test_node_floats_refuse_non_finite_values_the_range_checks_let_through():
    """NaN passes `keypoints_tolerance < 0` and inf passes `marker_rate > 0`; both were
    accepted before the coercion was shared."""
    with pytest.raises(ConfigError, match=f"keypoints_tolerance {FINITE}, got nan"):
        load_parameters({"keypoints_tolerance": float("nan")})
    with pytest.raises(ConfigError, match=f"marker_rate {FINITE}, got inf"):
        load_parameters({"marker_rate": math.inf})


def test_errors_name_the_full_key_and_hint_at_empty_strings():
    with pytest.raises(ConfigError) as err:
        replace_path(PipelineConfig(), "adapt.inner_mode", None)
    assert str(err.value) == 'adapt.inner_mode: expected a string, got None (write "" for ' \
                             'an empty string)'
    with pytest.raises(ConfigError, match=r"unknown config key 'adapt\.nope'"):
        replace_path(PipelineConfig().adapt, "nope", 1, prefix="adapt.")
    assert coerce_value("x", (1, 2), [3]) == (3,)
    with pytest.raises(ConfigError, match="x: expected a list"):
        coerce_value("x", (1, 2), "3")


def test_every_field_keeps_its_type():
    """Each field's default, written back through every path, is itself (types included)."""
    values = {**to_flat_dict(PipelineConfig()), **node_defaults()}
    for key, default in values.items():
        assert coerce_value(key, default, default) == default
        assert type(coerce_value(key, default, default)) is type(default)


# ------------------------------------------------------------------------ properties

FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(x=FINITE_FLOATS)
def test_any_float_printed_with_repr_round_trips_through_every_path(tmp_path_factory, x):
    tmp = tmp_path_factory.mktemp("repr")
    key = "inference.keypoint_threshold"  # no range check: any finite float is valid
    text = repr(x)
    for outcome in (_via_config_file(tmp, key, text), _via_set(key, text),
                    _via_params_file(tmp, key, text), _loaded({key: text}, key),
                    _loaded({key: x}, key)):
        assert isinstance(outcome, float) and outcome == x, (text, outcome)
        assert math.copysign(1.0, outcome) == math.copysign(1.0, x)  # -0.0 stays -0.0
    # A node float (keypoints_tolerance >= 0) gives the same value for |x|.
    assert _via_params_file(tmp, "keypoints_tolerance", repr(abs(x))) == abs(x)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_any_integer_round_trips_through_every_path(tmp_path_factory, n):
    tmp = tmp_path_factory.mktemp("int")
    key = "inference.min_keypoints"
    for outcome in (_via_config_file(tmp, key, str(n)), _via_set(key, str(n)),
                    _via_params_file(tmp, key, str(n)), _loaded({key: n}, key)):
        assert outcome == n and type(outcome) is int
    # The same integer for a float field is that float.
    assert _via_set("inference.keypoint_threshold", str(n)) == float(n)
