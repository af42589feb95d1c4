"""Evaluate the running node on a bag: play it into the node and record the node's outputs.

    hmr-ros synth --domain pw3d_like --seed 3 --duration 20 --out /tmp/in      # or your bag
    ros2 launch hmr_ros eval_bag.launch.py bag:=/tmp/in out:=/tmp/node_out
    hmr-ros score /tmp/node_out                                                 # scores

Starts adapt.launch.py with use_sim_time (all its arguments can be given here too: camera,
keypoints_topic, weights, adapt, params_file, ...), then a recorder of the node's outputs plus
the played ground truth and camera info (mcap), then (after `start_delay` s, so the node has
loaded its weights and the recorder has subscribed) a player of the input that publishes
/clock. When playback ends, it waits `end_delay` s for the last frames and shuts everything
down, which closes the recorded bag. The node takes the newest frame when it falls behind, so
the scores are those of the node at the played `rate`, dropped frames included (docs/ros.md).

Player and recorder (`player:=auto`): `ros2 bag play --clock` and `ros2 bag record -s mcap`
where rosbag2 is installed, else this package's own (PyPI's ROS 2 has no rosbag2):
`hmr_ros_player --clock` plays the camera topics and the ground truth and waits until the node
and the recorder subscribe; `hmr_ros_recorder` writes what it receives, undecoded, with
rosbags. `player:=ros2bag` or `player:=hmr_ros` chooses one.
"""

import importlib.util
import os

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription

#: Arguments of this file -> (default, description).
ARGUMENTS = {
    "bag": ("", "input bag (folder or file) with images, camera info, keypoints and, for "
                "scoring, /ground_truth/bodies (e.g. from `hmr-ros synth`)"),
    "out": ("", "output bag folder (must not exist; empty: hmr_ros_eval_<bag name>)"),
    "rate": ("1.0", "playback rate"),
    "start_delay": ("8.0", "s to wait before playing (node start-up, recorder discovery)"),
    "end_delay": ("3.0", "s to keep recording after playback ended"),
    "ground_truth_topic": ("/ground_truth/bodies", "ground-truth topic recorded for scoring "
                                                   "('' to skip)"),
    "record_images": ("false", "also record the image topic (large)"),
    "camera": ("/camera", "camera namespace, passed to adapt.launch.py"),
    "player": ("auto", "ros2bag (ros2 bag play/record), hmr_ros (this package's player and "
                       "recorder) or auto: ros2bag where rosbag2 is installed, else hmr_ros"),
}

#: Arguments passed through to adapt.launch.py unchanged (besides use_sim_time:=true).
FORWARDED = ("camera", "image_topic", "camera_info_topic", "keypoints_topic",
             "image_transport", "image_qos", "params_file", "weights", "adapt", "node_name",
             "namespace", "log_level")

#: Node outputs recorded, relative to the node's namespace and name, with their types ("": the
#: recorder takes the type and QoS its publisher offers; mesh_faces is latched).
NODE_OUTPUTS = {"bodies": "hmr_ros/msg/SMPLBodyArray",
                "adaptation_status": "hmr_ros/msg/AdaptationStatus", "mesh_faces": ""}
#: Other recorded topics' types (for hmr_ros_recorder, which subscribes to typed topics at once).
TYPES = {"/diagnostics": "diagnostic_msgs/msg/DiagnosticArray", "/tf": "tf2_msgs/msg/TFMessage",
         "camera_info": "sensor_msgs/msg/CameraInfo", "ground_truth": "hmr_ros/msg/SMPLBodyArray",
         "image": "sensor_msgs/msg/Image"}


def rosbag2_installed() -> bool:
    return importlib.util.find_spec("ros2bag") is not None


def _players(choice: str, bag: str, out: str, rate: str, typed: dict[str, str],
             ground_truth: str) -> tuple[object, object]:
    """(recorder, player) actions: rosbag2's or ours."""
    if choice not in ("auto", "ros2bag", "hmr_ros"):
        raise RuntimeError(f"player:={choice} must be auto, ros2bag or hmr_ros")
    if choice == "ros2bag" or (choice == "auto" and rosbag2_installed()):
        return (ExecuteProcess(cmd=["ros2", "bag", "record", "-s", "mcap", "-o", out, *typed],
                               output="screen"),
                ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate],
                               output="screen"))
    from launch_ros.actions import Node

    record = Node(package="hmr_ros", executable="hmr_ros_recorder", output="screen",
                  arguments=["-s", "mcap", "-o", out,
                             *[f"{t}={m}" if m else t for t, m in typed.items()]],
                  parameters=[{"use_sim_time": True}])
    play = Node(package="hmr_ros", executable="hmr_ros_player", output="screen",
                arguments=[bag, "--clock", "--rate", rate, "--linger", "1",
                           "--ready-timeout", "300",
                           *(["--topic", ground_truth] if ground_truth else [])])
    return record, play


def _setup(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    bag = arg("bag")
    if not bag:
        raise RuntimeError("eval_bag.launch.py needs bag:=<input bag>")
    out = arg("out") or f"hmr_ros_eval_{os.path.basename(os.path.normpath(bag))}"
    node = "/".join(p for p in (arg("namespace").strip("/"), arg("node_name") or "hmr_ros")
                    if p)
    typed = {f"/{node}/{t}": m for t, m in NODE_OUTPUTS.items()}
    typed.update({t: TYPES[t] for t in ("/diagnostics", "/tf")})
    camera = arg("camera").rstrip("/")
    typed[arg("camera_info_topic") or f"{camera}/camera_info"] = TYPES["camera_info"]
    if arg("ground_truth_topic"):
        typed[arg("ground_truth_topic")] = TYPES["ground_truth"]
    if arg("record_images").lower() == "true":
        typed[arg("image_topic") or f"{camera}/image_raw"] = TYPES["image"]

    from ament_index_python.packages import get_package_share_directory

    adapt_launch = os.path.join(get_package_share_directory("hmr_ros"), "launch",
                                "adapt.launch.py")
    forwarded = {name: LaunchConfiguration(name) for name in FORWARDED}
    forwarded["use_sim_time"] = "true"
    record, play = _players(arg("player").lower(), bag, out, arg("rate"), typed,
                            arg("ground_truth_topic"))
    return [
        IncludeLaunchDescription(PythonLaunchDescriptionSource(adapt_launch),
                                 launch_arguments=forwarded.items()),
        record,
        TimerAction(period=float(arg("start_delay")), actions=[play]),
        RegisterEventHandler(OnProcessExit(target_action=play, on_exit=[
            TimerAction(period=float(arg("end_delay")), actions=[
                EmitEvent(event=Shutdown(reason="bag played"))])])),
    ]


def generate_launch_description():
    declared = dict(ARGUMENTS)
    for name in FORWARDED:  # defaults of adapt.launch.py: empty keeps the params file's value
        declared.setdefault(name, ("hmr_ros" if name == "node_name" else
                                   "info" if name == "log_level" else "",
                                   "passed to adapt.launch.py"))
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in declared.items()]
        + [OpaqueFunction(function=_setup)])
