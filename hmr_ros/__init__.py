"""hmr_ros: live human mesh recovery with online adaptation for ROS 2.

This file stays empty of code: under colcon it is installed into the package directory that
rosidl generates for our messages (see CMakeLists.txt), and on some distros rosidl's own empty
`__init__.py` wins, so nothing may depend on what is written here. The version is in
`hmr_ros.version`.
"""
