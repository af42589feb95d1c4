"""The source replay set an adaptive pipeline is built with (`adapt.replay.count` > 0).

Entry points that build a pipeline which may adapt (the commands, the benchmarks, the ROS
node) call `replay_for(config, adapt)` and pass the result to
`build_pipeline(config, adapt, replay=...)`; the pipeline itself never renders and does not
import the synthetic world. The set is the same for every entry point: `adapt.replay.count`
crops of the `h36m_like` domain from seed 7, at the bundled regressor's input size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import PipelineConfig
from .pipeline import adapts


def source_replay(n: int, domain: str = "h36m_like", seed: int = 7
                  ) -> dict[str, Tensor] | None:
    """`n` labelled source-domain crops for BOA's replay term (None when n == 0), at the
    bundled regressor's input size (`world.replay.replay_crops`)."""
    if n <= 0:
        return None
    from .model.weights import load_regressor
    from .world.replay import replay_crops

    size = load_regressor().config.input_size
    return replay_crops(n, size, domain, seed)


def replay_for(config: PipelineConfig, adapt: bool | None = None
               ) -> dict[str, Tensor] | None:
    """The replay set `build_pipeline(config, adapt)` needs: `config.adapt.replay.count` crops
    when that pipeline gets an adaptation worker, else None (nothing rendered)."""
    if not adapts(config, adapt) or config.adapt.replay.count <= 0:
        return None
    # The body model renders under the thread count the pipeline runs with (build_pipeline
    # sets the same, process-wide): torch's CPU kernels may round differently with another.
    torch.set_num_threads(config.inference.threads)
    return source_replay(config.adapt.replay.count)
