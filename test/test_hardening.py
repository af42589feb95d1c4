"""Bad input gets a clear error or a counted skip, never a traceback or a silent wrong
answer (issue 13): configuration files and values, strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hmr_ros import jsonio
from hmr_ros.cli import main
from hmr_ros.config import ConfigError, PipelineConfig, load_config_file, replace_path


@pytest.mark.parametrize("text,match", [
    ("adapt: {method: boa_1st\n", r"not valid YAML \(line \d+, column \d+\)"),
    ("adapt:\n  method: [boa\n", "not valid YAML"),
    ("- adapt.method: boa_1st\n- 3\n", "expected a mapping .* found a list"),
    ("42\n", "found a int"),
    ("adapt.nope: 1\n", "unknown config key"),
])
def test_bad_config_files_give_one_line_config_errors(tmp_path, text, match, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config_file(str(path))
    assert "\n" not in str(info.value)
    # Through the command line: exit status 2 and one line on stderr, no traceback.
    assert main(["replay", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hmr-ros replay: error: ") and err.count("\n") == 1, err
    assert str(path) in err or "unknown config key" in err


def test_empty_config_file_is_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert load_config_file(str(path)) == PipelineConfig()


@pytest.mark.parametrize("key", ["adapt.outer_lr", "adapt.inner_lr"])
@pytest.mark.parametrize("value", [-1e-3, 0.0, float("nan"), float("inf"), "nan", "-inf"])
def test_learning_rates_must_be_positive_and_finite(key, value):
    """A negative or NaN outer_lr gave torch's traceback; inf inner_lr made every step roll
    back with nobody told why."""
    with pytest.raises(ConfigError, match=key.split(".")[1] + "|finite"):
        replace_path(PipelineConfig(), key, value)


def test_every_float_setting_must_be_finite():
    for key in ("inference.box_scale", "adapt.w_keypoints", "detector.timeout_s",
                "adapt.guard_disagreement"):
        with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
            replace_path(PipelineConfig(), key, float("nan"))
    with pytest.raises(ConfigError, match="max_consecutive_rollbacks"):
        replace_path(PipelineConfig(), "adapt.max_consecutive_rollbacks", 0)


def test_set_value_that_is_not_yaml_is_a_config_error(tmp_path, capsys):
    from hmr_ros.config import parse_value

    with pytest.raises(ConfigError, match="cannot read value"):
        parse_value("[1, 2")


def test_strict_json_writes_null_for_non_finite():
    payload = {"a": float("nan"), "b": [1.0, float("inf"), np.float32("nan")],
               "c": np.arange(3), "d": (np.int64(4), True), "e": {"f": -math.inf}}
    text = jsonio.dumps(payload)
    assert json.loads(text) == {"a": None, "b": [1.0, None, None], "c": [0, 1, 2],
                                "d": [4, True], "e": {"f": None}}
    from hmr_ros.bench.timing import write_json

    path = write_json(__import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "m.json",
                      payload)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
