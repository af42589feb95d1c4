"""Records (`frame.py`: frames, cameras, keypoints, estimates), crops, video input and the
frame cache of the benchmarks. The synthetic world is `hmr_ros.world`, rosbag I/O
`hmr_ros.messages.bag`."""
