"""The synthetic world: procedural motions, camera domains, scenes, their ground truth (flow
included) and the source replay crops, drawn with the CPU renderer of `hmr_ros.render`.

A ROS-free source of Frames with ground truth. It builds on the foundations (`geometry`,
`resources`), the body models, the renderer and the records of `data/frame.py` and
`data/crop.py`, and on nothing above them (test/test_world_layers.py checks this).
"""
