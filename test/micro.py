"""The smallest regressor the tests use: 32 px crops, a few thousand parameters, fast enough
to adapt dozens of times per test on 2 cores."""

from hmr_ros.model import ModelConfig

MICRO = ModelConfig(name="micro", block="basic", layers=(1, 1, 1, 1), width=8, norm="group",
                    gn_groups=4, head_hidden=32, n_iter=2, input_size=32, dropout=0.0)
