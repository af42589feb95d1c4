"""Run one of our launch files without the `ros2` command line (absent from PyPI's ROS 2).

    python -m hmr_ros.ros.launch_file adapt.launch.py camera:=/camera image_qos:=reliable

does what `ros2 launch hmr_ros adapt.launch.py ...` does: the file is taken from the installed
share/hmr_ros/launch (or used as a path), its `name:=value` arguments are passed on, and a
`LaunchService` runs it until its processes end or it gets SIGINT/SIGTERM, which it forwards
to the node (escalating to SIGTERM only after launch's own timeout). The exit code is
launch's.
"""

from __future__ import annotations

import os
import sys

from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription, LaunchService


def find_launch_file(name: str) -> str:
    if os.path.isfile(name):
        return os.path.abspath(name)
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = get_package_share_directory("hmr_ros")
    except PackageNotFoundError as err:
        raise SystemExit(f"launch_file: {name} is not a file and hmr_ros is not installed in "
                         "a sourced workspace (. <ws>/activate)") from err
    path = os.path.join(share, "launch", name)
    if not os.path.isfile(path):
        known = sorted(os.listdir(os.path.join(share, "launch")))
        raise SystemExit(f"launch_file: no {name} in {share}/launch (there: {', '.join(known)})")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    path = find_launch_file(argv[0])
    arguments = []
    for item in argv[1:]:
        name, sep, value = item.partition(":=")
        if not sep:
            raise SystemExit(f"launch_file: arguments are name:=value, got {item!r}")
        arguments.append((name, value))
    service = LaunchService(argv=argv[1:])
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path), launch_arguments=arguments)]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
