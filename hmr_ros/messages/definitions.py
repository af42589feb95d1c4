"""Our ROS 2 message definitions for the pure-Python side (bags, replay, tests), via rosbags.

The `.msg` files in the repository's `msg/` folder are the single source of truth. Under ROS
they are compiled by rosidl (CMakeLists.txt); without ROS this module parses the same text with
`rosbags` and registers the types into a rosbags typestore, so that bags holding our topics can
be read and written without rclpy.

The files are found through `hmr_ros.resources` (source checkout, pip or colcon install), or
$HMR_ROS_MSG_DIR.

Never create a Python package folder `hmr_ros/msg/`: under ROS that name belongs to the
rosidl-generated message classes and a hand-written one would shadow them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ..resources import resource_dir

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

PACKAGE = "hmr_ros"

#: Message type names, as the file names in msg/ (without the .msg suffix).
MSG_NAMES: tuple[str, ...] = (
    "AdaptationStatus",
    "Keypoints2D",
    "Keypoints2DArray",
    "SMPLBody",
    "SMPLBodyArray",
)

#: Full rosbags / ROS 2 type names, e.g. for connections in a bag.
ADAPTATION_STATUS = f"{PACKAGE}/msg/AdaptationStatus"
KEYPOINTS_2D = f"{PACKAGE}/msg/Keypoints2D"
KEYPOINTS_2D_ARRAY = f"{PACKAGE}/msg/Keypoints2DArray"
SMPL_BODY = f"{PACKAGE}/msg/SMPLBody"
SMPL_BODY_ARRAY = f"{PACKAGE}/msg/SMPLBodyArray"

ENV_MSG_DIR = "HMR_ROS_MSG_DIR"


def full_type_name(name: str) -> str:
    """`SMPLBody` -> `hmr_ros/msg/SMPLBody` (full names pass through unchanged)."""
    return name if "/" in name else f"{PACKAGE}/msg/{name}"


def _is_msg_dir(path: Path) -> bool:
    return path.is_dir() and all((path / f"{name}.msg").is_file() for name in MSG_NAMES)


def find_msg_dir(msg_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding our `.msg` files; raises FileNotFoundError with a hint if none.

    Without `msg_dir`: $HMR_ROS_MSG_DIR, else the package's `msg/` resource folder (source
    checkout, pip or colcon install; see `hmr_ros.resources`).
    """
    if msg_dir is None and os.environ.get(ENV_MSG_DIR):
        msg_dir = os.environ[ENV_MSG_DIR]
    path = Path(msg_dir) if msg_dir is not None else resource_dir("msg")
    if not _is_msg_dir(path):
        missing = [n for n in MSG_NAMES if not (path / f"{n}.msg").is_file()]
        raise FileNotFoundError(
            f"{path} lacks the message files {missing}; set {ENV_MSG_DIR} to the repository's "
            "msg/ folder or reinstall the package (pip install . / colcon build)"
        )
    return path


def message_texts(msg_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Full type name -> `.msg` text, for every message in MSG_NAMES."""
    folder = find_msg_dir(msg_dir)
    return {
        full_type_name(name): (folder / f"{name}.msg").read_text(encoding="utf-8")
        for name in MSG_NAMES
    }


def hmr_type_definitions(msg_dir: str | os.PathLike[str] | None = None) -> dict:
    """Parsed definitions of all our messages, ready for `Typestore.register`."""
    types: dict = {}
    for typename, text in message_texts(msg_dir).items():
        types.update(get_types_from_msg(text, typename))
    return types


def _check_resolved(typestore: Typestore, names: Iterable[str]) -> None:
    """Build every serializer now, so a missing dependency fails here and not in a bag write."""
    for name in names:
        try:
            typestore.get_msgdef(name)
        except KeyError as exc:
            raise ValueError(
                f"{name} refers to type {exc.args[0]!r}, which this typestore does not know; "
                "use a ROS 2 typestore (it must provide std_msgs and geometry_msgs)"
            ) from exc


def register_hmr_types(
    typestore: Typestore, msg_dir: str | os.PathLike[str] | None = None
) -> list[str]:
    """Register all hmr_ros messages into `typestore` and return their full type names.

    All types are registered in one call, so nested references (SMPLBodyArray -> SMPLBody)
    resolve regardless of order. Registering again with the same definitions is a no-op;
    rosbags raises TypesysError if a different definition of one of the names is present.
    """
    types = hmr_type_definitions(msg_dir)
    typestore.register(types)
    names = sorted(types)
    _check_resolved(typestore, names)
    return names


def _store_for(distro: str | Stores) -> Stores:
    if isinstance(distro, Stores):
        return distro
    key = f"ROS2_{distro.strip().upper()}"
    store = getattr(Stores, key, None)
    if store is None:
        known = sorted(s.name[5:].lower() for s in Stores if s.name.startswith("ROS2_"))
        raise ValueError(
            f"Unknown ROS 2 distro {distro!r} for this rosbags version; known: {known}"
        )
    return store


def hmr_typestore(
    distro: str | Stores = "humble", msg_dir: str | os.PathLike[str] | None = None
) -> Typestore:
    """A fresh rosbags typestore for `distro` (e.g. "humble", "jazzy") with our types added."""
    from .hri import register_hri_types

    typestore = get_typestore(_store_for(distro))
    register_hmr_types(typestore, msg_dir)
    register_hri_types(typestore)  # ROS4HRI's body messages (REP-155 output and input)
    return typestore
