"""hmr_ros: live human mesh recovery with online adaptation for ROS 2.

This file stays free of logic: under colcon it is installed into the package directory that
rosidl generates for our messages (see CMakeLists.txt), so it must not import anything.
"""

__version__ = "0.1.0"
