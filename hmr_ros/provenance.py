"""Where a result was produced: the machine and the software that can move its numbers.

Every benchmark JSON, `hmr-ros eval` result and replay/demo summary holds `provenance()` or
its "machine" block: "machine" (hardware, threads; `machine_info()`) and "environment"
(`environment_info()`); every markdown table of results ends with `footnote()` of the latter.
The same seeds gave 4 mm apart in BOA's PA-MPJPE under two OpenCV installs, so the OpenCV
entry names the distribution that provided `cv2` and a hash of its build information, not
only its version. A bottom-layer module: eval/, replay and bench/ all use it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from importlib import metadata

from .envcheck import owners


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, object]:
    """What a benchmark result needs to be read correctly later."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda": torch.cuda.is_available(),
    }


def opencv_info() -> dict[str, object]:
    """cv2's version, the distribution(s) that provide it and a short hash of its build
    information (compiler, SIMD dispatch, third-party libraries)."""
    import cv2

    build = cv2.getBuildInformation()
    return {
        "version": cv2.__version__,
        "distributions": [f"{o.distribution}=={o.version}" for o in owners("cv2")],
        "build_sha256": hashlib.sha256(build.encode()).hexdigest()[:16],
        "contrib": hasattr(cv2, "HOGDescriptor"),  # OpenCV 5: HOG lives in contrib
    }


def environment_info() -> dict[str, object]:
    import numpy
    import torch

    torch_config = torch.__config__.show()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_config_sha256": hashlib.sha256(torch_config.encode()).hexdigest()[:16],
        "numpy": numpy.__version__,
        "opencv": opencv_info(),
        "smplx": _version("smplx"),
        "onnxruntime": _version("onnxruntime"),
    }


def provenance() -> dict[str, object]:
    """The "machine" and "environment" blocks every benchmark JSON starts with."""
    return {"machine": machine_info(), "environment": environment_info()}


def footnote(env: dict | None) -> str:
    """One markdown line naming the environment of a result (empty for old JSON without it)."""
    if not env:
        return ""
    cv = env["opencv"]
    dists = ", ".join(cv["distributions"]) or "unknown distribution"
    parts = [f"torch {env['torch']}", f"numpy {env['numpy']}",
             f"OpenCV {cv['version']} ({dists}; build {cv['build_sha256']})",
             f"smplx {env['smplx']}"]
    if env.get("onnxruntime"):
        parts.append(f"onnxruntime {env['onnxruntime']}")
    parts += [f"Python {env['python']}", env["platform"]]
    return "Environment: " + ", ".join(parts) + "."
