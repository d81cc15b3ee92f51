"""Cyclone DDS transport without the model: ROS 2 wire types, names, QoS, and a loopback round trip. Waits on
discovery and delivery are bounded by node_harness.HUNG_S: long enough for a loaded machine, reached only when hung."""

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dds_domains import CYCLONE_TRANSPORT, private_domain
from rosbags.typesys import Stores, get_typestore

from ssp_ros.ros.diagnostics import WARN
from ssp_ros.ros.transport import SENSOR_DATA, DiagnosticItem, QosProfile, resolve_name

pytest.importorskip("cyclonedds", reason="cyclonedds is not installed (pip install -e '.[dds]')")

from cyclonedds.qos import Policy  # noqa: E402 - after the skip
from node_harness import HUNG_S, wait_until  # noqa: E402

from ssp_ros.ros import dds_types  # noqa: E402
from ssp_ros.ros.dds_transport import FAST_DDS_COMPAT, LOOPBACK, DdsTransport, cyclone_config, dds_qos  # noqa: E402
from ssp_ros.ros.fastdds import PROFILE_ENV  # noqa: E402

TS = get_typestore(Stores.ROS2_HUMBLE)
T = TS.types


def header(sec: int = 5, nanosec: int = 7, frame_id: str = "cam"):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                    frame_id=frame_id)


def idl_header() -> dds_types.Header:
    return dds_types.Header(stamp=dds_types.Time(sec=5, nanosec=7), frame_id="cam")


def test_idl_types_give_the_bytes_of_rosbags_cdr() -> None:
    """The IDL structs define the wire format; rosbags writes it: both must agree byte for byte."""
    pixels = np.random.default_rng(0).integers(0, 256, 5 * 7 * 3, dtype=np.uint8)
    image = T["sensor_msgs/msg/Image"](header=header(), height=5, width=7, encoding="rgb8", is_bigendian=0, step=21,
                                       data=pixels)
    idl_image = dds_types.Image(header=idl_header(), height=5, width=7, encoding="rgb8", is_bigendian=0, step=21,
                                data=pixels.tobytes())
    assert bytes(TS.serialize_cdr(image, "sensor_msgs/msg/Image")) == idl_image.serialize()
    jpeg = T["sensor_msgs/msg/CompressedImage"](header=header(), format="jpeg", data=pixels[:9])
    idl_jpeg = dds_types.CompressedImage(header=idl_header(), format="jpeg", data=pixels[:9].tobytes())
    assert bytes(TS.serialize_cdr(jpeg, "sensor_msgs/msg/CompressedImage")) == idl_jpeg.serialize()
    status = T["diagnostic_msgs/msg/DiagnosticStatus"](level=2, name="ssp: input", message="m", hardware_id="hw",
                                                        values=[T["diagnostic_msgs/msg/KeyValue"](key="k", value="v")])
    array = T["diagnostic_msgs/msg/DiagnosticArray"](header=header(), status=[status])
    idl_array = dds_types.DiagnosticArray(header=idl_header(), status=[dds_types.DiagnosticStatus(
        level=2, name="ssp: input", message="m", hardware_id="hw", values=[dds_types.KeyValue("k", "v")])])
    assert bytes(TS.serialize_cdr(array, "diagnostic_msgs/msg/DiagnosticArray")) == idl_array.serialize()
    assert dds_types.Image.__idl_typename__ == "sensor_msgs::msg::dds_::Image_"


def test_ros_names_map_to_dds_topics() -> None:
    assert resolve_name("~/mask", "ssp") == "/ssp/mask"
    assert resolve_name("image", "ssp") == "/image" and resolve_name("/camera/image_raw", "ssp") == "/camera/image_raw"
    assert resolve_name("~/mask", "ssp", "/drone1") == "/drone1/ssp/mask"
    assert dds_types.dds_topic("/ssp/mask") == "rt/ssp/mask"
    with pytest.raises(ValueError, match="not a fully qualified"):
        dds_types.dds_topic("mask")
    with pytest.raises(ValueError, match="invalid name"):
        resolve_name("a//b", "ssp")


def test_qos_maps_to_ros2_profiles() -> None:
    sensor = dds_qos(SENSOR_DATA)
    assert Policy.Reliability.BestEffort in sensor and Policy.History.KeepLast(1) in sensor
    assert Policy.Durability.Volatile in sensor
    latched = dds_qos(QosProfile(reliable=True, depth=10, transient_local=True))
    assert Policy.Reliability.Reliable in latched and Policy.History.KeepLast(10) in latched
    assert Policy.Durability.TransientLocal in latched


@pytest.fixture
def loopback(monkeypatch) -> int:
    """A private domain on the loopback interface only."""
    monkeypatch.setenv("CYCLONEDDS_URI", LOOPBACK)
    return private_domain(CYCLONE_TRANSPORT)


def test_the_users_cyclone_config_follows_the_fast_dds_setting_and_the_environment_is_left_alone(loopback) -> None:
    """Cyclone applies configuration sources in order, so the user's CYCLONEDDS_URI (here LOOPBACK) comes after
    ``FAST_DDS_COMPAT`` and wins where both set something; the participant reads it once, and the variable is the
    user's again afterwards (child processes inherit it). test_interop checks the setting against Fast DDS 3."""
    assert cyclone_config(None) == cyclone_config("") == FAST_DDS_COMPAT
    assert cyclone_config(LOOPBACK) == f"{FAST_DDS_COMPAT},{LOOPBACK}"
    DdsTransport(loopback, "env").close()
    assert os.environ["CYCLONEDDS_URI"] == LOOPBACK


@pytest.mark.parametrize("fastdds_profile", [False, True], ids=["plain", "fastdds_profile_set"])
def test_loopback_round_trip_keeps_pixels_header_and_diagnostics(loopback, monkeypatch, fastdds_profile) -> None:
    """Also with the Fast DDS profile in the environment, as ssp.launch.py gives it to the node: Cyclone DDS does
    not read it."""
    if fastdds_profile:
        for name in PROFILE_ENV:
            monkeypatch.setenv(name, str(Path(__file__).resolve().parents[1] / "config" / "fastdds.xml"))
    node, peer = DdsTransport(loopback, "ssp"), DdsTransport(loopback, "viewer")
    received: list = []
    got = threading.Event()

    def on_message(msg) -> None:
        received.append(msg)
        got.set()

    try:
        peer.subscribe("/ssp/mask", "sensor_msgs/msg/Image", QosProfile(reliable=True, depth=1), on_message)
        publisher = node.publisher("~/mask", "sensor_msgs/msg/Image", QosProfile(reliable=True, depth=1))
        assert publisher.writer.topic.name == "rt/ssp/mask"
        wait_until(publisher.subscription_count, "the viewer to match the mask publisher")
        assert publisher.subscription_count() == 1
        pixels = np.random.default_rng(1).integers(0, 256, (368, 640), dtype=np.uint8)
        publisher.publish(node.image(header(sec=1_700_000_000, nanosec=123), pixels, "mono8"))
        assert got.wait(HUNG_S), "the mask never arrived over loopback"
        msg = received[0]
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1_700_000_000, 123, "cam")
        assert (msg.height, msg.width, msg.encoding, msg.step) == (368, 640, "mono8", 640)
        np.testing.assert_array_equal(np.asarray(msg.data).reshape(368, 640), pixels)
        item = DiagnosticItem("input", WARN, "3 bad messages", (("received", "9"),))
        diag = node.diagnostics(2_500_000_001, [item], "onnxruntime")
        assert diag.header.stamp.sec == 2 and diag.header.stamp.nanosec == 500_000_001
        status = diag.status[0]
        assert (status.level, status.name, status.hardware_id) == (WARN, "ssp: input", "onnxruntime")
        assert [(kv.key, kv.value) for kv in status.values] == [("received", "9")]
    finally:
        node.close()
        peer.close()


def test_destroyed_reader_and_writer_deliver_nothing_more(loopback) -> None:
    """``Transport.destroy``: a destroyed subscription gets no callback after it returns, a destroyed
    publisher refuses to publish (the deactivated node's contract). A second reader of the same participant (one
    reader thread delivers to both) shows when the destroyed one would have had the second sample."""
    from ssp_ros.errors import SspError

    node, peer = DdsTransport(loopback, "ssp"), DdsTransport(loopback, "viewer")
    received: list = []
    witnessed: list = []
    got = threading.Event()
    qos = QosProfile(reliable=True, depth=1)

    def on_message(msg) -> None:
        received.append(msg)
        got.set()

    try:
        reader = peer.subscribe("/ssp/mask", "sensor_msgs/msg/Image", qos, on_message)
        peer.subscribe("/ssp/mask", "sensor_msgs/msg/Image", qos, lambda msg: witnessed.append(msg.header.stamp.sec))
        publisher = node.publisher("~/mask", "sensor_msgs/msg/Image", qos)
        wait_until(lambda: publisher.subscription_count() == 2, "both readers to match the publisher")
        pixels = np.zeros((4, 4), np.uint8)
        publisher.publish(node.image(header(sec=1), pixels, "mono8"))
        assert got.wait(HUNG_S), "the first mask never arrived"
        peer.destroy(reader)
        publisher.publish(node.image(header(sec=2), pixels, "mono8"))
        wait_until(lambda: 2 in witnessed, "the second mask at the other reader")
        time.sleep(0.5)  # > the reader thread's wake-up period, after it delivered the second mask
        assert [m.header.stamp.sec for m in received] == [1], "nothing is delivered after destroy"
        node.destroy(publisher)
        assert publisher.subscription_count() == 0
        with pytest.raises(SspError, match="after the publisher was destroyed"):
            publisher.publish(node.image(header(sec=3), pixels, "mono8"))
    finally:
        node.close()
        peer.close()


def test_an_undecodable_sample_reaches_the_callback_as_a_bad_sample(loopback) -> None:
    """A sample Cyclone accepts but that is no sensor_msgs/Image (its encoding is not UTF-8) is handed on as a
    BadSample, so that the node counts it; a good sample after it still arrives (#24 D7)."""
    from cyclonedds._clayer import ddspy_write

    from ssp_ros.ros.transport import BadSample

    node, peer = DdsTransport(loopback, "ssp"), DdsTransport(loopback, "camera")
    received: list = []
    qos = QosProfile(reliable=True, depth=10)
    try:
        node.subscribe("/image", "sensor_msgs/msg/Image", qos, received.append)
        camera = peer.publisher("/image", "sensor_msgs/msg/Image", qos)
        wait_until(camera.subscription_count, "the node to match the camera")
        good = bytes(TS.serialize_cdr(node.image(header(sec=8), np.zeros((2, 2), np.uint8), "mono8"),
                                      "sensor_msgs/msg/Image"))
        assert b"mono8\x00" in good
        assert ddspy_write(camera.writer._ref, good.replace(b"mono8\x00", b"\xff\xfe\xfd\xfc\xfb\x00")) >= 0
        camera.publish(node.image(header(sec=9), np.zeros((2, 2), np.uint8), "mono8"))
        wait_until(lambda: len(received) == 2, "the bad and the good sample")
    finally:
        node.close()
        peer.close()
    bad, good = received
    assert isinstance(bad, BadSample) and bad.topic == "rt/image"
    assert "sensor_msgs/msg/Image sample on rt/image does not decode" in bad.detail and "utf-8" in bad.detail
    assert good.header.stamp.sec == 9


def test_a_latched_label_info_reaches_a_late_subscriber_byte_for_byte(loopback) -> None:
    """vision_msgs/LabelInfo (not in rosbags' Humble store; the transport registers it): the IDL struct and
    rosbags' CDR agree, and a class list published transient local before the node subscribes still reaches it,
    as a segmenter's latched LabelInfo reaches a stabiliser node started after it."""
    from ssp_ros.ros.dds_transport import vision_types
    from ssp_ros.ros.label_info import LABEL_INFO
    from ssp_ros.ros.transport import LATCHED

    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(vision_types())
    vision_class = store.types["vision_msgs/msg/VisionClass"]
    classes = [vision_class(class_id=i, class_name=n) for i, n in ((0, "sky"), (7, "car"))]
    msg = store.types[LABEL_INFO](header=header(), class_map=classes, threshold=0.25)
    idl = dds_types.LabelInfo(header=idl_header(), class_map=[dds_types.VisionClass(0, "sky"),
                                                              dds_types.VisionClass(7, "car")], threshold=0.25)
    assert bytes(store.serialize_cdr(msg, LABEL_INFO)) == idl.serialize()
    assert dds_types.LabelInfo.__idl_typename__ == "vision_msgs::msg::dds_::LabelInfo_"
    assert dds_types.VisionClass.__idl_typename__ == "vision_msgs::msg::dds_::VisionClass_"
    segmenter, node = DdsTransport(loopback, "segmenter"), DdsTransport(loopback, "ssp")
    received: list = []
    try:
        latched = segmenter.publisher("~/label_info", LABEL_INFO, LATCHED)  # kept: Cyclone deletes a dropped writer
        latched.publish(msg)
        node.subscribe("/segmenter/label_info", LABEL_INFO, LATCHED, received.append)
        wait_until(lambda: received, "the latched LabelInfo at the late subscriber")
    finally:
        segmenter.close()
        node.close()
    assert [(c.class_id, c.class_name) for c in received[0].class_map] == [(0, "sky"), (7, "car")]
    assert received[0].threshold == 0.25
