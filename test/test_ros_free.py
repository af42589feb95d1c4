"""Everything outside hmr_ros/ros/ must import and work on a machine without ROS 2."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import hmr_ros

ROS_MODULES = ("rclpy", "cv_bridge", "tf2_ros", "message_filters", "launch_ros",
               "sensor_msgs_py", "launch", "rosidl_runtime_py", "ament_index_python")

_BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('blocked ROS module ' + name)
        return None
sys.meta_path.insert(0, Block())
import importlib
for mod in {mods!r}:
    importlib.import_module(mod)
leaked = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
assert not leaked, leaked
print('imported', len({mods!r}))
"""


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(hmr_ros.__path__, prefix="hmr_ros."):
        if info.name == "hmr_ros.ros" or info.name.startswith("hmr_ros.ros."):
            continue
        names.append(info.name)
    return sorted(names)


def test_core_modules_import_with_ros_blocked():
    mods = core_modules()
    assert "hmr_ros.geometry" in mods and "hmr_ros.body.model" in mods
    code = _BLOCKER.format(blocked=ROS_MODULES, mods=mods)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"imported {len(mods)}" in res.stdout


def test_no_ros_import_statement_outside_ros_folder():
    root = Path(hmr_ros.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "ros" in path.relative_to(root).parts[:1]:
            continue
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                if words[1].split(".")[0] in ROS_MODULES:
                    offenders.append(f"{path}: {line.strip()}")
    assert not offenders, offenders


def test_no_python_msg_folder():
    # A hmr_ros/msg/ Python folder would shadow the messages rosidl generates.
    assert not (Path(hmr_ros.__file__).parent / "msg").exists()
