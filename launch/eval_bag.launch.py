"""Evaluate the running node on a bag: play it into the node and record the node's outputs.

    hmr-ros synth --domain pw3d_like --seed 3 --duration 20 --out /tmp/in      # or your bag
    ros2 launch hmr_ros eval_bag.launch.py bag:=/tmp/in out:=/tmp/node_out
    python3 -m hmr_ros.eval.bag_eval /tmp/node_out                              # scores

Starts adapt.launch.py with use_sim_time (all its arguments can be given here too: camera,
keypoints_topic, weights, adapt, params_file, ...), then `ros2 bag record -s mcap` of the node's
outputs plus the played ground truth and camera info, then (after `start_delay` s, so the node
has loaded its weights and the recorder has subscribed) `ros2 bag play --clock` of the input.
When playback ends, it waits `end_delay` s for the last frames and shuts everything down, which
closes the recorded bag. The node takes the newest frame when it falls behind, so the scores
are those of the node at the played `rate`, dropped frames included (docs/ros.md).
"""

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
}

#: Arguments passed through to adapt.launch.py unchanged (besides use_sim_time:=true).
FORWARDED = ("camera", "image_topic", "camera_info_topic", "keypoints_topic",
             "image_transport", "params_file", "weights", "adapt", "node_name", "namespace",
             "log_level")

#: Node outputs recorded, relative to the node's namespace and name.
NODE_OUTPUTS = ("bodies", "adaptation_status", "mesh_faces")


def _setup(context, *args, **kwargs):
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    bag = arg("bag")
    if not bag:
        raise RuntimeError("eval_bag.launch.py needs bag:=<input bag>")
    out = arg("out") or f"hmr_ros_eval_{os.path.basename(os.path.normpath(bag))}"
    node = "/".join(p for p in (arg("namespace").strip("/"), arg("node_name") or "hmr_ros")
                    if p)
    topics = [f"/{node}/{t}" for t in NODE_OUTPUTS] + ["/diagnostics", "/tf"]
    camera = arg("camera").rstrip("/")
    topics.append(arg("camera_info_topic") or f"{camera}/camera_info")
    if arg("ground_truth_topic"):
        topics.append(arg("ground_truth_topic"))
    if arg("record_images").lower() == "true":
        topics.append(arg("image_topic") or f"{camera}/image_raw")

    from ament_index_python.packages import get_package_share_directory

    adapt_launch = os.path.join(get_package_share_directory("hmr_ros"), "launch",
                                "adapt.launch.py")
    forwarded = {name: LaunchConfiguration(name) for name in FORWARDED}
    forwarded["use_sim_time"] = "true"
    record = ExecuteProcess(cmd=["ros2", "bag", "record", "-s", "mcap", "-o", out, *topics],
                            output="screen")
    play = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", arg("rate")],
                          output="screen")
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
