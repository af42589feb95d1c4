"""The package version (kept out of __init__.py, which rosidl may replace under colcon)."""

__version__ = "0.1.0"
