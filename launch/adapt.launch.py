"""Launch the hmr_ros node with online adaptation.

    ros2 launch hmr_ros adapt.launch.py camera:=/camera
    ros2 launch hmr_ros adapt.launch.py keypoints_topic:=/detector/keypoints adapt:=false
    ros2 launch hmr_ros adapt.launch.py params_file:=/path/my.yaml weights:=/path/model.pt
    ros2 launch hmr_ros adapt.launch.py camera:=/camera rviz:=true   # + rviz2, config/hmr_ros.rviz

Parameters come from `params_file` (default: the installed config/adapt.yaml), then from the
arguments below, which override the file only when given (an empty argument keeps the file's
value; the topic arguments default to <camera>/image_raw, <camera>/camera_info and
<camera>/keypoints when `camera` is given). Every parameter is documented in docs/ros.md.
"""

import os
import tempfile

import yaml
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

#: Launch argument -> (default, description).
ARGUMENTS = {
    "camera": ("", "namespace of the camera topics, e.g. /camera: sets image_topic, "
                   "camera_info_topic and keypoints_topic to <camera>/image_raw, "
                   "<camera>/camera_info, <camera>/keypoints unless those are given"),
    "image_topic": ("", "sensor_msgs/Image topic (empty: <camera>/image_raw or the params "
                        "file)"),
    "camera_info_topic": ("", "sensor_msgs/CameraInfo topic (empty: <camera>/camera_info or "
                              "the params file)"),
    "keypoints_topic": ("", "hmr_ros/Keypoints2DArray topic (empty: <camera>/keypoints or "
                            "the params file; 'none': no topic, people from the in-process "
                            "MediaPipe detector when installed)"),
    "image_transport": ("", "raw or compressed (empty: the params file)"),
    "image_qos": ("", "sensor_data, reliable or best_effort (empty: the params file; use "
                      "reliable when the publisher is reliable and frames must not be lost)"),
    "markers": ("", "true/false: publish ~/markers (empty: the params file)"),
    "hri": ("", "true/false: REP-155 (ROS4HRI) /humans/bodies/* output (empty: the params "
                "file; on when hri_msgs is installed)"),
    "params_file": ("", "ROS parameters YAML (empty: share/hmr_ros/config/adapt.yaml)"),
    "weights": ("", "regressor checkpoint (empty: the params file, else the bundled one)"),
    "adapt": ("", "true/false: adapt online from the start (empty: the params file)"),
    "use_sim_time": ("false", "use /clock (true when playing a bag with --clock)"),
    "node_name": ("hmr_ros", "name of the node (its topics are ~/bodies etc.)"),
    "namespace": ("", "namespace of the node"),
    "log_level": ("info", "ROS log level of the node"),
    "rviz": ("false", "true: also start rviz2 with share/hmr_ros/config/hmr_ros.rviz (its "
                      "topics assume the default node_name, namespace and camera topics)"),
}

#: Launch argument -> the node parameter it sets (test/test_ros_params.py checks that each
#: exists in the core config or NodeConfig).
PARAMETER_ARGUMENTS = {
    "image_topic": "image_topic",
    "camera_info_topic": "camera_info_topic",
    "keypoints_topic": "keypoints_topic",
    "image_transport": "image_transport",
    "image_qos": "image_qos",
    "markers": "publish_markers",
    "hri": "publish_hri",
    "weights": "inference.weights",
    "adapt": "adapt.enabled",
    "use_sim_time": "use_sim_time",
}

#: Topic arguments derived from `camera` when not given.
CAMERA_TOPICS = {"image_topic": "image_raw", "camera_info_topic": "camera_info",
                 "keypoints_topic": "keypoints"}

_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _default_params_file():
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("hmr_ros"), "config", "adapt.yaml")


def _overrides(context):
    """{parameter: value} for the arguments that were given (typed: bools for adapt and
    use_sim_time, strings otherwise)."""
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    camera = arg("camera").rstrip("/")
    out = {}
    for name, param in PARAMETER_ARGUMENTS.items():
        value = arg(name)
        if not value and camera and name in CAMERA_TOPICS:
            value = f"{camera}/{CAMERA_TOPICS[name]}"
        if not value:
            continue
        if name in ("adapt", "use_sim_time", "markers", "hri"):
            if value.lower() not in _BOOLEANS:
                raise ValueError(f"{name}:={value} must be true or false")
            out[param] = _BOOLEANS[value.lower()]
        elif name == "keypoints_topic" and value.lower() == "none":
            out[param] = ""
        else:
            out[param] = value
    return out


def _launch_setup(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context).strip() or \
        _default_params_file()
    # The overrides go through a second params file rather than a parameter dict: rcl's YAML
    # parser keeps every value's type (an empty string stays a string), whereas launch_ros
    # evaluates dict values with YAML rules.
    handle, overrides_file = tempfile.mkstemp(prefix="hmr_ros_launch_", suffix=".yaml")
    with os.fdopen(handle, "w") as f:
        yaml.safe_dump({"/**": {"ros__parameters": _overrides(context)}}, f)
    node = Node(
        package="hmr_ros",
        executable="hmr_ros_node",
        name=LaunchConfiguration("node_name").perform(context),
        namespace=LaunchConfiguration("namespace").perform(context),
        output="screen",
        emulate_tty=True,
        parameters=[params_file, overrides_file],
        arguments=["--ros-args", "--log-level",
                   LaunchConfiguration("log_level").perform(context)],
    )
    return [node]


def _rviz():
    """rviz2 with the installed config/hmr_ros.rviz, only with rviz:=true. The share
    directory is looked up when the action runs, so rviz:=false needs neither rviz2 nor the
    lookup."""
    return Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        output="screen",
        arguments=["-d", PathJoinSubstitution([FindPackageShare("hmr_ros"), "config",
                                               "hmr_ros.rviz"])],
        # With a bag played --clock the outputs carry the bag's stamps: RViz must use the
        # same clock, or it drops them as too old.
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_launch_setup), _rviz()])
