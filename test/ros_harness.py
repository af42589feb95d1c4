"""Helpers for the tests that run the real node under real rclpy and Fast DDS.

`require_ros()` skips where ROS 2 is not installed (the ROS-free suite) but FAILS where
`HMR_ROS_REQUIRE_ROS=1` (the ROS suite in `.ci/run`): a ROS test that skips in CI is a missing
test; `require_ros2_cli()` likewise for the `ros2` command line. `ros_env()` gives every test
run its own DDS domain, kept on this machine.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROS_MODULES = ("rclpy", "tf2_ros", "launch", "launch_ros")
NODE = "/hmr_ros"


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
    _ros_missing(f"ROS 2 is not available here ({', '.join(missing)} missing): build the "
                 "workspace with scripts/ros2_ws.sh and run the ROS suite (README, ROS 2 "
                 "without a ROS install)")


def _ros_missing(reason: str) -> None:
    """Skip a test for a missing part of ROS 2, or fail it in the ROS suite
    (HMR_ROS_REQUIRE_ROS=1), where nothing of ROS 2 may be missing."""
    if os.environ.get("HMR_ROS_REQUIRE_ROS") == "1":
        pytest.fail(reason + "; HMR_ROS_REQUIRE_ROS=1 says it must be", pytrace=False)
    pytest.skip(reason)


def require_ros2_cli() -> None:
    """ROS 2 as `require_ros`, and the `ros2` command (ros2cli, ros2launch, ...) on PATH."""
    require_ros(*ROS_MODULES, "ros2cli", "ros2launch", "ros2param", "ros2topic")
    if shutil.which("ros2") is None:
        _ros_missing("ROS 2's command line is not available here (no `ros2` on PATH): build "
                     "the workspace with scripts/ros2_ws.sh (it builds the command line from "
                     "../shared/ros2/src-cli) and source DIR/activate")


def ros2(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60.0
         ) -> subprocess.CompletedProcess:
    """`ros2 ARGS...` to its end; stdout and stderr as text."""
    return subprocess.run(["ros2", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def ros2_daemons(domain: str) -> list[str]:
    """Command lines of the running `ros2 daemon` processes of ROS domain `domain`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if any("ros2cli.daemon" in w for w in words) and "--ros-domain-id" in words \
                and words[words.index("--ros-domain-id") + 1:][:1] == [domain]:
            found.append(" ".join(words))
    return found


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
                 seed: int = 11, domain: str = "robot_cam",
                 actions: tuple[str, ...] | None = None) -> Path:
    """A synthetic robot_cam bag (one person, keypoints with ids, CameraInfo, truth);
    `actions` limits what the person does (e.g. ("sit",))."""
    from hmr_ros.synth import write_stream_bag
    from hmr_ros.world.domain import load_domain
    from hmr_ros.world.scene import SyntheticSequence

    d = load_domain(domain)
    d = dataclasses.replace(d, fps=fps, image=dataclasses.replace(d.image, render_scale=scale))
    if actions is not None:
        d = dataclasses.replace(d, people=dataclasses.replace(d.people, actions=actions))
    return write_stream_bag(SyntheticSequence(d, seed=seed, duration_s=seconds), path,
                            progress=False)


class Grouped:
    """A command in its own process group, as a terminal runs it (so a SIGINT to the group
    reaches it and its children, like Ctrl-C), its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        """What it printed so far (also after `stop()`)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def interrupt(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """Ctrl-C to the whole group; (exit code or None, seconds until it exited)."""
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


class Launched(Grouped):
    """`python -m hmr_ros.ros.launch_file FILE args...` (or, with `ros2=True`, `ros2 launch
    hmr_ros FILE args...`) in its own process group."""

    def __init__(self, launch_file: str, args: dict[str, str], env: dict[str, str],
                 cwd: Path, log: Path, ros2: bool = False) -> None:
        runner = ["ros2", "launch", "hmr_ros"] if ros2 else \
            [sys.executable, "-m", "hmr_ros.ros.launch_file"]
        super().__init__([*runner, launch_file, *[f"{k}:={v}" for k, v in args.items()]],
                         env, cwd, log)


@dataclass
class Seen:
    """Everything the consumer received, with receipt times (monotonic s)."""

    bodies: list[tuple[float, Any]] = field(default_factory=list)
    status: list[tuple[float, Any]] = field(default_factory=list)
    diagnostics: list[tuple[float, Any]] = field(default_factory=list)
    markers: list[tuple[float, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, msg: Any) -> None:
        with self.lock:
            getattr(self, name).append((time.monotonic(), msg))

    def copy(self, name: str) -> list[tuple[float, Any]]:
        with self.lock:
            return list(getattr(self, name))


class Consumer:
    """A peer node in this process: subscriptions, a tf2 buffer, service and parameter calls."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from hmr_ros.msg import AdaptationStatus, SMPLBodyArray
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from tf2_ros import Buffer, TransformListener
        from visualization_msgs.msg import MarkerArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("e2e_consumer", context=self.context)
        self.seen = Seen()
        self.node.create_subscription(SMPLBodyArray, f"{NODE}/bodies",
                                      lambda m: self.seen.add("bodies", m), 100)
        self.node.create_subscription(AdaptationStatus, f"{NODE}/adaptation_status",
                                      lambda m: self.seen.add("status", m), 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      lambda m: self.seen.add("diagnostics", m), 100)
        # As RViz would: the node builds markers only for a subscriber.
        self.node.create_subscription(MarkerArray, f"{NODE}/markers",
                                      lambda m: self.seen.add("markers", m), 10)
        self.tf_buffer = Buffer(node=self.node)  # cache_time: 10 s (default)
        self.tf_listener = TransformListener(self.tf_buffer, self.node)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"no service {name}"
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            assert done.wait(timeout), f"{name} did not answer within {timeout} s"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, **values: Any) -> list[Any]:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                for k, v in values.items()])
        return list(self.call(SetParameters, f"{NODE}/set_parameters", req).results)

    def get_parameter(self, name: str) -> Any:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        res = self.call(GetParameters, f"{NODE}/get_parameters",
                        GetParameters.Request(names=[name]))
        return parameter_value_to_python(res.values[0])

    def wait_for(self, name: str, predicate, timeout: float) -> Any:
        """The first message of `name` received from now on for which `predicate` holds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            for t, msg in self.seen.copy(name):
                if t >= start and predicate(msg):
                    return msg
            time.sleep(0.05)
        return None

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
