from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ssp_ros.errors import SspError
from ssp_ros.ros.images import image_pixels, message_to_rgb, stamp_ns
from ssp_ros.tools.bag import (
    SYNTH_IMAGE_TOPIC,
    SYNTH_LABELS_TOPIC,
    SYNTH_START_NS,
    BagWriter,
    labels_topic_beside,
    open_bag,
    records,
    topic_connections,
    write_synthetic_bag,
)


@pytest.mark.parametrize("name", ["drone.mcap", "drone.db3"])
def test_synthetic_bag_round_trips(small_video, tmp_path: Path, name: str) -> None:
    frames = small_video[:3]
    assert write_synthetic_bag(frames, tmp_path / name) == 3
    with open_bag(tmp_path / name) as reader:
        storage = {"drone.mcap": ".mcap", "drone.db3": ".db3"}[name]
        assert list((tmp_path / name).glob(f"*{storage}")), "storage follows the name"
        images = list(records(reader, topic_connections(reader, SYNTH_IMAGE_TOPIC, name), name))
        labels = list(records(reader, topic_connections(reader, SYNTH_LABELS_TOPIC, name), name))
        assert len(images) == len(labels) == 3
        for frame, image, label in zip(frames, images, labels):
            msg = reader.deserialize(image.raw, image.connection.msgtype)
            assert msg.encoding == "rgb8" and msg.header.frame_id == "camera"
            assert stamp_ns(msg.header) == image.time_ns == SYNTH_START_NS + round(frame.stamp * 1e9)
            np.testing.assert_array_equal(message_to_rgb(msg), frame.image)
            np.testing.assert_array_equal(image_pixels(reader.deserialize(label.raw, label.connection.msgtype)),
                                          frame.labels)


def test_bags_written_with_the_jazzy_typestore_are_read(tmp_path: Path) -> None:
    store = get_typestore(Stores.ROS2_JAZZY)
    types = store.types
    msg = types["sensor_msgs/msg/Image"](
        header=types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=2),
                                            frame_id="cam"),
        height=2, width=2, encoding="mono8", is_bigendian=0, step=2, data=np.array([1, 2, 3, 4], np.uint8))
    with Writer(tmp_path / "jazzy", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/cam", msg.__msgtype__, typestore=store)
        writer.write(connection, 5, store.serialize_cdr(msg, msg.__msgtype__))
    with open_bag(tmp_path / "jazzy") as reader:
        (record,) = records(reader, topic_connections(reader, "/cam", "jazzy"), "jazzy")
        assert image_pixels(reader.deserialize(record.raw, record.connection.msgtype)).tolist() == [[1, 2], [3, 4]]


def test_missing_topic_lists_the_image_topics(small_video, tmp_path: Path) -> None:
    write_synthetic_bag(small_video[:1], tmp_path / "b.mcap")
    with open_bag(tmp_path / "b.mcap") as reader:
        with pytest.raises(SspError, match=r"no topic '/cam/image' in this bag \(image topics: /camera/image_raw, "
                                           r"/camera/labels\)"):
            topic_connections(reader, "/cam/image", "b.mcap")
        with pytest.raises(SspError, match="carries sensor_msgs/msg/Image, expected sensor_msgs/msg/CompressedImage"):
            topic_connections(reader, SYNTH_IMAGE_TOPIC, "b.mcap", ("sensor_msgs/msg/CompressedImage",))


def test_unreadable_bags_are_named(tmp_path: Path) -> None:
    with pytest.raises(SspError, match=r"nope\.mcap: no such bag"):
        with open_bag(tmp_path / "nope.mcap"):
            pass
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"this is not an mcap file")
    with pytest.raises(SspError, match=r"junk\.mcap: cannot open as a ROS 2 bag"):
        with open_bag(junk):
            pass


def test_writer_never_leaves_half_a_bag(small_video, tmp_path: Path) -> None:
    out = tmp_path / "out.mcap"
    with pytest.raises(RuntimeError, match="boom"):
        with BagWriter(out) as bag:
            bag.write_raw("/x", "sensor_msgs/msg/Image", 1, b"\x00\x01")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [], "nothing at the destination, no partial folder"


def test_writer_refuses_to_replace_unless_told(small_video, tmp_path: Path) -> None:
    out = tmp_path / "out.mcap"
    write_synthetic_bag(small_video[:1], out)
    with pytest.raises(SspError, match=r"out\.mcap: exists \(pass --overwrite"):
        write_synthetic_bag(small_video[:2], out)
    write_synthetic_bag(small_video[:2], out, overwrite=True)
    with open_bag(out) as reader:
        assert len(list(records(reader, topic_connections(reader, SYNTH_IMAGE_TOPIC, out), out))) == 2
    folder = tmp_path / "notabag"
    folder.mkdir()
    with pytest.raises(SspError, match="is not a rosbag2 folder; not replacing it"):
        BagWriter(folder, overwrite=True)


def test_labels_topic_sits_beside_the_image_topic() -> None:
    assert labels_topic_beside("/camera/image_raw") == "/camera/labels"
    assert labels_topic_beside("/drone/cam/image_raw/compressed") == "/drone/cam/image_raw/labels"


def test_bags_without_stored_definitions_use_the_humble_types(small_video, tmp_path: Path) -> None:
    """Humble's rosbag2 writes .db3 files without message definitions: the reader falls back to Humble's."""
    import sqlite3

    write_synthetic_bag(small_video[:1], tmp_path / "old.db3")
    (database,) = (tmp_path / "old.db3").glob("*.db3")
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM message_definitions")
    with open_bag(tmp_path / "old.db3") as reader:
        assert all(not c.msgdef.data for c in reader.connections)
        (record,) = records(reader, topic_connections(reader, SYNTH_IMAGE_TOPIC, "old.db3"), "old.db3")
        np.testing.assert_array_equal(message_to_rgb(reader.deserialize(record.raw, record.connection.msgtype)),
                                      small_video[0].image)


@pytest.mark.parametrize("name", ["drone.mcap", "drone.db3"])
def test_written_bags_are_readable_by_humble(small_video, tmp_path: Path, name: str) -> None:
    """Humble's rosbag2 (metadata_io.cpp) reads ``offered_qos_profiles`` as one YAML string and knows formats up
    to 8; rosbags' format 9 writes a list there. Our bags' metadata.yaml is read here the way Humble does."""
    write_synthetic_bag(small_video[:2], tmp_path / name)
    info = yaml.safe_load((tmp_path / name / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8
    topics = info["topics_with_message_count"]
    assert {t["topic_metadata"]["name"] for t in topics} == {SYNTH_IMAGE_TOPIC, "/camera/labels"}
    for topic in topics:
        qos = topic["topic_metadata"]["offered_qos_profiles"]
        assert isinstance(qos, str), f"Humble cannot read offered_qos_profiles of type {type(qos).__name__}"
        assert isinstance(yaml.safe_load(qos) or [], list), "the string itself holds the YAML list of profiles"
