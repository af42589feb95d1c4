"""Which installed distributions provide a top-level module, and a check that exactly one does.

Two wheels that both ship `cv2` (opencv-python-headless and opencv-contrib-python, say) can be
installed side by side: pip writes one over the other file by file, and the OpenCV that gets
imported depends on install order. `python -m hmr_ros.envcheck` exits non-zero when that is
the case (CI runs it after installing).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol


class DistributionLike(Protocol):
    """The part of `importlib.metadata.Distribution` used here (tests pass fakes)."""

    @property
    def metadata(self) -> object: ...  # has ["Name"]

    @property
    def version(self) -> str: ...

    @property
    def files(self) -> list | None: ...

    def read_text(self, filename: str) -> str | None: ...


@dataclass(frozen=True)
class ModuleOwner:
    """An installed distribution that provides a given top-level module."""

    distribution: str
    version: str


class DuplicateModuleError(RuntimeError):
    """More than one installed distribution provides the same top-level module."""


def top_level_names(dist: DistributionLike) -> set[str]:
    """Top-level importable names a distribution provides: its `top_level.txt` when it has
    one, else the first component of the paths in its RECORD."""
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    names = set()
    for path in dist.files or []:
        first = str(path).replace("\\", "/").split("/", 1)[0]
        if first.endswith((".dist-info", ".egg-info", ".data", ".libs")) or first in ("..", ""):
            continue
        if first.endswith(".py"):
            first = first[:-3]
        elif "." in first:  # an extension module at top level: name.cpython-311-....so
            first = first.split(".", 1)[0]
        names.add(first)
    return names


def owners(module: str, distributions: Iterable[DistributionLike] | None = None
           ) -> list[ModuleOwner]:
    """Every installed distribution that provides `module`, sorted by name."""
    dists = metadata.distributions() if distributions is None else distributions
    found = {}
    for dist in dists:
        if module in top_level_names(dist):
            name = str(dist.metadata["Name"])
            found[name.lower()] = ModuleOwner(name, str(dist.version))
    return [found[k] for k in sorted(found)]


def single_owner(module: str = "cv2", distributions: Iterable[DistributionLike] | None = None
                 ) -> ModuleOwner:
    """The one distribution that provides `module`; raises DuplicateModuleError when several
    do, ModuleNotFoundError when none does."""
    found = owners(module, distributions)
    if not found:
        raise ModuleNotFoundError(f"no installed distribution provides {module!r}")
    if len(found) > 1:
        names = ", ".join(f"{o.distribution} {o.version}" for o in found)
        raise DuplicateModuleError(
            f"{len(found)} installed distributions provide {module!r} ({names}); the files of "
            f"the last one installed win one by one. Uninstall all of them and reinstall "
            f"hmr_ros (README, Install)")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    modules = argv if argv else ["cv2"]
    status = 0
    for module in modules:
        try:
            owner = single_owner(module)
        except (DuplicateModuleError, ModuleNotFoundError) as err:
            print(f"envcheck: {err}", file=sys.stderr)
            status = 1
        else:
            print(f"envcheck: {module} from {owner.distribution} {owner.version}")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
