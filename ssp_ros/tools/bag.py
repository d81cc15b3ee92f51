"""ROS 2 bags with rosbags: read image topics (.db3 / .mcap / bag folders, Humble or Jazzy), write new bags.

Reading goes through ``rosbags.highlevel.AnyReader``, which builds its types from the definitions stored
in the bag (so Humble and Jazzy bags both work) and falls back to the Humble typestore for old .db3 bags
without them. Writing makes a rosbag2 folder (format version 8, ``BAG_FORMAT``, which Humble and Jazzy both
read): MCAP unless the name ends in ``.db3``. A bag is written under a temporary name beside its destination
and renamed when complete, so a half-written bag never looks like a finished one.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from ssp_ros.errors import SspError
from ssp_ros.frames import SyntheticFrame
from ssp_ros.ros.images import RosbagsMessages

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
BAG_FORMAT = 8  # the newest rosbag2 format that Humble (the drone) and Jazzy both read
SYNTH_IMAGE_TOPIC = "/camera/image_raw"
SYNTH_LABELS_TOPIC = "/camera/labels"
SYNTH_START_NS = 1_700_000_000 * 1_000_000_000  # synthetic bags start at a fixed, realistic epoch time


def typestore() -> Typestore:
    """The typestore new bags are written with (ROS 2 Humble; the image types are the same in Jazzy)."""
    return get_typestore(Stores.ROS2_HUMBLE)


def labels_topic_beside(image_topic: str) -> str:
    """The labels topic next to an image topic: ``/camera/image_raw`` → ``/camera/labels``."""
    namespace = image_topic.rsplit("/", 1)[0]
    return f"{namespace}/labels"


@contextmanager
def open_bag(path: str | Path) -> Iterator[AnyReader]:
    """An open reader over a rosbag2 folder or a single .db3/.mcap file; SspError names the path."""
    path = Path(path)
    if not path.exists():
        raise SspError(f"{path}: no such bag (a rosbag2 folder, or a .db3 / .mcap file)")
    reader = AnyReader([path], default_typestore=typestore())
    try:
        reader.open()
    except (AnyReaderError, ReaderError, sqlite3.DatabaseError, OSError) as err:
        raise SspError(f"{path}: cannot open as a ROS 2 bag ({err})") from None
    try:
        yield reader
    finally:
        reader.close()


def image_topics(reader: AnyReader) -> list[str]:
    """Topics of the bag that carry Image or CompressedImage messages."""
    return sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})


def topic_connections(reader: AnyReader, topic: str, path: str | Path, types: tuple[str, ...] = IMAGE_TYPES
                      ) -> list[Connection]:
    """The connections of ``topic``; SspError (listing the image topics) if it is missing or of another type."""
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        raise SspError(f"{path}: no topic '{topic}' in this bag (image topics: "
                       f"{', '.join(image_topics(reader)) or 'none'})")
    wrong = sorted({c.msgtype for c in connections if c.msgtype not in types})
    if wrong:
        raise SspError(f"{path}: topic '{topic}' carries {', '.join(wrong)}, expected {' or '.join(types)}")
    return connections


@dataclass
class Record:
    """One stored message: where it came from, its bag time stamp and its bytes."""

    connection: Connection
    time_ns: int
    raw: bytes


def records(reader: AnyReader, connections: list[Connection], path: str | Path) -> Iterator[Record]:
    """The stored messages of ``connections`` in time order; a storage error mid-bag raises SspError
    naming the bag and how far it got."""
    count = 0
    try:
        for connection, time_ns, raw in reader.messages(connections=connections):
            count += 1
            yield Record(connection, time_ns, raw)
    except (AnyReaderError, ReaderError, sqlite3.DatabaseError) as err:
        raise SspError(f"{path}: bag storage is corrupt after {count} messages ({err})") from None


class BagWriter:
    """A new rosbag2 at ``path`` (MCAP, or SQLite for ``*.db3``), written as a context manager.

    ``overwrite`` replaces an existing bag folder (one holding metadata.yaml), never any other folder.
    """

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.store = typestore()
        self.messages = RosbagsMessages(self.store)
        self._connections: dict[str, Connection] = {}
        if self.path.exists():
            if not overwrite:
                raise SspError(f"{self.path}: exists (pass --overwrite to replace it)")
            if not (self.path / "metadata.yaml").is_file():
                raise SspError(f"{self.path}: exists and is not a rosbag2 folder; not replacing it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
        except OSError as err:
            raise SspError(f"{self.path.parent}: cannot write a bag here ({err.strerror})") from None
        plugin = StoragePlugin.SQLITE3 if self.path.suffix == ".db3" else StoragePlugin.MCAP
        # rosbag2 format 8: Humble and Iron read metadata.yaml's offered_qos_profiles as one string, which
        # format 9 turned into a list; Jazzy reads both.
        self._writer = Writer(self._tmp / self.path.name, version=BAG_FORMAT, storage_plugin=plugin)

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._writer.abort()
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        try:
            self._writer.close()
            if self.path.exists():
                shutil.rmtree(self.path)
            os.replace(self._tmp / self.path.name, self.path)
        except (WriterError, OSError) as err:
            raise SspError(f"{self.path}: could not finish writing the bag ({err})") from None
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _connection(self, topic: str, msgtype: str) -> Connection:
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        return self._connections[topic]

    def write(self, topic: str, time_ns: int, msg: Any) -> None:
        """Serialise a message of this writer's typestore (its ``__msgtype__``) onto ``topic``."""
        self.write_raw(topic, msg.__msgtype__, time_ns, self.store.serialize_cdr(msg, msg.__msgtype__))

    def write_raw(self, topic: str, msgtype: str, time_ns: int, raw: bytes | memoryview) -> None:
        """Store already-serialised CDR bytes (e.g. copied from the input bag) onto ``topic``."""
        self._writer.write(self._connection(topic, msgtype), time_ns, raw)


def write_synthetic_bag(frames: Iterable[SyntheticFrame], path: str | Path, overwrite: bool = False,
                        image_topic: str = SYNTH_IMAGE_TOPIC, labels_topic: str = SYNTH_LABELS_TOPIC) -> int:
    """Write a synthetic flight as a bag: rgb8 frames on ``image_topic`` and mono8 class ids on
    ``labels_topic``, both stamped ``SYNTH_START_NS + frame.stamp`` (header and bag time). Returns the count."""
    count = 0
    with BagWriter(path, overwrite) as bag:
        header_type = bag.store.types["std_msgs/msg/Header"]
        time_type = bag.store.types["builtin_interfaces/msg/Time"]
        for frame in frames:
            stamp = SYNTH_START_NS + round(frame.stamp * 1e9)
            header = header_type(stamp=time_type(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
                                 frame_id="camera")
            bag.write(image_topic, stamp, bag.messages.image(header, frame.image, "rgb8"))
            bag.write(labels_topic, stamp, bag.messages.image(header, frame.labels, "mono8"))
            count += 1
    return count
