"""The synthetic world: procedural motions, camera domains, scenes and the CPU renderer.

A ROS-free source of Frames with ground truth. It builds on the foundations (`geometry`,
`resources`), the body models and the records of `data/frame.py` and `data/crop.py`, and on
nothing above them (test/test_world_layers.py checks this).
"""
