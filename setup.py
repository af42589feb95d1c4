"""pip install of the ROS-free core and the `hmr-ros` command.

Under ROS 2 the package is built by colcon through CMakeLists.txt instead; this file serves
laptops, CI and anything else without ROS.
"""

from pathlib import Path

from setuptools import find_packages, setup

# The data folders go to <prefix>/share/hmr_ros/<folder>, the same layout colcon installs, so
# hmr_ros.resources finds them the same way in both (and in a source checkout).
DATA_FOLDERS = ("msg", "weights", "config", "launch")
data_files = []
for folder in DATA_FOLDERS:
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            data_files.append((str(Path("share/hmr_ros") / path.parent), [str(path)]))

setup(
    name="hmr_ros",
    version="0.1.0",
    description="Live human mesh recovery with background online adaptation (BOA) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["hmr_ros", "hmr_ros.*"]),
    data_files=data_files,
    package_data={"hmr_ros": ["py.typed"]},
    install_requires=[
        # CPU machines: install torch==2.13.0 first (README); a looser pin here would let pip
        # pull the CUDA build with gigabytes of dependencies.
        "torch>=2.1",
        "numpy>=1.24",
        "smplx==0.1.28",
        "rosbags>=0.10,<0.12",
        # The one distribution of the cv2 module in every install: MediaPipe 0.10.14 (the
        # [mediapipe] extra) requires opencv-contrib-python, and a second distribution of cv2
        # (opencv-python-headless, say) would be overwritten file by file in whatever order
        # pip wrote them. Contrib holds OpenCV 5's HOG people detector; it needs libGL at
        # import (README, Install). `python -m hmr_ros.envcheck` fails on two.
        "opencv-contrib-python>=5.1,<6",
        "pyyaml>=6.0",
        # Progress bars of long commands (hmr_ros/progress.py); 4.66.3 fixed the CLI's
        # argument evaluation (CVE-2024-34062).
        "tqdm>=4.66.3",
    ],
    extras_require={
        # ONNX export and the ONNX Runtime backend (CPU; use onnxruntime-gpu for CUDA).
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        "plot": ["matplotlib>=3.7"],
        # In-process 2D keypoints (hmr_ros/detect/mediapipe_pose.py): 0.10.14 ships the legacy
        # Pose graph with its BlazePose models inside the wheel and runs with numpy 2; later
        # releases pin numpy<2 (0.10.21) or need a downloaded model file (0.10.35, 1.x). It
        # pins protobuf<5 and requires opencv-contrib-python, the core's OpenCV.
        "mediapipe": ["mediapipe==0.10.14"],
        "dev": ["pytest>=8", "ruff>=0.5", "onnx>=1.16", "onnxruntime>=1.18",
                "onnxscript>=0.1", "matplotlib>=3.7", "hypothesis>=6"],
    },
    entry_points={"console_scripts": ["hmr-ros = hmr_ros.cli:main"]},
)
