"""Test-wide settings.

Torch's thread pools oversubscribe a 2-core machine badly (DESIGN.md section 4), so every test
process runs torch single-threaded unless the caller asked otherwise.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
