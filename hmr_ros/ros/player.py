"""A rosbag player and output probe for the node (there is no `ros2 bag play` here).

    python -m hmr_ros.ros.player BAG [--rate 1] [--remap /camera=/cam] [--node /hmr_ros]
                                     [--out play.json] [--topic /ground_truth/bodies] [--clock]
    ros2 run hmr_ros hmr_ros_player BAG ...        # the same, installed to lib/hmr_ros

Publishes the bag's camera topics (Image, CompressedImage, CameraInfo, Keypoints2DArray, and
ROS4HRI's IdsList and Skeleton2D) at their recorded rate, as the serialized bytes the bag holds
(no conversion in the player, so its own cost stays small), with reliable QoS by default.
`--topic` plays further topics of any type (the ground truth, for `eval_bag.launch.py`), and
then also waits until each has a subscriber (the recorder), so that none of it is lost.
`--clock` publishes `/clock` (rosgraph_msgs/Clock) with each message's recorded time just
before the message, as `ros2 bag play --clock` does, for nodes with use_sim_time.
With `--node`, it also listens to the node's `~/bodies` and `~/adaptation_status` and writes,
per published image, when it was published and when its bodies came back (`--out`, JSON): the
input to `hmr-ros bench node` and to the end-to-end tests. Before playing it waits until the
node subscribes to the image topic and has published its first adaptation status (the node is
built and ready).

Times are `time.monotonic()` seconds (one clock for every process on the machine).
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from rosgraph_msgs.msg import Clock
from visualization_msgs.msg import MarkerArray

from hmr_ros.msg import AdaptationStatus, SMPLBodyArray

from ..messages.bag import CAMERA_INFO, COMPRESSED, IMAGE, KEYPOINTS, BagError, BagReader

# ROS4HRI's tracked ids and 2D skeletons too: a bag can stand in for a ROS4HRI detector.
PLAYED_TYPES = (IMAGE, COMPRESSED, CAMERA_INFO, KEYPOINTS, "hri_msgs/msg/IdsList",
                "hri_msgs/msg/Skeleton2D")
IMAGE_TYPES = (IMAGE, COMPRESSED)


def header_stamp_ns(raw: bytes) -> int:
    """The header stamp of a serialized message whose first field is a std_msgs/Header
    (Image, CameraInfo, ...), read from its CDR bytes without decoding the rest."""
    little = raw[1] & 1  # encapsulation kind: CDR_LE = 1, CDR_BE = 0
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def message_class(msgtype: str) -> type:
    """`sensor_msgs/msg/Image` -> the generated rclpy class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


@dataclass
class PlayRecord:
    """What one run of the player saw (written as JSON)."""

    bag: str
    rate: float
    images_sent: int = 0
    messages_sent: int = 0
    # stamp (ns, as a string key for JSON) -> monotonic publish time (s)
    published: dict[str, float] = field(default_factory=dict)
    # stamp -> monotonic receipt time of the node's ~/bodies for that image (s)
    received: dict[str, float] = field(default_factory=dict)
    # stamp -> ids of the bodies in that message
    ids: dict[str, list[int]] = field(default_factory=dict)
    bodies_messages: int = 0
    status_versions: list[int] = field(default_factory=list)
    status_steps: list[int] = field(default_factory=list)
    play_started: float = 0.0
    play_ended: float = 0.0
    late_ms_max: float = 0.0  # how far behind its schedule the player published, worst case
    cpu_s: float = 0.0  # the player process's own CPU time (user + system), the whole run
    markers_messages: int = 0
    # The node's last "<name>: estimator" diagnostics values (pipeline latency p95 etc.)
    diagnostics: dict[str, str] = field(default_factory=dict)


def _qos(reliable: bool, depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else
                      ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


def _remap(topic: str, remaps: list[tuple[str, str]]) -> str:
    for old, new in remaps:
        if topic == old or topic.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + topic[len(old.rstrip("/")):]
    return topic


class Player(Node):
    def __init__(self, bag: Path, rate: float = 1.0, remaps: list[tuple[str, str]] | None = None,
                 node: str = "", reliable: bool = True, limit: int | None = None,
                 markers: bool = False, exclude: tuple[str, ...] = (),
                 keypoints_first: bool = False, extra: tuple[str, ...] = (),
                 clock: bool = False) -> None:
        super().__init__("hmr_ros_player")
        self.rate = float(rate)
        self.record = PlayRecord(str(bag), self.rate)
        try:
            reader = BagReader(bag)
        except BagError as err:
            raise SystemExit(f"player: {err}") from err
        with reader:
            topics = {t.name: t.msgtype for t in reader.topics()
                      if (t.msgtype in PLAYED_TYPES or t.name in extra)
                      and t.name not in exclude}
            missing = sorted(set(extra) - set(topics))
            if missing:
                raise SystemExit(f"player: {bag} has no topic {', '.join(missing)} "
                                 f"({reader.describe()})")
            if not any(m in IMAGE_TYPES for m in topics.values()):
                raise SystemExit(f"player: {bag} has no image topic ({reader.describe()})")
            self.messages = []
            images = 0
            for m in reader.raw_messages(list(topics)):
                if limit is not None and m.msgtype in IMAGE_TYPES:
                    if images >= limit:
                        break
                    images += 1
                self.messages.append(m)
        if keypoints_first:  # each frame's keypoints just before its image (stable sort)
            self.messages.sort(key=lambda m: (m.timestamp_ns, m.msgtype != KEYPOINTS))
        remaps = remaps or []
        self.pubs = {t: self.create_publisher(message_class(m), _remap(t, remaps),
                                              _qos(reliable, 10)) for t, m in topics.items()}
        self.image_pubs = [p for t, p in self.pubs.items() if topics[t] in IMAGE_TYPES]
        self.extra_pubs = [self.pubs[t] for t in extra]
        self.clock_pub = self.create_publisher(Clock, "/clock", _qos(True, 10)) if clock \
            else None
        self._lock = threading.Lock()
        self.node = node.rstrip("/")
        if self.node:
            self.create_subscription(SMPLBodyArray, f"{self.node}/bodies", self._on_bodies,
                                     _qos(True, 50))
            self.create_subscription(AdaptationStatus, f"{self.node}/adaptation_status",
                                     self._on_status, _qos(True, 10))
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                     _qos(True, 10))
            if markers:  # the node builds markers only for a subscriber (as RViz would be)
                # raw: decoding 9k Points per body in Python would stall this process (its
                # publishing thread shares the GIL) and skew the timings it records.
                self.create_subscription(MarkerArray, f"{self.node}/markers",
                                         self._on_markers, _qos(True, 1), raw=True)

    # ------------------------------------------------------------ probe (executor thread)

    def _on_bodies(self, msg: Any) -> None:
        now = time.monotonic()
        key = str(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        with self._lock:
            self.record.bodies_messages += 1
            self.record.received.setdefault(key, now)
            self.record.ids[key] = [int(b.id) for b in msg.bodies]

    def _on_status(self, msg: Any) -> None:
        with self._lock:
            self.record.status_versions.append(int(msg.model_version))
            self.record.status_steps.append(int(msg.steps))

    def _on_diagnostics(self, msg: Any) -> None:
        name = f"{self.node.strip('/').split('/')[-1]}: estimator"
        for status in msg.status:
            if status.name == name:
                with self._lock:
                    self.record.diagnostics = {v.key: v.value for v in status.values}

    def _on_markers(self, msg: Any) -> None:
        with self._lock:
            self.record.markers_messages += 1

    # ------------------------------------------------------------ playing (own thread)

    def ready(self) -> bool:
        subscribed = all(p.get_subscription_count() > 0
                         for p in self.image_pubs + self.extra_pubs)
        with self._lock:
            return subscribed and (not self.node or bool(self.record.status_versions))

    def play(self) -> None:
        """Publish every message at its recorded time offset / rate (busy-free sleeps)."""
        if not self.messages:
            return
        t0_bag = self.messages[0].timestamp_ns
        start = time.monotonic()
        self.record.play_started = start
        for m in self.messages:
            due = start + (m.timestamp_ns - t0_bag) / 1e9 / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.record.late_ms_max = max(self.record.late_ms_max, -delay * 1e3)
            pub = self.pubs[m.topic]
            if self.clock_pub is not None:
                now = Clock()
                now.clock.sec, now.clock.nanosec = divmod(m.timestamp_ns, 1_000_000_000)
                self.clock_pub.publish(now)
            if m.msgtype in IMAGE_TYPES:
                key = str(header_stamp_ns(m.msg))
                with self._lock:
                    self.record.published[key] = time.monotonic()
                    self.record.images_sent += 1
            pub.publish(m.msg)
            self.record.messages_sent += 1
        self.record.play_ended = time.monotonic()


def run(bag: Path, rate: float = 1.0, remaps: list[tuple[str, str]] | None = None,
        node: str = "", reliable: bool = True, ready_timeout: float = 60.0,
        linger: float = 2.0, limit: int | None = None, markers: bool = False,
        exclude: tuple[str, ...] = (), keypoints_first: bool = False,
        extra: tuple[str, ...] = (), clock: bool = False) -> PlayRecord:
    """Wait for the node, play the bag, wait `linger` s for the last bodies; the record."""
    player = Player(bag, rate, remaps, node, reliable, limit, markers, exclude, keypoints_first,
                    extra, clock)
    executor = SingleThreadedExecutor()
    executor.add_node(player)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + ready_timeout
        while not player.ready():
            if time.monotonic() > deadline:
                raise SystemExit(f"player: nobody subscribed to the image topic (or to a "
                                 f"--topic, or no status from {node or 'the node'}) within "
                                 f"{ready_timeout:.0f} s")
            time.sleep(0.05)
        cpu0 = _cpu_s()
        player.play()
        time.sleep(linger)
        player.record.cpu_s = _cpu_s() - cpu0
    finally:
        # The spinning thread must have left rclpy before the node and context go, or the
        # C++ side aborts the process at exit ("terminate called without an active
        # exception").
        executor.shutdown(timeout_sec=2.0)
        spin.join(timeout=5.0)
        player.destroy_node()
    return player.record


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parse_remap(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"--remap wants OLD=NEW, got {text!r}")
    return old, new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hmr_ros.ros.player", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bag", type=Path)
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    ap.add_argument("--remap", type=_parse_remap, action="append", default=[],
                    help="topic prefix OLD=NEW, e.g. /camera=/robot/camera (repeatable)")
    ap.add_argument("--node", default="", help="node whose ~/bodies to record, e.g. /hmr_ros")
    ap.add_argument("--best-effort", action="store_true", help="publish best effort")
    ap.add_argument("--markers", action=argparse.BooleanOptionalAction, default=False,
                    help="subscribe to the node's ~/markers (it builds them only then)")
    ap.add_argument("--limit", type=int, default=None, help="play at most this many images")
    ap.add_argument("--exclude", action="append", default=[], metavar="TOPIC",
                    help="a bag topic not to play, e.g. /camera/keypoints (repeatable)")
    ap.add_argument("--linger", type=float, default=2.0, help="s to listen after the last image")
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--out", type=Path, help="write the record as JSON")
    ap.add_argument("--keypoints-first", action="store_true",
                    help="publish each frame's keypoints just before its image (the bag "
                         "order otherwise)")
    ap.add_argument("--topic", action="append", default=[], metavar="TOPIC",
                    help="also play this bag topic, of any type, and wait for a subscriber "
                         "to it before playing, e.g. /ground_truth/bodies (repeatable)")
    ap.add_argument("--clock", action="store_true",
                    help="publish /clock with the recorded time of each message")
    # `ros2 run` and launch_ros append --ros-args ...: rclpy's, not ours.
    full = list(sys.argv if argv is None else [sys.argv[0], *argv])
    args = ap.parse_args(remove_ros_args(full)[1:])
    rclpy.init(args=full)
    try:
        record = run(args.bag, args.rate, args.remap, args.node, not args.best_effort,
                     args.ready_timeout, args.linger, args.limit, args.markers,
                     tuple(args.exclude), args.keypoints_first, tuple(args.topic), args.clock)
    finally:
        if rclpy.ok():
            rclpy.shutdown()
    got = sum(1 for k in record.published if k in record.received)
    print(f"player: {record.images_sent} images sent" + (
        f", {got} answered with bodies ({record.bodies_messages} bodies messages)"
        if args.node else ""), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
