"""Our hand-written DDS types (``dds_types``, rosbags CDR) against real ROS 2 type support, on the wire, both ways:

* a Cyclone DDS camera and viewer (``DdsTransport``, no ROS) around ``ssp_node`` (rclpy on its default RMW, Fast
  DDS with the PyPI wheels or a sourced Jazzy) as a process;
* an rclpy camera and viewer around ``ssp node --transport dds`` (Cyclone DDS, no ROS) as a process;
* every message type the transport knows, with the edges of CDR, from ``DdsTransport`` to rclpy and back.

Each node test checks the masks against the in-process pipeline's, the stamps and frame_id, and /diagnostics.

Discovery, loopback only, in one private domain (Cyclone's domain id is ROS_DOMAIN_ID): Cyclone runs on ``lo``
with multicast off and 127.0.0.1 as its peer (``LOOPBACK``); rclpy runs with ROS_AUTOMATIC_DISCOVERY_RANGE=
LOCALHOST, under which rmw_fastrtps (Jazzy, rmw_fastrtps_shared_cpp/src/participant.cpp) clears the multicast
discovery locators, uses shared memory and UDPv4 and sends its participant announcements to 127.0.0.1 on the
unicast discovery port of each participant index (RTPS port mapping, 32 indices); Cyclone announces itself to
127.0.0.1 on indices 0-50 the same way. Both use the RTPS default ports, so each finds the other with no extra
setting. Cyclone offers only UDP locators (127.0.0.1), so samples between the two go over UDP (shared memory is
only used between Fast DDS peers); Fast DDS announces its host's interface addresses, which the kernel delivers
locally.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata

import numpy as np
import pytest
from dds_domains import INTEROP, private_domain

pytest.importorskip("cyclonedds", reason="cyclonedds is not installed (pip install -e '.[dds]')")
pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")

from conftest import small_scenario  # noqa: E402 - after the skips
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from node_harness import NodeWatcher, assert_outputs, reference_masks, stop_node, wait_for_progress  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from test_dds_node import FRAME_NS, START_NS, rgb8  # noqa: E402
from test_dds_node import Viewer as DdsViewer  # noqa: E402
from test_dds_node import start_node as start_dds_node  # noqa: E402
from test_dds_transport import LOOPBACK  # noqa: E402
from test_rclpy_node import Viewer as RclpyViewer  # noqa: E402
from test_rclpy_node import node_config, ros_env  # noqa: E402
from test_rclpy_node import start_node as start_rclpy_node  # noqa: E402

from ssp_ros.ros.dds_transport import DdsTransport  # noqa: E402
from ssp_ros.ros.transport import QosProfile  # noqa: E402
from ssp_ros.synthetic import SyntheticVideo  # noqa: E402

FRAMES = 12  # lock step: every frame is answered; enough for propagation across frames


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [f.image for f in SyntheticVideo(small_scenario(), frames=FRAMES, seed=2001)]


@pytest.fixture
def domain(monkeypatch) -> int:
    """A domain no other test file uses (``INTEROP``): within Fast DDS's limit (232), and it puts both middlewares'
    ports above Linux's ephemeral range. Loopback for Cyclone and for this process's rclpy contexts (the node
    processes get the same through their environment)."""
    domain = private_domain(INTEROP)
    monkeypatch.setenv("CYCLONEDDS_URI", LOOPBACK)
    for key, value in ros_env(domain).items():
        monkeypatch.setenv(key, value)
    return domain


def replayed_stamps() -> list[int]:
    return [START_NS + i * FRAME_NS for i in range(FRAMES)]


def handshake_stamp(attempt: int) -> int:
    """10 s before the first frame: the node starts over at the first frame, as the reference run does."""
    return START_NS - 10**10 + attempt * FRAME_NS


def run_lock_step(viewer: NodeWatcher, frames: list[np.ndarray], stamps: list[int]) -> None:
    """After the handshake, each frame in turn, waiting for all its outputs; then /diagnostics must count every
    one of them (the node's DiagnosticArray decoded by the viewer's side)."""
    viewer.handshake(frames[0], handshake_stamp)
    baseline = viewer.received_now()
    for frame, stamp in zip(frames, stamps):
        viewer.publish(frame, stamp)
        viewer.wait_for(lambda s=stamp: all(s in out for out in viewer.outputs.values()), f"the outputs of {stamp}")
    viewer.wait_for(lambda: int(viewer.last_status("input")["received"]) == baseline + len(frames),
                    "/diagnostics counting every frame")


@pytest.mark.slow
@pytest.mark.parametrize("viewer_type, start", [(DdsViewer, start_rclpy_node), (RclpyViewer, start_dds_node)],
                         ids=["cyclone camera and viewer, rclpy node", "rclpy camera and viewer, cyclone node"])
def test_a_camera_and_viewer_on_one_middleware_with_the_node_on_the_other(tmp_path, frames, domain, viewer_type,
                                                                          start) -> None:
    config = node_config(tmp_path, node={"max_age_ms": 0.0})  # replayed stamps: no wall-clock age check
    stamps = replayed_stamps()
    log = tmp_path / "node.log"
    viewer = viewer_type(domain)
    node = start(config, domain, log)
    try:
        viewer.wait_for_node(node, log)
        run_lock_step(viewer, frames, stamps)
        code = stop_node(node)
    finally:
        stop_node(node)
        viewer.close()
    assert code == 0, log.read_text()
    assert_outputs(viewer, frames, stamps, reference_masks(config, frames, stamps))
    assert viewer.last_status("processing")["backend"].startswith("torch")


KINDS = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage,
         "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray}


def wire_messages(types) -> dict[str, list]:
    """Four rosbags messages of each kind at the edges of CDR: odd sample lengths (padded to 4 bytes by the
    writer), empty and non-ASCII strings, empty sequences, sequences of structs that hold sequences, the
    extreme values of the stamp's int32 and uint32."""
    rng = np.random.default_rng(5)
    frame_ids = ["", "c", "camera_optical", "kamera/ø✓"]
    seconds, nanoseconds = [-(2**31), 2**31 - 1, 0, 7], [0, 2**32 - 1, 1, 5]

    def header(i: int):
        stamp = types["builtin_interfaces/msg/Time"](sec=seconds[i], nanosec=nanoseconds[i])
        return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_ids[i])

    def image(i: int, h: int, w: int, encoding: str, channels: int):
        return types["sensor_msgs/msg/Image"](header=header(i), height=h, width=w, encoding=encoding,
                                              is_bigendian=i % 2, step=w * channels,
                                              data=rng.integers(0, 256, h * w * channels, dtype=np.uint8))

    def compressed(i: int, fmt: str, n: int):
        return types["sensor_msgs/msg/CompressedImage"](header=header(i), format=fmt,
                                                        data=rng.integers(0, 256, n, dtype=np.uint8))

    def status(i: int, j: int):
        values = [types["diagnostic_msgs/msg/KeyValue"](key=frame_ids[k], value="v" * (i + k)) for k in range(j + 1)]
        return types["diagnostic_msgs/msg/DiagnosticStatus"](level=j % 4, name=frame_ids[j], message="m" * i,
                                                             hardware_id=frame_ids[i], values=values)

    return {
        "sensor_msgs/msg/Image": [image(i, *shape) for i, shape in enumerate(
            [(1, 1, "mono8", 1), (3, 5, "rgb8", 3), (119, 201, "bgr8", 3), (2, 3, "mono16", 2)])],
        "sensor_msgs/msg/CompressedImage": [compressed(i, *spec) for i, spec in enumerate(
            [("", 0), ("jpeg", 1), ("png", 2), ("bgr8; jpeg compressed bgr8", 4099)])],
        "diagnostic_msgs/msg/DiagnosticArray": [types["diagnostic_msgs/msg/DiagnosticArray"](
            header=header(i), status=[status(i, j) for j in range(i)]) for i in range(4)],
    }


def plain(value):
    """A message of either library as plain Python: fields by name (rosbags' upper-case constants left out),
    uint8 sequences as bytes, an rclpy ``octet`` (bytes of one) as its int."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.name.isupper() or f.name.startswith("__"))}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, bytes):
        return int.from_bytes(value, "little")
    if isinstance(value, np.ndarray) or type(value).__name__ == "array":
        return bytes(value)
    return value


def test_every_message_type_crosses_to_rclpy_and_back_field_for_field(domain) -> None:
    """DdsTransport publishes; rclpy (real type support) receives, and echoes what it decoded; DdsTransport
    receives the echo. Both what rclpy decoded and what came back equal what was sent, so an error in our
    types cannot hide by cancelling out on the way back."""
    dds, ros = DdsTransport(domain, "wire"), RclpyViewer(domain)
    sent = wire_messages(dds.typestore.types)
    decoded: dict[str, list] = {kind: [] for kind in KINDS}
    echoed: dict[str, list] = {kind: [] for kind in KINDS}

    def record(into: list, msg) -> None:
        with ros.changed:
            into.append(msg)
            ros.changed.notify_all()

    try:
        ros_qos = QoSProfile(depth=16, reliability=ReliabilityPolicy.RELIABLE)
        dds_qos = QosProfile(reliable=True, depth=16)
        endpoints = []
        for n, (kind, ros_type) in enumerate(KINDS.items()):
            echo = ros.node.create_publisher(ros_type, f"/wire/back{n}", ros_qos)
            subscription = ros.node.create_subscription(
                ros_type, f"/wire/out{n}", lambda msg, kind=kind, echo=echo: (record(decoded[kind], msg),
                                                                           echo.publish(msg)), ros_qos)
            reader = dds.subscribe(f"/wire/back{n}", kind, dds_qos, lambda msg, kind=kind: record(echoed[kind], msg))
            endpoints.append((dds.publisher(f"/wire/out{n}", kind, dds_qos), reader, echo, subscription))

        def matched() -> tuple[bool, ...]:  # progress: discovery matches the twelve endpoints one by one
            return tuple(bool(n) for writer, reader, echo, subscription in endpoints
                         for n in (writer.subscription_count(), reader.get_subscription_matched_status().current_count,
                                   echo.get_subscription_count(), subscription.get_publisher_count()))

        wait_for_progress(lambda: all(matched()), matched, "rclpy and Cyclone DDS to match every endpoint")
        for (writer, *_), kind in zip(endpoints, KINDS):
            for msg in sent[kind]:
                writer.publish(msg)
        ros.wait_for(lambda: all(len(echoed[kind]) == len(decoded[kind]) == 4 for kind in KINDS),
                     "every message decoded by rclpy and echoed back")
    finally:
        dds.close()
        ros.close()
    for kind in KINDS:
        want = [plain(msg) for msg in sent[kind]]
        assert [plain(msg) for msg in decoded[kind]] == want, f"rclpy decoded {kind} differently"
        assert [plain(msg) for msg in echoed[kind]] == want, f"{kind} came back from rclpy differently"


def fast_dds_version() -> str | None:
    """The Fast DDS of the ROS 2 wheels under rclpy (Kilted's ``ros-fastdds``); None for Jazzy's (``ros-fastrtps``,
    Fast DDS 2) or a sourced ROS 2 install, which pip does not know."""
    try:
        return importlib.metadata.version("ros-fastdds")
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.skipif(not (fast_dds_version() or "").startswith("3."),
                    reason="rclpy does not run on Fast DDS 3 from the ROS 2 Kilted wheels (pip install -e "
                           "'.[ros-kilted]'): no peer here announces the type information this checks")
def test_fast_dds_3_type_information_does_not_keep_the_transport_from_matching(domain, capfd) -> None:
    """Fast DDS 3 (Kilted's RMW) announces XTypes type information that Cyclone DDS 11 cannot use (``FAST_DDS_COMPAT``
    says why): without that setting Cyclone logs 'invalid type object' and never matches rclpy's endpoints. Both
    directions must match and carry an image, and Cyclone must not log that line."""
    dds, ros = DdsTransport(domain, "xtypes"), RclpyViewer(domain)
    stamps: dict[str, list[int]] = {"dds": [], "ros": []}

    def record(side: str, msg) -> None:
        with ros.changed:
            stamps[side].append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
            ros.changed.notify_all()

    try:
        ros_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        dds_qos = QosProfile(reliable=True, depth=1)
        to_dds = ros.node.create_publisher(Image, "/xtypes/to_dds", ros_qos)
        from_dds = ros.node.create_subscription(Image, "/xtypes/to_ros", lambda msg: record("ros", msg), ros_qos)
        reader = dds.subscribe("/xtypes/to_dds", "sensor_msgs/msg/Image", dds_qos, lambda msg: record("dds", msg))
        writer = dds.publisher("/xtypes/to_ros", "sensor_msgs/msg/Image", dds_qos)

        def matched() -> tuple[bool, ...]:
            return (bool(writer.subscription_count()), bool(reader.get_subscription_matched_status().current_count),
                    bool(to_dds.get_subscription_count()), bool(from_dds.get_publisher_count()))

        wait_for_progress(lambda: all(matched()), matched, "Cyclone DDS and Fast DDS 3 to match both ways")
        frame = np.zeros((2, 3, 3), np.uint8)
        to_dds.publish(ros.image(frame, START_NS))
        writer.publish(rgb8(dds, frame, START_NS + FRAME_NS))
        ros.wait_for(lambda: stamps["dds"] and stamps["ros"], "an image each way")
    finally:
        dds.close()
        ros.close()
    assert stamps == {"dds": [START_NS], "ros": [START_NS + FRAME_NS]}
    assert "invalid type object" not in capfd.readouterr().err
