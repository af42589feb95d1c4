"""Evaluation: error metrics for recovered bodies and their aggregation over streams.

See `hmr_ros.eval.metrics` (MPJPE, PA-MPJPE, PVE, ACCEL, PCK and `MetricReport`).
"""
