"""Typed configuration sections and THE coercion of their values.

A section is a frozen dataclass whose fields carry their help text in `metadata["help"]`
(`option(...)`) and whose `Literal[...]` annotations are its choices. `Section.check` validates
a section and the sections inside it, naming every key by its full `section.field` path;
`coerce_value` turns a value from YAML, `--set` or a ROS parameter into the field's type.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from dataclasses import field
from typing import Any

from ..errors import HmrRosError


class ConfigError(HmrRosError, ValueError):
    """Unknown key or bad value in a configuration."""


def option(default: Any, help: str) -> Any:
    """A section field with its default and its one-line help text (ROS parameter
    descriptions, docs/ros.md and `--help` texts read it)."""
    return field(default=default, metadata={"help": help})


def section(cls: type, help: str) -> Any:
    """A field holding a nested section (its own defaults), with its help text."""
    return field(default_factory=cls, metadata={"help": help})


@functools.cache
def choices(cls: type) -> dict[str, tuple]:
    """{field name: allowed values} of the `Literal[...]` fields of a section class."""
    hints = typing.get_type_hints(cls)
    return {name: typing.get_args(hint) for name, hint in hints.items()
            if typing.get_origin(hint) is typing.Literal}


class Section:
    """Base of the configuration sections: `check(prefix)` validates the fields' finiteness
    and choices, then the section's own rules (`validate`), then its nested sections."""

    def validate(self, prefix: str) -> None:
        """The section's own rules; raise ConfigError naming `prefix + field`."""

    def check(self, prefix: str = "") -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            key = prefix + f.name
            if isinstance(value, Section):
                continue
            # NaN passes every comparison in `validate` and inf makes every step roll back.
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value}")
            allowed = choices(type(self)).get(f.name)
            if allowed is not None and value not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
        self.validate(prefix)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Section):
                value.check(f"{prefix}{f.name}.")


def help_texts(cls: type, prefix: str = "") -> dict[str, str]:
    """{'section.field': help} for every leaf of a section class."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints.get(f.name)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            out.update(help_texts(kind, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = f.metadata.get("help", "")
    return out


def coerce_value(name: str, default: Any, value: Any) -> Any:
    """`value` as the type of `default`, or ConfigError naming `name`: THE coercion of every
    configuration value, whether it came from a YAML config file, `--set key=value` (both read
    as YAML by PyYAML, so YAML 1.1 rules apply before this), a ROS params file or a ROS
    parameter (typed by ROS). The type of the field's default decides:

    - bool field: only true/false (`bool`). Refused: 1/0, "true"/"yes" as quoted strings,
      None -> "NAME: expected true/false, got VALUE". (YAML itself reads unquoted yes/no/on/off
      as booleans.)
    - int field: an integer (`int` or any `numbers.Integral`, not bool). Refused: 4.0, "4",
      True, None -> "NAME: expected an integer, got VALUE".
    - float field: an integer or a real number, or a string that Python's `float()` reads
      (YAML 1.1 reads `1e-5`, without a dot, as the string "1e-5"), surrounding blanks
      allowed. Refused: bools, None, "", other strings -> "NAME: expected a number, got
      VALUE"; NaN and +-inf however written (.nan, "nan", float("inf"), "-inf") -> "NAME must
      be a finite number, got VALUE" (NaN passes every range check and inf made every
      adaptation step roll back silently).
    - str field: a string, "" included. Refused: None (an empty YAML value: write "" for an
      empty string) and non-strings -> "NAME: expected a string, got VALUE".
    - tuple field: a list or tuple, kept as a tuple (elements unchecked). Refused:
      anything else -> "NAME: expected a list, got VALUE".
    """
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        return _coerce_float(name, value)
    if isinstance(default, str):
        if not isinstance(value, str):
            hint = ' (write "" for an empty string)' if value is None else ""
            raise ConfigError(f"{name}: expected a string, got {value!r}{hint}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{name}: unsupported type {type(default).__name__}")


def _coerce_float(name: str, value: Any) -> float:
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range: as infinite as "1e400"
            number = math.inf
    if number is None:
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return number
