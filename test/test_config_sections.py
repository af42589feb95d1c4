"""The configuration's sections: small, self-describing, self-validating, and the keys of an
earlier release refused with their new names wherever a key can be given."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from hmr_ros.config import (
    RENAMED,
    AdaptConfig,
    ConfigError,
    PipelineConfig,
    load_config_file,
    replace_path,
    to_flat_dict,
    updated,
)
from hmr_ros.config.coerce import Section, help_texts
from hmr_ros.ros.params import load_parameters, parameter_descriptions


def _sections(cls: type) -> list[type]:
    out = [cls]
    for hint in typing.get_type_hints(cls).values():
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out += _sections(hint)
    return out


def test_every_section_is_small_and_every_field_has_help():
    sections = _sections(PipelineConfig)
    assert len(sections) >= 15
    for cls in sections:
        assert issubclass(cls, Section), cls
        values = [f for f in dataclasses.fields(cls) if f.name not in
                  {g.name for g in dataclasses.fields(cls)
                   if dataclasses.is_dataclass(typing.get_type_hints(cls)[g.name])}]
        assert len(values) <= 15, cls.__name__  # values; nested sections are counted apart
        assert len(dataclasses.fields(cls)) - len(values) <= 10, cls.__name__
    helps = help_texts(PipelineConfig)
    assert set(helps) == set(to_flat_dict(PipelineConfig()))
    missing = [k for k, v in helps.items() if len(v) < 5]
    assert not missing
    # The ROS parameter descriptions are those texts, word for word.
    desc = parameter_descriptions()
    assert desc["adapt.guard.loss_factor"] == helps["adapt.guard.loss_factor"]
    assert "median" in desc["adapt.guard.loss_factor"]


def test_literal_choices_are_checked_with_the_full_key():
    for key, value in (("adapt.flow.preset", "slow"), ("adapt.dapa.pose", "vposer"),
                       ("detector.kind", "yolo"), ("inference.gender", "alien"),
                       ("temporal.branches", "all")):
        with pytest.raises(ConfigError, match=f"{key} must be one of"):
            replace_path(PipelineConfig(), key, value)


def test_sections_validate_their_own_rules_with_full_keys():
    cases = {"adapt.guard.loss_factor": 0.5, "adapt.teacher.decay": 1.0,
             "adapt.worker.thread_nice": 25, "adapt.dapa.batch": 0,
             "detector.hog.every": 0, "detector.tracker.timeout_s": 0.0,
             "adapt.loss.keypoints": -1.0}
    for key, value in cases.items():
        with pytest.raises(ConfigError, match=key.rsplit(".", 1)[0]):
            replace_path(PipelineConfig(), key, value)
    # Related values in one section are checked together, once, whatever their order.
    cfg = updated(AdaptConfig(), {"buffer_frames": 3, "tau": 2})
    assert PipelineConfig(adapt=cfg).adapt.buffer_frames == 3
    with pytest.raises(ConfigError, match="adapt.tau must be >= 1 and adapt.buffer_frames"):
        PipelineConfig(adapt=updated(AdaptConfig(), {"buffer_frames": 3}))


def test_old_keys_are_refused_with_their_new_names(tmp_path):
    assert RENAMED["adapt.dapa_weight"] == "adapt.dapa.weight"
    flat = to_flat_dict(PipelineConfig())
    assert all(new in flat for new in RENAMED.values())
    assert not any(old in flat for old in RENAMED)
    with pytest.raises(ConfigError, match="'adapt.w_flow' was renamed to 'adapt.flow.weight'"):
        replace_path(PipelineConfig(), "adapt.w_flow", 0.1)
    with pytest.raises(ConfigError, match="renamed to 'adapt.replay.count'"):
        replace_path(PipelineConfig(), "adapt.replay", 8)
    with pytest.raises(ConfigError, match="renamed to 'detector.hog.every'"):
        load_parameters({"detector.hog_every": 3})
    path = tmp_path / "c.yaml"
    path.write_text("adapt:\n  guard_loss_factor: 5.0\n")
    with pytest.raises(ConfigError, match="renamed to 'adapt.guard.loss_factor'"):
        load_config_file(str(path))


def test_nested_sections_load_from_yaml_and_ros_parameters(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("adapt:\n  guard: {loss_factor: 5.0}\n  dapa:\n    weight: 0.25\n"
                    "detector.tracker.min_hits: 3\n")
    cfg = load_config_file(str(path))
    assert (cfg.adapt.guard.loss_factor, cfg.adapt.dapa.weight,
            cfg.detector.tracker.min_hits) == (5.0, 0.25, 3)
    ros, _ = load_parameters({"adapt": {"guard": {"loss_factor": 5.0}},
                              "adapt.dapa.weight": 0.25, "detector.tracker.min_hits": 3})
    assert ros == cfg
    with pytest.raises(ConfigError, match="'adapt.guard' is a section"):
        replace_path(PipelineConfig(), "adapt.guard", 3)
