"""Test-wide settings.

Torch's thread pools oversubscribe a 2-core machine badly (DESIGN.md section 4), so every test
process runs torch single-threaded unless the caller asked otherwise.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

import pytest  # noqa: E402

from hmr_ros.model import HMR, save_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A checkpoint of the micro regressor (test/micro.py), random weights, seed 0."""
    from micro import MICRO

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "micro.pt"
    save_checkpoint(path, HMR(MICRO))
    return path
