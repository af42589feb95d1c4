"""Import public HMR checkpoints (SPIN, BOA) into our `hmr_r50` model.

Both are torch.save'd dicts with the state dict under `"model"`:
- SPIN (`data/model_checkpoint.pt`): BatchNorm ResNet-50; keys with or without `module.`.
- BOA base model: the same network with every BatchNorm replaced by GroupNorm(4); keys carry the
  `module.` prefix of DataParallel.
A bare state dict is accepted as well. Keys must match exactly after removing the prefix; any
difference raises CheckpointKeyError naming the keys, since a silently partial load would give
plausible-looking but wrong meshes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .checkpoint import CheckpointError, load_state_dict_checked, read_checkpoint_file
from .config import ModelConfig, get_preset
from .hmr import HMR

_PREFIXES = ("module.",)
# Keys that only BatchNorm has: their presence or absence tells the two layouts apart.
_BN_ONLY = ("running_mean", "running_var")

Source = str | os.PathLike[str] | Mapping[str, Any]


def _extract_state_dict(src: Source, map_location: Any) -> tuple[dict[str, Any], str]:
    """Return (state dict with prefixes stripped, description of the source for messages)."""
    if isinstance(src, Mapping):
        obj: Any = src
        where = "checkpoint dict"
    else:
        obj = read_checkpoint_file(src, map_location)
        where = str(src)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict, got {type(obj).__name__}")
    for key in ("model", "state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    else:
        if not obj or not all(isinstance(v, Tensor) for v in obj.values()):
            raise CheckpointError(
                f"{where}: neither a state dict nor a checkpoint with one under 'model' "
                f"(top-level keys: {sorted(map(str, obj))[:10]})"
            )
    out: dict[str, Any] = {}
    for key, value in obj.items():
        key = str(key)
        for prefix in _PREFIXES:
            # SPIN saved some checkpoints from DataParallel and some not: accept both.
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if key in out:
            raise CheckpointError(f"{where}: key {key!r} appears both with and without prefix")
        out[key] = value
    return out, where


def _has_bn_stats(state_dict: Mapping[str, Any]) -> bool:
    return any(k.rsplit(".", 1)[-1] in _BN_ONLY for k in state_dict)


def _import(
    src: Source,
    config: ModelConfig,
    *,
    layout: str,
    map_location: Any,
) -> HMR:
    state_dict, where = _extract_state_dict(src, map_location)
    hints = []
    has_bn = _has_bn_stats(state_dict)
    if config.norm == "group" and has_bn:
        hints.append(
            "the checkpoint has BatchNorm statistics (running_mean/running_var): it looks like a "
            "SPIN (BatchNorm) checkpoint; use import_spin for it"
        )
    elif config.norm == "batch" and not has_bn and "bn1.weight" in state_dict:
        hints.append(
            "the checkpoint has normalisation weights but no running statistics: it looks like a "
            "BOA (GroupNorm) checkpoint; use import_boa for it"
        )
    if "init_pose" not in state_dict and "fc1.weight" not in state_dict:
        hints.append(
            f"no HMR head keys (init_pose, fc1.weight) found; is this a {layout} HMR checkpoint? "
            f"first keys: {list(state_dict)[:5]}"
        )
    model = HMR(config)
    load_state_dict_checked(model, state_dict, source=f"{where} ({layout} import)", hints=hints)
    model.eval()
    return model


def import_spin(
    src: Source,
    *,
    config: ModelConfig | None = None,
    map_location: Any = "cpu",
) -> HMR:
    """Build `hmr_r50` with BatchNorm and load SPIN's weights (path, checkpoint or state dict).

    `config` overrides the architecture (default: hmr_r50 with norm='batch'). The model is
    returned in eval mode. Files are read with weights_only=True (tensors and plain types).
    Raises CheckpointKeyError if keys or shapes differ; CheckpointError for unreadable input.
    """
    cfg = config if config is not None else get_preset("hmr_r50", norm="batch")
    return _import(src, cfg, layout="SPIN", map_location=map_location)


def import_boa(
    src: Source,
    *,
    config: ModelConfig | None = None,
    map_location: Any = "cpu",
) -> HMR:
    """Build `hmr_r50` with GroupNorm(4) and load BOA's base model (path, checkpoint or dict).

    `config` overrides the architecture (default: hmr_r50, norm='group', gn_groups=4). The model
    is returned in eval mode. Raises CheckpointKeyError if keys or shapes differ (with a hint if
    a SPIN BatchNorm checkpoint was given); CheckpointError for unreadable input.
    """
    cfg = config if config is not None else get_preset("hmr_r50", norm="group", gn_groups=4)
    return _import(src, cfg, layout="BOA", map_location=map_location)
