"""The node driven the way users drive it: the `ros2` command line, as README shows it.

`ros2 launch hmr_ros adapt.launch.py` starts the node; `ros2 node list`, `ros2 topic echo`,
`ros2 param set/get` and `ros2 service call` talk to it; `ros2 run hmr_ros hmr_ros_player` plays
a synthetic bag into it while `ros2 topic hz` measures its output rate; Ctrl-C ends `ros2
launch`; `ros2 run hmr_ros hmr_ros_node` starts the node by itself. Every command runs as a
subprocess of the real CLI (built from ../shared/ros2/src-cli by scripts/ros2_ws.sh) and each
test asserts on what it printed. Commands that can work without the ros2 daemon are given
`--no-daemon`; `ros2 node list` is also run through the daemon (as users type it), and the
module's last fixture stops the daemon and checks that no daemon process of this test's ROS
domain is left. Skipped without ROS 2; a failure where HMR_ROS_REQUIRE_ROS=1 (the ROS suite).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from ros_harness import (
    NODE,
    Grouped,
    Launched,
    require_ros2_cli,
    ros2,
    ros2_daemons,
    ros_env,
    write_stream,
)

pytestmark = pytest.mark.ros

FPS, SECONDS = 10.0, 8.0
CAMERA = "/cli_cam"
STATUS = "hmr_ros/msg/AdaptationStatus"
# Without the daemon a command discovers the graph for --spin-time s (default 0.5), the whole
# time: long enough for commands that look a topic's type up (loaded machine), and only there.
DISCOVER = ("--no-daemon", "--spin-time", "5")


@pytest.fixture(scope="module")
def env():
    require_ros2_cli()
    return ros_env()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module", autouse=True)
def no_daemon_left(env, tmp):
    """After the module: `ros2 daemon stop`, then no ros2 daemon of this domain may remain."""
    yield
    stop = ros2("daemon", "stop", env=env, cwd=tmp)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    deadline = time.monotonic() + 10
    while ros2_daemons(env["ROS_DOMAIN_ID"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ros2_daemons(env["ROS_DOMAIN_ID"]), "a ros2 daemon outlived the tests"


def _status(topic: str, env, tmp, typed: bool = True, wait: float = 60) -> dict:
    """One AdaptationStatus through `ros2 topic echo TOPIC [TYPE] --once`, parsed (with the
    type given, echo subscribes at once and waits up to `wait` s; without, as README shows it,
    it looks the type up in the graph first)."""
    args = (STATUS, "--no-daemon", "--timeout", str(wait)) if typed else DISCOVER
    out = ros2("topic", "echo", topic, *args, "--once", env=env, cwd=tmp, timeout=wait + 30)
    assert out.returncode == 0 and "model_version" in out.stdout, out.stdout + out.stderr
    return yaml.safe_load(out.stdout.split("\n---")[0])


def _response(out) -> tuple[bool, str]:
    """(success, message) from the output of `ros2 service call`."""
    found = re.search(r"success=(True|False), message=(['\"])(.*)\2\)", out.stdout)
    assert out.returncode == 0 and found, out.stdout + out.stderr
    return found.group(1) == "True", found.group(3)


@pytest.fixture(scope="module")
def launched(env, tmp):
    """`ros2 launch hmr_ros adapt.launch.py camera:=... image_qos:=reliable`, up and ready
    (it has published an adaptation status)."""
    launched = Launched("adapt.launch.py", {"camera": CAMERA, "image_qos": "reliable"}, env,
                        cwd=tmp, log=tmp / "launch.log", ros2=True)
    try:
        out = ros2("topic", "echo", f"{NODE}/adaptation_status", STATUS, "--once", "--timeout",
                   "240", "--no-daemon", env=env, cwd=tmp, timeout=270)
        assert "model_version" in out.stdout, \
            f"no status from the node:\n{out.stderr}\n{launched.log()[-3000:]}"
        yield launched
    finally:
        launched.stop()


def test_pkg_finds_the_package_and_its_executables(env, tmp):
    prefix = ros2("pkg", "prefix", "hmr_ros", env=env, cwd=tmp)
    assert prefix.returncode == 0, prefix.stderr
    share = Path(prefix.stdout.strip()) / "share" / "hmr_ros"
    assert (share / "launch" / "adapt.launch.py").is_file()
    assert (share / "launch" / "eval_bag.launch.py").is_file()
    exe = ros2("pkg", "executables", "hmr_ros", env=env, cwd=tmp)
    assert set(exe.stdout.split()) == {"hmr_ros", "hmr_ros_node", "hmr_ros_player",
                                       "hmr_ros_recorder"}, exe.stdout + exe.stderr


def test_node_list_shows_the_node(launched, env, tmp):
    direct = ros2("node", "list", *DISCOVER, env=env, cwd=tmp)
    assert NODE in direct.stdout.split(), direct.stdout + direct.stderr
    # As users type it: through the ros2 daemon, which this starts (and the module stops).
    deadline = time.monotonic() + 30
    while True:
        daemon = ros2("node", "list", env=env, cwd=tmp)
        if NODE in daemon.stdout.split() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert NODE in daemon.stdout.split(), daemon.stdout + daemon.stderr
    assert ros2_daemons(env["ROS_DOMAIN_ID"]), "ros2 node list ran without starting a daemon"


def test_topic_echo_prints_status_and_diagnostics(launched, env, tmp):
    status = _status(f"{NODE}/adaptation_status", env, tmp, typed=False)
    assert status["method"] == "boa_2nd" and status["enabled"] is True
    assert status["state"] in (0, 1)  # idle or running: no images yet, or some
    assert isinstance(status["model_version"], int) and status["steps"] >= 0
    assert set(status["header"]["stamp"]) == {"sec", "nanosec"}
    diag = ros2("topic", "echo", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "--once",
                "--no-daemon", "--timeout", "30", env=env, cwd=tmp)
    names = {n.strip("'\"") for n in re.findall(r"^[\s-]*name: (.+)$", diag.stdout, re.M)}
    assert {"hmr_ros: estimator", "hmr_ros: adaptation"} <= names, diag.stdout + diag.stderr


def test_param_set_then_get(launched, env, tmp):
    def get(name: str) -> str:
        out = ros2("param", "get", NODE, name, "--no-daemon", "--timeout", "10", env=env,
                   cwd=tmp)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout.strip()

    before = get("marker_rate")
    assert before == "Double value is: 5.0", before
    out = ros2("param", "set", NODE, "marker_rate", "2.5", "--no-daemon", "--timeout", "10",
               env=env, cwd=tmp)
    assert out.returncode == 0 and "Set parameter successful" in out.stdout, \
        out.stdout + out.stderr
    assert get("marker_rate") == "Double value is: 2.5"
    refused = ros2("param", "set", NODE, "image_topic", "/elsewhere", "--no-daemon",
                   "--timeout", "10", env=env, cwd=tmp)
    assert "Setting parameter failed" in refused.stderr and "read at start only" in \
        refused.stderr, refused.stdout + refused.stderr
    assert get("image_topic") == f"String value is: {CAMERA}/image_raw"


def test_service_calls_pause_and_reset_adaptation(launched, env, tmp):
    def call(service: str, srv_type: str, *values: str) -> tuple[bool, str]:
        return _response(ros2("service", "call", f"{NODE}/{service}", srv_type, *values,
                              env=env, cwd=tmp))

    ok, message = call("set_adaptation", "std_srvs/srv/SetBool", "{data: false}")
    assert ok, message
    enabled = ros2("param", "get", NODE, "adapt.enabled", "--no-daemon", "--timeout", "10",
                   env=env, cwd=tmp)
    assert enabled.stdout.strip() == "Boolean value is: False", enabled.stdout + enabled.stderr
    paused = _status(f"{NODE}/adaptation_status", env, tmp)
    assert paused["enabled"] is False and paused["state"] == 2  # STATE_PAUSED
    ok, message = call("set_adaptation", "std_srvs/srv/SetBool", "{data: true}")
    assert ok, message
    before = _status(f"{NODE}/adaptation_status", env, tmp)["model_version"]
    ok, message = call("reset_adaptation", "std_srvs/srv/Trigger")
    assert ok, message
    version = int(re.search(r"model version (\d+)", message).group(1))
    assert version > before  # a reset is a new version
    ok, message = call("save_adaptation", "std_srvs/srv/Trigger")
    assert ok and (tmp / "runs" / "adapted.pt").is_file(), message  # the node's cwd: tmp


def test_played_bag_comes_back_at_its_rate(launched, env, tmp):
    """`ros2 run hmr_ros hmr_ros_player` plays the bag; `ros2 topic hz` on ~/bodies (its window
    within the played stream) reads the played rate back; a Ctrl-C ends hz."""
    bag = write_stream(tmp / "stream", fps=FPS, seconds=SECONDS)
    play_json = tmp / "play.json"
    hz = Grouped(["ros2", "topic", "hz", f"{NODE}/bodies", "--window", "20"], env, tmp,
                 tmp / "hz.log")
    try:
        player = ros2("run", "hmr_ros", "hmr_ros_player", str(bag), "--remap",
                      f"/camera={CAMERA}", "--node", NODE, "--out", str(play_json),
                      "--linger", "1", "--ready-timeout", "60", env=env, cwd=tmp,
                      timeout=SECONDS + 90)
        assert player.returncode == 0, player.stdout + player.stderr
        code, _ = hz.interrupt(timeout=15)
        log = hz.log()
    finally:
        hz.stop()
    assert code is not None and "Traceback" not in log, log[-2000:]
    rates = [float(r) for r in re.findall(r"average rate: ([0-9.]+)", log)]
    assert rates, log[-2000:]
    assert 0.8 * FPS <= rates[-1] <= 1.25 * FPS, f"hz says {rates[-1]} Hz, played {FPS} Hz"
    rec = json.loads(play_json.read_text())
    assert rec["images_sent"] == int(FPS * SECONDS)
    answered = [k for k in rec["published"] if k in rec["received"]]
    assert len(answered) >= 0.9 * rec["images_sent"], f"{len(answered)} frames answered"


def test_ctrl_c_ends_ros2_launch_cleanly(launched):
    code, seconds = launched.interrupt()
    log = launched.log()
    assert code == 0, log[-3000:]
    assert "process has finished cleanly" in log and "SIGTERM" not in log, log[-2000:]
    assert seconds < 5.0, f"ros2 launch took {seconds:.2f} s to exit after SIGINT"


def test_ros2_run_starts_the_node(env, tmp):
    """`ros2 run hmr_ros hmr_ros_node` with --ros-args: the installed params file, then its own
    name and adaptation off (a -p after the file overrides it)."""
    prefix = ros2("pkg", "prefix", "hmr_ros", env=env, cwd=tmp).stdout.strip()
    params = Path(prefix) / "share" / "hmr_ros" / "config" / "adapt.yaml"
    run = Grouped(["ros2", "run", "hmr_ros", "hmr_ros_node", "--ros-args", "--params-file",
                   str(params), "-r", "__node:=hmr_ros_run", "-p", "adapt.method:=none"],
                  env, tmp, tmp / "run.log")
    try:
        status = _status("/hmr_ros_run/adaptation_status", env, tmp, wait=240)
        assert status["method"] == "none" and status["state"] == 2, status
        ok, message = _response(ros2("service", "call", "/hmr_ros_run/reset_adaptation",
                                     "std_srvs/srv/Trigger", env=env, cwd=tmp))
        assert not ok and "adaptation is off" in message, message
        code, _ = run.interrupt()
        assert code == 0, run.log()[-3000:]
    finally:
        run.stop()
