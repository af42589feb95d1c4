"""Where the package's data folders (`weights/`, `msg/`, `config/`) live.

The same folders are found in three layouts:
- a source checkout (editable pip install, tests): `<repo>/weights`, next to `hmr_ros/`;
- a pip install: `setup.py` copies them to `<prefix>/share/hmr_ros/<name>`;
- a colcon install: CMake installs them to `<install>/share/hmr_ros/<name>`, while the Python
  files sit in `<install>/lib/pythonX.Y/site-packages/hmr_ros`.
`HMR_ROS_SHARE` overrides all of them (a folder holding `weights/`, `msg/`, `config/`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
KINDS = ("weights", "msg", "config", "launch")


def _candidates(kind: str) -> list[Path]:
    out: list[Path] = []
    env = os.environ.get("HMR_ROS_SHARE")
    if env:
        out.append(Path(env) / kind)
    out.append(_PACKAGE_DIR.parent / kind)  # source checkout
    for parent in _PACKAGE_DIR.parents:  # pip or colcon prefix
        out.append(parent / "share" / "hmr_ros" / kind)
    out.append(Path(sys.prefix) / "share" / "hmr_ros" / kind)
    return out


def resource_dir(kind: str) -> Path:
    """The first existing folder of this kind; FileNotFoundError listing where it looked."""
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {KINDS}")
    tried = _candidates(kind)
    for path in tried:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"hmr_ros could not find its {kind}/ folder; looked in: "
        + ", ".join(str(p) for p in tried)
        + ". Set HMR_ROS_SHARE to the folder that holds it."
    )


def resource_path(kind: str, name: str) -> Path:
    """Path of a file inside a resource folder; FileNotFoundError if it is absent."""
    path = resource_dir(kind) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return path
