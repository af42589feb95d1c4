"""Save and load a `TemporalRefiner` (config + weights + training metadata).

The joint model's buffers (rest joints of the body model) are not stored: they come from the
body model the pipeline runs with, so the same refiner serves the synthetic and a real SMPL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..body import BodyModel
from ..errors import HmrRosError
from ..resources import resource_path
from .model import TARConfig, TemporalRefiner

FORMAT = "hmr_ros.tar/1"
DEFAULT_FILE = "tar_small_h36m.pt"


class RefinerCheckpointError(HmrRosError, ValueError):
    """A file that is not a refiner checkpoint, or one that does not fit."""


def default_refiner_path() -> Path:
    return resource_path("weights", DEFAULT_FILE)


def save_refiner(path: str | os.PathLike[str], model: TemporalRefiner,
                 meta: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
             if not k.startswith("joints.")}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "config": model.config.to_dict(), "state": state,
                "meta": dict(meta or {})}, tmp)
    os.replace(tmp, path)
    return path


def load_refiner(path: str | os.PathLike[str] | None, body: BodyModel
                 ) -> tuple[TemporalRefiner, dict[str, Any]]:
    """(refiner in eval mode without gradients, its meta); RefinerCheckpointError naming the
    problem for a foreign file or weights that do not fit the stored config."""
    path = Path(path) if path else default_refiner_path()
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise RefinerCheckpointError(f"{path}: cannot read a refiner checkpoint "
                                     f"({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise RefinerCheckpointError(f"{path}: not a temporal refiner checkpoint "
                                     f"(format {found!r}, expected {FORMAT!r})")
    try:
        config = TARConfig(**data["config"])
    except TypeError as err:
        raise RefinerCheckpointError(f"{path}: bad refiner config: {err}") from None
    model = TemporalRefiner(config, body)
    own = {k for k in model.state_dict() if not k.startswith("joints.")}
    got = set(data["state"])
    if own != got:
        raise RefinerCheckpointError(f"{path}: weights do not fit: missing "
                                     f"{sorted(own - got)[:5]}, "
                                     f"unexpected {sorted(got - own)[:5]}")
    model.load_state_dict(data["state"], strict=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, dict(data.get("meta", {}))
