"""adapt.catch_up: a real-time step stands for the frames that arrived since the previous
one, its outer learning rate scaled by their count; lock-step runs are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from micro import MICRO, adapt_samples

from hmr_ros.adapt.methods import Adapter
from hmr_ros.adapt.samples import SampleBuffer
from hmr_ros.adapt.worker import AdaptationWorker
from hmr_ros.config import AdaptConfig, ConfigError, updated
from hmr_ros.config.adapt import WorkerConfig
from hmr_ros.model import HMR
from hmr_ros.model.backends import TorchBackend


def _cfg(catch_up: int = 1, **kw) -> AdaptConfig:
    return updated(AdaptConfig(), {"schedule": "latest", "tau": 2, "buffer_frames": 8,
                                   "min_keypoints": 4, "worker.catch_up": catch_up, **kw})


def test_a_pick_stands_for_the_frames_submitted_since_the_last_one(frames):
    buf = SampleBuffer(_cfg(), np.random.default_rng(0))
    samples = adapt_samples(frames[:6])
    buf.submit([samples[0]])
    assert buf.next_index() == 0 and buf.stands_for == 1
    for s in samples[1:5]:  # four frames while a step ran
        buf.submit([s])
    assert buf.next_index() == 4 and buf.stands_for == 4
    assert buf.next_index() is None
    buf.submit([samples[5]])
    assert buf.next_index() == 5 and buf.stands_for == 1


def test_catch_up_scales_the_outer_step_by_the_frames_capped_and_restores_the_rate(body,
                                                                                   frames):
    """Adam's first step moves each weight by about lr * sign(gradient): a pick standing
    for 4 frames (capped at catch_up 3) moves the weights three times as far as one."""
    samples = adapt_samples(frames[:5])
    moved = {}
    for cap in (1, 3):
        torch.manual_seed(0)
        model = HMR(MICRO)
        c = _cfg(catch_up=cap, method="joint", outer_lr=1e-4)
        worker = AdaptationWorker(Adapter(model, body, c), c,
                                  TorchBackend(model).update_weights)
        before = {k: v.detach().clone() for k, v in worker.adapter.params().items()}
        worker.submit([samples[0]])
        worker.run_pending()  # the first frame: stands for itself
        first = {k: v.detach().clone() for k, v in worker.adapter.params().items()}
        for s in samples[1:]:
            worker.submit([s])
        assert worker.run_pending() == 1
        after = {k: v.detach() for k, v in worker.adapter.params().items()}
        assert all(g["lr"] == 1e-4 for g in worker.adapter.optimizer.param_groups)
        moved[cap] = (sum(float((first[k] - before[k]).abs().sum()) for k in before),
                      sum(float((after[k] - first[k]).abs().sum()) for k in first))
    assert moved[1][0] == pytest.approx(moved[3][0], rel=1e-6)  # one frame: the same step
    ratio = moved[3][1] / moved[1][1]
    assert 2.0 < ratio < 3.5, ratio  # Adam's second step: lr times a bounded factor


def test_lock_step_runs_are_unchanged_by_catch_up(body, frames):
    samples = adapt_samples(frames[:6])
    weights = {}
    for cap in (1, 8):
        torch.manual_seed(0)
        model = HMR(MICRO)
        c = _cfg(catch_up=cap, method="boa_1st", schedule="every_frame")
        worker = AdaptationWorker(Adapter(model, body, c), c,
                                  TorchBackend(model).update_weights)
        for s in samples:  # lock-step: every frame is stepped on before the next arrives
            worker.submit([s])
            worker.run_pending()
        weights[cap] = worker.adapter.state_dict()
    assert all(torch.equal(weights[1][k], weights[8][k]) for k in weights[1])


def test_catch_up_must_be_positive():
    with pytest.raises(ConfigError, match="catch_up"):
        WorkerConfig(catch_up=0).validate("adapt.worker.")
