"""Test-wide settings and shared fixtures.

Torch's thread pools oversubscribe a 2-core machine badly (beside another busy process, a
forward of about 10 ms on one thread took 700 ms on two; docs/architecture.md, "Threads"), so
every test process runs torch single-threaded unless the caller asked otherwise. Fixtures:
`weights` (a micro regressor checkpoint) and `samples` (OpenCV's sample photos and video).
"""

import gzip
import os
import shutil
import subprocess
from pathlib import Path

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


# OpenCV's sample photos and video (Debian's opencv-doc) for the real-image tests.
SAMPLE_DIRS = ("/usr/share/doc/opencv-doc/examples/data", "/usr/share/opencv4/samples/data",
               "/usr/local/share/opencv4/samples/data", "/usr/share/opencv/samples/data")
_apt_tried: list[str] = []


def _find_sample(name: str, tmp: Path) -> Path | None:
    dirs = [os.environ.get("HMR_ROS_OPENCV_SAMPLES", ""), *SAMPLE_DIRS]
    for d in filter(None, dirs):
        path = Path(d) / name
        if path.is_file():
            return path
        packed = path.with_name(name + ".gz")  # Debian compresses some docs
        if packed.is_file():
            out = tmp / name
            if not out.is_file():
                with gzip.open(packed, "rb") as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            return out
    return None


def _try_apt() -> str:
    """Install Debian's opencv-doc once (root with apt-get only); returns what happened."""
    if _apt_tried:
        return _apt_tried[0]
    if not shutil.which("apt-get") or getattr(os, "geteuid", lambda: 1)() != 0:
        why = "not root with apt-get"
    else:
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "opencv-doc"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            ok = subprocess.run(cmd, capture_output=True, timeout=600, env=env).returncode == 0
            if not ok:
                subprocess.run(["apt-get", "update"], capture_output=True, timeout=300,
                               env=env)
                ok = subprocess.run(cmd, capture_output=True, timeout=600,
                                    env=env).returncode == 0
            why = "installed" if ok else "apt-get install opencv-doc failed"
        except (OSError, subprocess.TimeoutExpired) as err:
            why = f"apt-get failed: {err}"
    _apt_tried.append(why)
    return why


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    """Finder of OpenCV's sample data (Debian's opencv-doc), installing it if possible."""
    tmp = tmp_path_factory.mktemp("opencv_samples")

    def get(name: str) -> Path:
        path = _find_sample(name, tmp)
        if path is None:
            why = _try_apt()
            path = _find_sample(name, tmp)
            if path is None:
                pytest.skip(f"{name} not found: needs Debian's opencv-doc package "
                            f"(apt-get install opencv-doc; {why}) or HMR_ROS_OPENCV_SAMPLES")
        return path

    return get


@pytest.fixture(scope="module")
def body():
    """The bundled synthetic SMPL body model."""
    from hmr_ros.body import BodyModel

    return BodyModel()


@pytest.fixture(scope="module")
def frames():
    """Half a second of small h36m_like frames (the source domain) with their people."""
    import dataclasses

    from hmr_ros.world.domain import load_domain
    from hmr_ros.world.scene import SyntheticSequence

    d = load_domain("h36m_like")
    d = dataclasses.replace(d, image=dataclasses.replace(d.image, render_scale=0.25))
    seq = SyntheticSequence(d, seed=21, duration_s=0.5)
    return [seq.frame(i).frame for i in range(len(seq))]
