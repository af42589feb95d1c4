"""Frames, synthetic world (motions, domains, renderer), datasets and rosbag I/O."""
