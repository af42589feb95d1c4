"""Finding and loading regressor weights: ours, or the bundled default."""

from __future__ import annotations

from pathlib import Path

from ..resources import resource_path
from .checkpoint import LoadedCheckpoint, load_checkpoint

# The regressor shipped in weights/ (trained on the synthetic h36m_like source domain).
DEFAULT_WEIGHTS = "hmr_small_h36m.pt"
# The DualNet start (`hmr-ros train-meta`) and its auxiliary network.
DUALNET_WEIGHTS = "hmr_small_dualnet.pt"
DUALNET_AUX = "hmr_small_dualnet.pt.aux.pt"


def default_weights_path() -> Path:
    return resource_path("weights", DEFAULT_WEIGHTS)


def dualnet_aux_path(path: str | Path | None = None) -> Path:
    """`path`, or the shipped DualNet auxiliary network when it is empty."""
    return Path(path) if path else resource_path("weights", DUALNET_AUX)


def load_regressor(path: str | Path | None = None) -> LoadedCheckpoint:
    """Our checkpoint at `path`, or the bundled default when `path` is empty.

    Public BOA/SPIN checkpoints are converted to ours once with `hmr_ros.model.import_boa` /
    `import_spin` followed by `save_checkpoint`.
    """
    return load_checkpoint(path if path else default_weights_path())
