"""Run a `TemporalRefiner` on a person's history: the windows of one target frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .features import FrameFeatures
from .model import TemporalRefiner
from .window import window_indices


@dataclass(frozen=True)
class WindowSpec:
    """past: frames before the target in the global window; local_past: in the local
    (ConvGRU) window; future: frames after the target in both (the lookahead d)."""

    past: int = 8
    local_past: int = 4
    future: int = 0


def window_inputs(arrays: dict[str, np.ndarray], targets: np.ndarray, newest: np.ndarray,
                  spec: WindowSpec) -> dict[str, Tensor]:
    """Batched inputs from per-frame arrays of one sequence (or history).

    arrays: global (N, F), fmap (N, C, h, w), est (N, 157), box (N, 3), K (N, 3, 3);
    targets, newest: (B,) positions. Returns glob (B, T, F), est (B, T, 157), fmap
    (B, Tl, C, h, w), box (B, 3), K (B, 3, 3), offsets (T,) and the target positions in the
    two windows.
    """
    g_idx = np.stack([window_indices(int(t), int(n), spec.past, spec.future)
                      for t, n in zip(targets, newest)])
    l_idx = g_idx[:, spec.past - spec.local_past:]
    f32 = torch.float32
    return {
        "glob": torch.as_tensor(arrays["global"][g_idx], dtype=f32),
        "est": torch.as_tensor(arrays["est"][g_idx], dtype=f32),
        "fmap": torch.as_tensor(arrays["fmap"][l_idx], dtype=f32),
        "box": torch.as_tensor(arrays["box"][targets], dtype=f32),
        "K": torch.as_tensor(arrays["K"][targets], dtype=f32),
        "offsets": torch.arange(-spec.past, spec.future + 1),
        "target": spec.past,
        "local_target": spec.local_past,
    }


def run_refiner(model: TemporalRefiner, inputs: dict[str, Tensor], use_global: bool = True,
                use_local: bool = True) -> list[Tensor]:
    """The refiner on `window_inputs`' output: estimates (B, 157), one per iteration."""
    return model(inputs["glob"], inputs["est"], inputs["offsets"], inputs["target"],
                 inputs["fmap"], inputs["local_target"], inputs["box"], inputs["K"],
                 use_global=use_global, use_local=use_local)


def history_arrays(history: Sequence[FrameFeatures]) -> dict[str, np.ndarray]:
    """A person's history as the per-frame arrays `window_inputs` reads."""
    return {"global": np.stack([h.global_ for h in history]),
            "fmap": np.stack([h.fmap for h in history]),
            "est": np.stack([h.estimate for h in history]),
            "box": np.stack([h.box for h in history]),
            "K": np.stack([h.K for h in history])}


def refine_history(model: TemporalRefiner, history: Sequence[FrameFeatures], target: int,
                   spec: WindowSpec, use_global: bool = True, use_local: bool = True
                   ) -> np.ndarray:
    """The refined (157,) estimate of history[target], reading history[: newest + 1] only
    (newest = min(target + future, len - 1))."""
    newest = min(target + spec.future, len(history) - 1)
    lo = max(0, target - spec.past)
    # Only the frames the window can touch are stacked (the history may be longer).
    part = history[lo:newest + 1]
    arrays = history_arrays(part)
    inputs = window_inputs(arrays, np.array([target - lo]), np.array([newest - lo]), spec)
    with torch.inference_mode():
        out = run_refiner(model, inputs, use_global, use_local)[-1]
    return out[0].numpy()
