"""The ROS 2 interface, the only package code that imports ROS: `node.py` (the node),
`player.py` (a bag player and output probe) and `launch_file.py` (launch). The rest of it
(`engine.py`, the sinks, and the conversions in `hmr_ros.messages`) is written against message
fields and runs on rosbags' message classes without ROS."""
