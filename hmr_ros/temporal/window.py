"""Which frames a refinement may read: the one rule the stage and the training share."""

from __future__ import annotations

import numpy as np


def window_indices(target: int, newest: int, past: int, future: int) -> np.ndarray:
    """Positions (past + 1 + future,) of the frames around `target`, oldest first.

    Offsets -past..+future from `target`, clipped to [0, newest]: a track's first frames
    repeat its oldest frame and, at a stream's end, its newest one (edge padding), and nothing
    after `newest` (the newest frame received) is ever read. Causal mode is future = 0 with
    target = newest; lookahead d is future = d with target = newest - d.
    """
    if past < 0 or future < 0 or not 0 <= target <= newest:
        raise ValueError(f"bad window: target {target}, newest {newest}, past {past}, "
                         f"future {future}")
    return np.clip(np.arange(target - past, target + future + 1), 0, newest)
