"""The rclpy side of the node on the real rclpy (Jazzy wheels from PyPI, or a sourced ROS 2): parameters and
their descriptors, in-flight changes through rclpy's own parameter calls, the logger's rules, message types.
The node as a process, end to end: test_rclpy_node.py."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")

from rclpy.parameter import Parameter  # noqa: E402 - after the skip

from ssp_ros.config import ModelConfig, SspConfig  # noqa: E402
from ssp_ros.errors import ConfigError  # noqa: E402
from ssp_ros.ros import rclpy_transport  # noqa: E402
from ssp_ros.ros.node import SegmentationNode  # noqa: E402


def make_node(context, name: str = "ssp", **overrides):
    node = rclpy.create_node(name, context=context,
                             parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    return node


def test_parameters_come_from_the_config_file_then_overrides(context, tmp_path) -> None:
    import yaml

    config = tmp_path / "ssp.yaml"
    config.write_text(yaml.safe_dump({"propagation": {"max_time_gap_s": 0.8}, "node": {"max_age_ms": 300.0}}))
    node = make_node(context, config_file=str(config), **{"node.max_age_ms": 120, "runtime.backend": "torch"})
    try:
        cfg = rclpy_transport.declare_parameters(node)
        assert cfg.propagation.max_time_gap_s == 0.8, "the file's value is the default"
        assert cfg.node.max_age_ms == 120.0, "an override (an int from a launch file) wins and becomes a float"
        (gap,) = node.describe_parameters(["propagation.max_time_gap_s"])
        assert not gap.read_only and gap.floating_point_range[0].to_value == 60.0
        assert "in (0.0, 60.0]" in gap.additional_constraints and gap.description.startswith("a larger gap")
        (inliers,) = node.describe_parameters(["registration.min_inliers"])
        assert (inliers.integer_range[0].from_value, inliers.integer_range[0].to_value) == (4, 10_000)
        (backend,) = node.describe_parameters(["runtime.backend"])
        assert backend.read_only and "one of: auto, torch, onnxruntime, tensorrt" in backend.additional_constraints
    finally:
        node.destroy_node()


@pytest.mark.parametrize("overrides, message", [
    ({"propagation.max_time_gap_s": 100.0}, r"propagation\.max_time_gap_s: .*100\.0.*; allowed: in \(0\.0, 60\.0\]"),
    ({"propagation.max_time_gap_s": 0.0}, r"propagation\.max_time_gap_s: must be in \(0\.0, 60\.0\], got 0\.0"),
    ({"registration.min_inliers": 2}, r"registration\.min_inliers: .*; allowed: in \[4, 10000\]"),
    ({"runtime.backend": "tensorrtt"}, r"runtime\.backend: expected one of"),
])
def test_a_bad_value_at_launch_is_one_line_naming_the_parameter(context, overrides, message) -> None:
    """Out of the descriptor's range, rclpy raises InvalidParameterValueException at declare time; the node
    turns it into the same one-line ConfigError as every other bad value."""
    node = make_node(context, **overrides)
    try:
        with pytest.raises(ConfigError, match=message) as err:
            rclpy_transport.declare_parameters(node)
        assert "\n" not in str(err.value)
    finally:
        node.destroy_node()


@pytest.fixture
def segmenter(context):
    """A declared node, the SegmentationNode on it and its ROS interfaces (small untrained model)."""
    node = make_node(context)
    cfg = rclpy_transport.declare_parameters(node)
    cfg = replace(cfg, model=replace(ModelConfig(input_size=(32, 64)), dataset=cfg.model.dataset))
    seg = SegmentationNode(rclpy_transport.RclpyTransport(node), cfg)
    rclpy_transport.add_ros_interfaces(node, seg.processor, seg.classes)
    yield node, seg
    seg.close()
    node.destroy_node()


def test_parameter_changes_in_flight_through_rclpy(segmenter) -> None:
    node, seg = segmenter
    result = node.set_parameters([Parameter("propagation.max_time_gap_s", value=2.0)])[0]
    assert result.successful and seg.processor.pipeline.cfg.propagation.max_time_gap_s == 2.0
    result = node.set_parameters([Parameter("propagation.max_time_gap_s", value=100)])[0]
    assert not result.successful and "must be in (0.0, 60.0]" in result.reason, "an int cannot skip the range"
    result = node.set_parameters([Parameter("propagation.max_time_gap_s", value="soon")])[0]
    assert not result.successful and "expected float, got 'soon'" in result.reason
    result = node.set_parameters([Parameter("registration.min_inliers", value=3)])[0]
    assert not result.successful and "min_inliers" in result.reason
    result = node.set_parameters([Parameter("runtime.backend", value="onnxruntime")])[0]
    assert not result.successful, "read-only: rclpy refuses it"
    assert seg.processor.pipeline.cfg.propagation.max_time_gap_s == 2.0, "nothing of the refused changes applied"
    assert node.get_parameter("propagation.max_time_gap_s").value == 2.0


def test_the_transport_logs_at_every_level_again_and_again(segmenter) -> None:
    """rclpy raises 'Logger severity cannot be changed between calls' when one call site logs at two
    severities: the transport has one call site per level."""
    node, seg = segmenter
    transport = seg.transport
    for _ in range(2):
        for level in ("info", "warning", "error"):
            transport.log(level, f"{level} message")
    with pytest.raises(ValueError, match="not one of"):
        transport.log("debug", "x")


def test_skipped_frames_are_logged_and_the_worker_goes_on(segmenter, capfd) -> None:
    from sensor_msgs.msg import Image

    from ssp_ros.ros.log_throttle import LogThrottle
    from ssp_ros.ros.node import LOG_THROTTLE_S

    node, seg = segmenter
    for _ in range(2):  # the same line of the node logs each skip: rclpy's per-call-site rule holds
        bad = Image(encoding="32FC1", height=2, width=2, step=8, data=bytes(16))
        bad.header.stamp = node.get_clock().now().to_msg()
        seg.process(bad)
        seg._throttle = LogThrottle(LOG_THROTTLE_S)  # let the next skip log again (the warning is throttled)
    assert seg.alive and seg.processor.skipped["unsupported encoding"] == 2
    err = capfd.readouterr().err
    assert "logging failed" not in err and err.count("skipped a frame (unsupported encoding)") == 2


def test_output_messages_are_real_sensor_msgs(segmenter) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    node, seg = segmenter
    header = Header(frame_id="cam")
    built = seg.transport.image(header, np.arange(6, dtype=np.uint8).reshape(2, 3), "mono8")
    assert isinstance(built, Image) and built.header.frame_id == "cam"
    assert (built.height, built.width, built.step, built.encoding) == (2, 3, 3, "mono8")
    assert bytes(built.data) == bytes(range(6))
    from ssp_ros.ros.transport import DiagnosticItem

    array = seg.transport.diagnostics(1_500_000_000, [DiagnosticItem("input", 1, "slow", (("fps", "3"),))], "torch")
    (status,) = array.status
    assert (status.name, status.level, status.hardware_id) == ("ssp: input", b"\x01", "torch")
    assert array.header.stamp.sec == 1 and array.header.stamp.nanosec == 500_000_000


def test_config_is_validated_before_any_interface_exists(context) -> None:
    node = make_node(context, **{"node.image_topic": ""})
    try:
        with pytest.raises(ConfigError, match="node.image_topic: must not be empty"):
            rclpy_transport.declare_parameters(node)
    finally:
        node.destroy_node()


def test_default_config_declares_every_schema_key(context) -> None:
    from ssp_ros.ros.params import SPECS

    node = make_node(context)
    try:
        rclpy_transport.declare_parameters(node)
        assert set(SPECS) | {"config_file"} <= {name for name in node._parameters}
        assert SspConfig().registration.min_inliers == node.get_parameter("registration.min_inliers").value
    finally:
        node.destroy_node()


def test_qos_of_input_and_outputs_is_overridden_by_parameters(context) -> None:
    """rclpy's QoS overrides (QoSOverridingOptions): history, depth and reliability per topic, set at launch."""
    from rclpy.qos import ReliabilityPolicy

    node = make_node(context, **{"qos_overrides./image.subscription.reliability": "reliable",
                                 "qos_overrides./ssp/mask.publisher.depth": 5,
                                 "qos_overrides./ssp/overlay.publisher.reliability": "best_effort"})
    seg = SegmentationNode(rclpy_transport.RclpyTransport(node), SspConfig(model=ModelConfig(input_size=(32, 64))))
    try:
        (subscription,) = node.subscriptions
        assert subscription.qos_profile.reliability == ReliabilityPolicy.RELIABLE, "the config says best effort"
        publishers = {p.handle.topic_name: p.handle.qos_profile for p in seg.publishers.values()}
        assert publishers["/ssp/mask"].depth == 5 and publishers["/ssp/confidence"].depth == 1
        assert publishers["/ssp/overlay"].reliability == ReliabilityPolicy.BEST_EFFORT
        (described,) = node.describe_parameters(["qos_overrides./ssp/mask.publisher.depth"])
        assert described.read_only, "rclpy declares them read-only: they apply at start-up"
    finally:
        seg.close()
        node.destroy_node()


@pytest.mark.parametrize("name, value, message", [
    ("qos_overrides./image.subscription.reliability", "sometimes",
     r"qos_overrides\./image\.subscription: Unexpected QoS override for policy `reliability`: `sometimes`"),
    ("qos_overrides./ssp/mask.publisher.depth", "five", r"qos_overrides\./ssp/mask\.publisher: .*depth"),
])
def test_a_bad_qos_override_is_one_line_naming_it(context, name, value, message) -> None:
    node = make_node(context, **{name: value})
    try:
        with pytest.raises(ConfigError, match=message) as err:
            SegmentationNode(rclpy_transport.RclpyTransport(node), SspConfig(model=ModelConfig(input_size=(32, 64))))
        assert "\n" not in str(err.value) and "allowed:" in str(err.value)
        assert not {t.name for t in threading.enumerate()} & {"ssp_worker", "ssp_diagnostics"}, "threads stopped"
    finally:
        node.destroy_node()


def test_a_namespace_moves_every_topic_and_names_the_diagnostics(context) -> None:
    """``ns:=left``: each camera's node has its own input, outputs and diagnostics names; /diagnostics stays
    global, as diagnostic_aggregator expects."""
    node = rclpy.create_node("ssp", namespace="left", context=context)
    transport = rclpy_transport.RclpyTransport(node)
    seg = SegmentationNode(transport, SspConfig(model=ModelConfig(input_size=(32, 64))))
    try:
        assert [s.topic_name for s in node.subscriptions] == ["/left/image"]
        assert {p.handle.topic_name for p in seg.publishers.values()} == {"/left/ssp/mask", "/left/ssp/overlay",
                                                                          "/left/ssp/confidence"}
        assert seg.diagnostics.handle.topic_name == "/diagnostics"
        names = {s.name for s in seg.transport.diagnostics(0, seg.monitor.items(0.0), "torch").status}
        assert names == {"/left/ssp: input", "/left/ssp: processing", "/left/ssp: propagation"}
    finally:
        seg.close()
        node.destroy_node()


def test_a_label_info_topic_needs_vision_msgs_and_is_subscribed_latched(context) -> None:
    """vision_msgs is not on PyPI: without it, a stabilise node told to read LabelInfo fails to start with one line
    naming the topic and what to install (threads stopped); with it (a sourced ROS 2), the subscription is
    transient local, so the segmenter's latched class list reaches a node started after it."""
    from rclpy.qos import DurabilityPolicy

    from ssp_ros.config import NodeConfig
    from ssp_ros.ros.stabilise_node import make_node as make_ros_node

    cfg = SspConfig(node=replace(NodeConfig(), mode="stabilise", label_info_topic="segmenter/label_info"))
    node = make_node(context)
    try:
        try:
            import vision_msgs.msg  # noqa: F401
        except ImportError:
            with pytest.raises(ConfigError, match=r"^/segmenter/label_info: the node reads vision_msgs/msg/LabelInfo "
                                                  r"there, but vision_msgs is not installed here: install "
                                                  r"ros-\$ROS_DISTRO-vision-msgs or give the class list in "
                                                  r"node\.classes$"):
                make_ros_node(rclpy_transport.RclpyTransport(node), cfg)
            assert not {t.name for t in threading.enumerate()} & {"ssp_worker", "ssp_diagnostics"}, "threads stopped"
            return
        seg = make_ros_node(rclpy_transport.RclpyTransport(node), cfg)
        try:
            (sub,) = [s for s in node.subscriptions if s.topic_name == "/segmenter/label_info"]
            assert sub.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        finally:
            seg.close()
    finally:
        node.destroy_node()
