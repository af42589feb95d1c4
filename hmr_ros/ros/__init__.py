"""The ROS 2 interface. Only `node.py` (and the launch tests) import rclpy; `convert.py` is
written against message fields and works on rosbags' message classes without ROS."""
