"""Architecture description of an HMR regressor: one frozen dataclass plus named presets.

A `ModelConfig` is everything needed to rebuild a model's layers (not its weights), so it is what
our checkpoints store next to the state dict. It round-trips through plain Python types
(`to_dict`/`from_dict`) so that checkpoints can be read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import HmrRosError

BLOCKS = ("basic", "bottleneck")
NORMS = ("batch", "group")

# Channel multiplier of a block's output relative to its stage width (as in torchvision).
_EXPANSION = {"basic": 1, "bottleneck": 4}


class ModelConfigError(HmrRosError, ValueError):
    """A model configuration is malformed (unknown key, wrong type, out-of-range value)."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    # bool is a subclass of int; `layers=[True, ...]` is certainly a mistake, so reject it.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelConfigError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ModelConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an HMR model (ResNet backbone + iterative regression head).

    Defaults are those of SPIN's HMR except `norm`, which defaults to BOA's GroupNorm because the
    online adaptation runs at batch size 1, where BatchNorm statistics are meaningless.

    Fields:
        name: free-form identifier (preset name or a user's own).
        block: 'basic' (ResNet-18/34 style) or 'bottleneck' (ResNet-50 style).
        layers: number of blocks in each of the 4 stages, e.g. (3, 4, 6, 3) for ResNet-50.
        width: channels of the first stage (64 for a standard ResNet); stage i has width * 2**i.
        norm: 'batch' (BatchNorm2d, SPIN) or 'group' (GroupNorm, BOA).
        gn_groups: number of groups for GroupNorm (BOA uses 4).
        head_hidden: width of the regression head's two hidden layers (1024 in SPIN).
        n_iter: iterative error feedback steps (3 in SPIN).
        input_size: side of the square RGB crop in pixels that the model expects.
        dropout: dropout probability in the regression head (0.5 in SPIN).
    """

    name: str
    block: str = "bottleneck"
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    width: int = 64
    norm: str = "group"
    gn_groups: int = 4
    head_hidden: int = 1024
    n_iter: int = 3
    input_size: int = 224
    dropout: float = 0.5

    def __post_init__(self) -> None:
        # Validating here (rather than only in from_dict) also covers dataclasses.replace().
        if not isinstance(self.name, str) or not self.name:
            raise ModelConfigError(f"name must be a non-empty str, got {self.name!r}")
        if self.block not in BLOCKS:
            raise ModelConfigError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.norm not in NORMS:
            raise ModelConfigError(f"norm must be one of {NORMS}, got {self.norm!r}")
        layers = self.layers
        if not isinstance(layers, (tuple, list)) or len(layers) != 4:
            raise ModelConfigError(f"layers must be a sequence of 4 ints, got {layers!r}")
        for i, n in enumerate(layers):
            _check_int(f"layers[{i}]", n, 1)
        # Accept lists (e.g. from JSON/YAML) but store a tuple so the config stays hashable.
        object.__setattr__(self, "layers", tuple(layers))
        _check_int("width", self.width, 1)
        _check_int("gn_groups", self.gn_groups, 1)
        _check_int("head_hidden", self.head_hidden, 1)
        _check_int("n_iter", self.n_iter, 1)
        # The backbone downsamples by 32; anything smaller collapses to nothing useful.
        _check_int("input_size", self.input_size, 32)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ModelConfigError(f"dropout must be a float, got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.norm == "group":
            for c in self.norm_channels:
                if c % self.gn_groups:
                    raise ModelConfigError(
                        f"gn_groups={self.gn_groups} does not divide {c} channels "
                        f"(width={self.width}, block={self.block!r})"
                    )

    @property
    def expansion(self) -> int:
        """Output channels of a block divided by its stage width (1 basic, 4 bottleneck)."""
        return _EXPANSION[self.block]

    @property
    def feature_dim(self) -> int:
        """Length of the pooled backbone feature (2048 for ResNet-50, 8 * width for basic)."""
        return 8 * self.width * self.expansion

    @property
    def norm_channels(self) -> tuple[int, ...]:
        """Every distinct channel count that a normalisation layer sees."""
        chans = {self.width}
        for i in range(4):
            w = self.width * 2**i
            chans.update((w, w * self.expansion))
        return tuple(sorted(chans))

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (lists, not tuples) that `torch.load(weights_only=True)` accepts."""
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`. Missing keys take the defaults; unknown keys are an error.

        Raises ModelConfigError naming the offending keys or values.
        """
        if not isinstance(data, Mapping):
            raise ModelConfigError(f"model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ModelConfigError(
                f"unknown model config key(s) {unknown}; known keys are {sorted(known)}"
            )
        if "name" not in data:
            raise ModelConfigError("model config is missing the required key 'name'")
        return cls(**dict(data))


def _presets() -> dict[str, ModelConfig]:
    r50 = ModelConfig(name="hmr_r50")
    small = ModelConfig(
        name="hmr_small",
        block="basic",
        layers=(2, 2, 2, 2),
        width=32,
        head_hidden=512,
        input_size=128,
    )
    tiny = ModelConfig(
        name="hmr_tiny",
        block="basic",
        layers=(1, 1, 1, 1),
        width=16,
        head_hidden=128,
        input_size=64,
    )
    return {c.name: c for c in (r50, small, tiny)}


PRESETS: Mapping[str, ModelConfig] = MappingProxyType(_presets())
"""Named architectures:

- `hmr_r50`: SPIN/BOA's ResNet-50 HMR at 224 px (~27M parameters). GroupNorm by default; get the
  BatchNorm (SPIN) variant with `get_preset("hmr_r50", norm="batch")`.
- `hmr_small`: half-width ResNet-18 at 128 px, head 512 (~3M parameters), for CPU use.
- `hmr_tiny`: one block per stage, width 16, 64 px; for fast tests only.
"""


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset called `name`, optionally with fields replaced (e.g. `norm="batch"`).

    Raises ModelConfigError for an unknown preset name or an invalid override.
    """
    try:
        config = PRESETS[name]
    except KeyError:
        raise ModelConfigError(f"unknown model preset {name!r}; known: "
                               f"{sorted(PRESETS)}") from None
    if overrides:
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ModelConfigError(f"unknown model config key(s) {unknown} in overrides")
        config = dataclasses.replace(config, **overrides)
    return config
