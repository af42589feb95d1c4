"""A small bag recorder for machines without rosbag2 (PyPI's ROS 2 has no `ros2 bag record`).

    python -m hmr_ros.ros.recorder -o OUT TOPIC[=TYPE] ... [--ros-args -p use_sim_time:=true]
    ros2 run hmr_ros hmr_ros_recorder -o OUT TOPIC[=TYPE] ...   # the same, from lib/hmr_ros

What `eval_bag.launch.py` needs of `ros2 bag record -s mcap`, nothing more: raw subscriptions
(rclpy hands over the serialized CDR bytes, so nothing is decoded here) to the given topics,
written as they are to a new mcap (or sqlite3) bag through rosbags (`messages.bag.BagWriter`),
which `hmr-ros score` and every other bag reader of this package read. Why two kinds of topic:

- `TOPIC=TYPE` (e.g. `/hmr_ros/bodies=hmr_ros/msg/SMPLBodyArray`) is subscribed at once,
  reliable and volatile (what the node and the player publish), so that nothing published
  after the recorder started is lost to graph discovery;
- a bare `TOPIC` is subscribed when a publisher appears, with the type it offers and a QoS
  that matches every publisher (best effort if any is; transient local if all are, so a
  latched message such as `~/mesh_faces` is recorded however late the recorder came).

Log times are the node's clock: with `use_sim_time` (the played bag's `/clock`), messages that
arrive before the first clock message are held and written with its time, so no message is
stamped 0. SIGINT or SIGTERM (launch's shutdown) closes the bag.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args

from ..messages.bag import BagError, BagWriter
from .player import message_class

#: How often the graph is searched for the publishers of bare topics (s, steady clock: the
#: ROS clock stands still under use_sim_time until the bag plays).
DISCOVERY_PERIOD = 0.1
DEPTH = 100


def parse_topic(text: str) -> tuple[str, str]:
    """`/name=pkg/msg/Type` or `/name` -> (name, type or '')."""
    name, _, msgtype = text.partition("=")
    if not name.startswith("/"):
        raise argparse.ArgumentTypeError(f"topics are absolute names (/...), got {name!r}")
    if msgtype and msgtype.count("/") != 2:
        raise argparse.ArgumentTypeError(f"types are pkg/msg/Name, got {msgtype!r}")
    return name, msgtype


def matching_qos(publishers: list[Any]) -> QoSProfile:
    """A subscription QoS compatible with every publisher of a topic."""
    best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                      for p in publishers)
    latched = bool(publishers) and all(
        p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else
                      ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else
                      DurabilityPolicy.VOLATILE)


class Recorder(Node):
    def __init__(self, out: Path, topics: list[tuple[str, str]], storage: str = "mcap",
                 distro: str = "jazzy") -> None:
        super().__init__("hmr_ros_recorder")
        self.writer = BagWriter(out, storage=storage, distro=distro)
        self.out = out
        self.waiting = {name for name, msgtype in topics if not msgtype}
        self.subscribed: dict[str, str] = {}
        self.pending: list[tuple[str, str, bytes]] = []
        self.counts: dict[str, int] = {}
        for name, msgtype in topics:
            if msgtype:
                self._subscribe(name, msgtype, QoSProfile(
                    history=HistoryPolicy.KEEP_LAST, depth=DEPTH,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE))
        if self.waiting:
            self._timer = self.create_timer(DISCOVERY_PERIOD, self._discover,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"recording {len(topics)} topics to {out}")

    def _subscribe(self, name: str, msgtype: str, qos: QoSProfile) -> None:
        if msgtype not in self.writer.typestore.types:
            raise BagError(f"recorder: no definition of {msgtype} ({name}) to write")
        self.create_subscription(message_class(msgtype), name,
                                 lambda raw, n=name, t=msgtype: self._on_message(n, t, raw),
                                 qos, raw=True)
        self.subscribed[name] = msgtype
        self.counts.setdefault(name, 0)

    def _discover(self) -> None:
        types = dict(self.get_topic_names_and_types())
        for name in sorted(self.waiting):
            if name not in types:
                continue
            publishers = self.get_publishers_info_by_topic(name)
            if not publishers:
                continue
            self._subscribe(name, types[name][0], matching_qos(publishers))
            self.waiting.discard(name)
        if not self.waiting:
            self._timer.cancel()

    def _on_message(self, name: str, msgtype: str, raw: bytes) -> None:
        stamp = self.get_clock().now().nanoseconds
        if stamp == 0:  # use_sim_time, no /clock yet
            self.pending.append((name, msgtype, raw))
            return
        for held in self.pending:
            self._write(*held, stamp)
        self.pending.clear()
        self._write(name, msgtype, raw, stamp)

    def _write(self, name: str, msgtype: str, raw: bytes, stamp: int) -> None:
        self.writer.write_raw(name, msgtype, raw, stamp)
        self.counts[name] += 1

    def close(self) -> None:
        for held in self.pending:  # never got a clock: system time rather than nothing
            self._write(*held, Clock().now().nanoseconds)
        self.pending.clear()
        self.writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hmr_ros.ros.recorder", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("topics", nargs="+", type=parse_topic, metavar="TOPIC[=TYPE]")
    ap.add_argument("-o", "--output", type=Path, required=True,
                    help="bag folder to write (must not exist)")
    ap.add_argument("-s", "--storage", choices=("mcap", "sqlite3"), default="mcap")
    ap.add_argument("--distro", default=os.environ.get("ROS_DISTRO") or "jazzy",
                    help="message definitions written into the bag (default: $ROS_DISTRO, "
                         "else jazzy)")
    # `ros2 run` and launch_ros append --ros-args ...: rclpy's, not ours.
    full = list(sys.argv if argv is None else [sys.argv[0], *argv])
    args = ap.parse_args(remove_ros_args(full)[1:])
    rclpy.init(args=full)
    recorder = None
    try:
        recorder = Recorder(args.output, args.topics, args.storage, args.distro)
        executor = SingleThreadedExecutor()
        executor.add_node(recorder)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except BagError as err:
        print(f"recorder: {err}", file=sys.stderr)
        return 2
    finally:
        # Under `ros2 launch` a Ctrl-C arrives twice (terminal and launch): the second must
        # not interrupt closing the bag.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if recorder is not None:
            recorder.close()
            counts = ", ".join(f"{n} {c}" for n, c in sorted(recorder.counts.items()))
            print(f"recorder: wrote {sum(recorder.counts.values())} messages to "
                  f"{args.output} ({counts}; never published: "
                  f"{', '.join(sorted(recorder.waiting)) or 'none'})", flush=True)
            recorder.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
