"""Reading and writing rosbag2 files (mcap or sqlite3) without ROS, through `rosbags`.

Reading is defensive, because bags in the wild come from many rosbag2 versions: our message
types and a Humble type store are supplied for bags without embedded definitions (Humble's
sqlite3), and when rosbags' high-level reader refuses a bag (an empty storage identifier left
by `ros2 bag reindex`, service-event or IDL schemas it cannot parse) the low-level reader is
used on the storage files and only topics whose types we know are decoded. Whatever cannot be
read raises `BagError` saying why and what the bag holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader as Rosbag2Reader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from ..errors import HmrRosError
from .definitions import hmr_typestore
from .factory import RosbagsFactory

log = logging.getLogger("hmr_ros")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
KEYPOINTS = "hmr_ros/msg/Keypoints2DArray"
BODIES = "hmr_ros/msg/SMPLBodyArray"


def _short(err: Exception, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class BagError(HmrRosError, RuntimeError):
    """A bag that cannot be opened or lacks what was asked for."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    timestamp_ns: int  # log time
    msg: Any


class BagReader:
    """Opens a bag directory or a bare .mcap/.db3 file and yields decoded messages."""

    def __init__(self, path: str | Path, distro: str = "humble") -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path} does not exist")
        self.typestore = hmr_typestore(distro)
        self.mode = ""
        self.notes: list[str] = []
        self._open()

    # -- opening

    def _open(self) -> None:
        errors = []
        for target in self._targets():
            try:
                self._reader = AnyReader([target], default_typestore=self.typestore)
                self._reader.open()
                self.mode = "anyreader"
                self._target = target
                self._connections = list(self._reader.connections)
                return
            except Exception as err:  # rosbags raises several error types
                errors.append(f"AnyReader({target.name}): {_short(err)}")
        for target in self._targets():
            try:
                self._reader = Rosbag2Reader(target)
                self._reader.open()
                self.mode = "rosbag2"
                self._target = target
                self._connections = list(self._reader.connections)
                self._register_embedded()
                self.notes.append("opened with the low-level reader: " + "; ".join(errors))
                return
            except Exception as err:
                errors.append(f"Reader({target.name}): {_short(err)}")
        raise BagError(f"cannot open {self.path} as a rosbag2 bag: " + "; ".join(errors))

    def _register_embedded(self) -> None:
        """Register the .msg definitions the bag embeds, one type at a time, so that one
        unparseable schema (a service event, IDL) does not hide the others."""
        for conn in self._connections:
            if conn.msgtype in self.typestore.types or conn.msgdef is None:
                continue
            if getattr(conn.msgdef.format, "name", "") != "MSG" or not conn.msgdef.data:
                continue
            try:
                self.typestore.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
            except Exception as err:
                log.debug("cannot register %s from %s: %s", conn.msgtype, conn.topic, err)

    def _targets(self) -> list[Path]:
        """The directory itself, then its storage files (for a broken metadata.yaml)."""
        if self.path.is_file():
            return [self.path]
        out = [self.path]
        files = sorted(self.path.glob("*.mcap")) + sorted(self.path.glob("*.db3"))
        if len(files) == 1:
            out.append(files[0])
        return out

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- contents

    def topics(self) -> list[TopicInfo]:
        counts: dict[tuple[str, str], int] = {}
        for c in self._connections:
            key = (c.topic, c.msgtype)
            counts[key] = counts.get(key, 0) + int(getattr(c, "msgcount", 0) or 0)
        return [TopicInfo(t, m, n) for (t, m), n in sorted(counts.items())]

    def describe(self) -> str:
        return ", ".join(f"{t.name} [{t.msgtype}, {t.count}]" for t in self.topics()) or "none"

    def topics_of(self, *msgtypes: str) -> list[str]:
        return [t.name for t in self.topics() if t.msgtype in msgtypes]

    def decodable(self, msgtype: str) -> bool:
        if self.mode == "anyreader":
            return True
        return msgtype in self.typestore.types

    def messages(self, topics: Sequence[str]) -> Iterator[BagMessage]:
        """Decoded messages of `topics` in log-time order; undecodable ones are skipped with
        one warning per topic (never silently)."""
        wanted = [c for c in self._connections if c.topic in set(topics)]
        warned: set[str] = set()
        for conn, timestamp, raw in self._records(wanted):
            try:
                if self.mode == "anyreader":
                    msg = self._reader.deserialize(raw, conn.msgtype)
                else:
                    msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            except Exception as err:
                if conn.topic not in warned:
                    log.warning("skipping undecodable messages on %s (%s): %s", conn.topic,
                                conn.msgtype, err)
                    warned.add(conn.topic)
                continue
            yield BagMessage(conn.topic, conn.msgtype, int(timestamp), msg)


    def raw_messages(self, topics: Sequence[str]) -> Iterator[BagMessage]:
        """The serialized (CDR) bytes of `topics` in log-time order, undecoded: what a player
        publishes as is (`BagMessage.msg` is `bytes`)."""
        wanted = [c for c in self._connections if c.topic in set(topics)]
        for conn, timestamp, raw in self._records(wanted):
            yield BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(raw))

    def _records(self, connections: list[Any]) -> Iterator[tuple[Any, int, bytes]]:
        """The storage's records; a storage file that breaks while being read (a truncated
        chunk, a bad index, corrupt compression) ends the read with a BagError saying how
        far it got, instead of the storage library's exception."""
        count = 0
        try:
            for conn, timestamp, raw in self._reader.messages(connections=connections):
                count += 1
                yield conn, timestamp, raw
        except Exception as err:  # rosbags raises several error types
            raise BagError(f"{self.path}: the bag is damaged after {count} messages: "
                           f"{_short(err)}") from None


class BagWriter:
    """Writes our and standard messages to a new bag (mcap by default)."""

    def __init__(self, path: str | Path, storage: str = "mcap", distro: str = "humble") -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} already exists; choose a new output path")
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise BagError(f"storage must be mcap or sqlite3, not {storage!r}")
        self.typestore = hmr_typestore(distro)
        self.factory = RosbagsFactory(self.typestore)
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.count = 0

    def write(self, topic: str, msgtype: str, msg: Any, timestamp_ns: int) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = conn
        self._writer.write(conn, int(timestamp_ns), self.typestore.serialize_cdr(msg, msgtype))
        self.count += 1

    def write_raw(self, topic: str, msgtype: str, raw: bytes, timestamp_ns: int) -> None:
        """Write an already serialized (CDR) message as it is, e.g. what a raw rclpy
        subscription received; `msgtype` must be in the typestore (its definition goes into
        the bag)."""
        conn = self._connections.get(topic)
        if conn is None:
            if msgtype not in self.typestore.types:
                raise BagError(f"no definition of {msgtype} (topic {topic}) to write to "
                               f"{self.path}")
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = conn
        self._writer.write(conn, int(timestamp_ns), bytes(raw))
        self.count += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------ frames from bags


@dataclass(frozen=True)
class FrameTopics:
    """Which topics make up the frames of a bag (empty = none / auto-detect)."""

    image: str
    camera_info: str = ""
    keypoints: str = ""
    ground_truth: str = ""


def _pick(candidates: list[str], preferred: Sequence[str]) -> str:
    for word in preferred:
        hits = [c for c in candidates if word in c]
        if len(hits) == 1:
            return hits[0]
    return candidates[0] if len(candidates) == 1 else ""


def detect_topics(reader: BagReader, image: str = "", camera_info: str = "",
                  keypoints: str = "", ground_truth: str = "") -> FrameTopics:
    """Fill in the topics not given: the single Image (or CompressedImage) topic, the
    CameraInfo in the same namespace, the single keypoint topic, a ground-truth body topic.
    BagError lists the bag's topics when no image topic can be chosen."""
    topics = {t.name: t.msgtype for t in reader.topics()}
    for name, given in (("image", image), ("camera_info", camera_info),
                        ("keypoints", keypoints), ("ground_truth", ground_truth)):
        if given and given not in topics:
            raise BagError(f"--{name.replace('_', '-')}-topic {given} is not in {reader.path}; "
                           f"topics: {reader.describe()}")
    if not image:
        images = [t for t, m in topics.items() if m in (IMAGE, COMPRESSED)]
        image = _pick(images, ("image_rect", "image_raw", "image_color", "image"))
        if not image:
            what = ("no sensor_msgs/msg/Image or CompressedImage topic" if not images else
                    f"several image topics ({', '.join(images)}); choose one with --image-topic")
            raise BagError(f"{reader.path}: {what}. Topics: {reader.describe()}")
    elif topics[image] not in (IMAGE, COMPRESSED):
        raise BagError(f"{image} carries {topics[image]}, not an image")
    ns = image.rsplit("/", 1)[0]
    if not camera_info:
        infos = [t for t, m in topics.items() if m == CAMERA_INFO]
        same_ns = [t for t in infos if t.rsplit("/", 1)[0] == ns]
        camera_info = same_ns[0] if len(same_ns) == 1 else _pick(infos, ("camera_info",))
    if not keypoints:
        keypoints = _pick([t for t, m in topics.items() if m == KEYPOINTS], ("keypoints",))
    if not ground_truth:
        bodies = [t for t, m in topics.items() if m == BODIES]
        truth = [t for t in bodies if "ground_truth" in t or "groundtruth" in t]
        ground_truth = truth[0] if len(truth) == 1 else ""
    return FrameTopics(image, camera_info, keypoints, ground_truth)
