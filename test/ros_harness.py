"""Helpers for the tests that run the real node under real rclpy and Fast DDS.

`require_ros()` skips where ROS 2 is not installed (the ROS-free suite) but FAILS where
`HMR_ROS_REQUIRE_ROS=1` (the ROS suite in `.ci/run`): a ROS test that skips in CI is a missing
test. `ros_env()` gives every test run its own DDS domain, kept on this machine.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROS_MODULES = ("rclpy", "tf2_ros", "launch", "launch_ros")


def require_ros(*modules: str) -> None:
    missing = [m for m in (modules or ROS_MODULES) if importlib.util.find_spec(m) is None]
    try:
        has_msgs = importlib.util.find_spec("hmr_ros.msg") is not None
    except ModuleNotFoundError:
        has_msgs = False
    if not has_msgs:
        missing.append("hmr_ros.msg (the colcon-built package)")
    if not missing:
        return
    reason = (f"ROS 2 is not available here ({', '.join(missing)} missing): build the "
              "workspace with scripts/ros2_ws.sh and run the ROS suite (README, ROS 2 "
              "without a ROS install)")
    if os.environ.get("HMR_ROS_REQUIRE_ROS") == "1":
        pytest.fail(reason + "; HMR_ROS_REQUIRE_ROS=1 says it must be", pytrace=False)
    pytest.skip(reason)


def ros_env(domain: int | None = None) -> dict[str, str]:
    """The environment for child processes: one DDS domain per run, discovery on localhost."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["ROS_DOMAIN_ID"] = str(domain if domain is not None else random.randint(1, 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated on Jazzy, warns beside the new one
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_stream(path: Path, fps: float = 10.0, scale: float = 0.5, seconds: float = 8.0,
                 seed: int = 11, domain: str = "robot_cam") -> Path:
    """A synthetic robot_cam bag (one person, keypoints with ids, CameraInfo, truth)."""
    from hmr_ros.data.domain import load_domain
    from hmr_ros.data.scene import SyntheticSequence
    from hmr_ros.data.synth import write_stream_bag

    d = load_domain(domain)
    d = dataclasses.replace(d, fps=fps, image=dataclasses.replace(d.image, render_scale=scale))
    return write_stream_bag(SyntheticSequence(d, seed=seed, duration_s=seconds), path,
                            progress=False)


class Launched:
    """`python -m hmr_ros.ros.launch_file FILE args...` in its own process group, as a
    terminal would run `ros2 launch` (so SIGINT reaches launch and the node, like Ctrl-C)."""

    def __init__(self, launch_file: str, args: dict[str, str], env: dict[str, str],
                 cwd: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "hmr_ros.ros.launch_file", launch_file,
               *[f"{k}:={v}" for k, v in args.items()]]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def interrupt(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """Ctrl-C to the whole group; (exit code or None, seconds until launch exited)."""
        t0 = time.monotonic()
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._log.close()
