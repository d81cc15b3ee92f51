"""`ssp_node`: the ROS 2 node, a thin rclpy shell over ``ros_adapter.StreamProcessor``.

The subscription callback only drops each message into a newest-frame slot; one worker thread takes the
newest frame, runs it (conversion, pipeline, output messages) and publishes with the input header, so the
callback never blocks and stale frames are dropped instead of queued. Topics: input ``image`` (remap it;
Image, or CompressedImage with ``node.input_compressed``), outputs ``~/mask`` (mono8 class ids),
``~/overlay`` (bgr8), ``~/confidence`` (mono8), ``~/similarity`` (mono8, optional), ``~/label_info``
(vision_msgs/LabelInfo, transient local, where vision_msgs has it), ``/diagnostics`` (diagnostic_updater),
service ``~/reset`` (std_srvs/Trigger). Parameters: ``config_file`` plus the keys of ``node_params``.
The colour overlay is only built while something subscribes to ``~/overlay``. Image encodings the
adapter does not know go through cv_bridge when it is installed.

rclpy and the ROS message packages are imported inside functions, so the package imports without ROS.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from ssp_ros.backends import make_backend
from ssp_ros.classes import ClassSet, load_class_set
from ssp_ros.config import SspConfig, load_config
from ssp_ros.diagnostics import NAMES, StreamMonitor
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.node_params import PARAMS, SPECS, ParamSpec, config_with_params, param_values
from ssp_ros.pipeline import Pipeline
from ssp_ros.ros_adapter import PIPELINE_ERROR, FrameSlot, StreamOutput, StreamProcessor
from ssp_ros.ros_images import UNSUPPORTED_ENCODING, MessageError, image_fields, rclpy_image_data

NODE_NAME = "ssp"
OUTPUTS = ("mask", "overlay", "confidence")
LOG_THROTTLE_S = 5.0


class RclpyMessages:
    """Output sensor_msgs/Image messages for rclpy (the ``MessageFactory`` of the node)."""

    def __init__(self, image_type: type) -> None:
        self._image = image_type

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        return self._image(header=header, **image_fields(pixels, encoding), data=rclpy_image_data(pixels))


def cv_bridge_fallback() -> Callable[[Any], np.ndarray] | None:
    """cv_bridge's ``imgmsg_to_cv2(msg, "rgb8")`` for encodings the adapter does not know; None without cv_bridge."""
    try:
        from cv_bridge import CvBridge, CvBridgeError
    except ImportError:
        return None
    bridge = CvBridge()

    def convert(msg: Any) -> np.ndarray:
        try:
            return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except CvBridgeError as err:
            raise MessageError(UNSUPPORTED_ENCODING, f"Image encoding '{msg.encoding}': cv_bridge cannot convert "
                                                     f"it to rgb8 ({err})") from None

    return convert


def _descriptor(spec: ParamSpec, value: Any) -> Any:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    descriptor = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic,
                                     dynamic_typing=True)  # 500 for 500.0 is fine: config_with_params validates
    if spec.low is not None and isinstance(value, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high))]
    elif spec.low is not None and isinstance(value, int) and not isinstance(value, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return descriptor


def declare_parameters(node: Any) -> SspConfig:
    """Declare ``config_file`` and every parameter of ``node_params`` (defaults from that file), and return
    the validated configuration with the node's parameter overrides applied."""
    from rcl_interfaces.msg import ParameterDescriptor

    node.declare_parameter("config_file", "", ParameterDescriptor(
        description="ssp_ros configuration YAML (schema ssp_ros/config.py); empty = the shipped config/ssp.yaml",
        read_only=True))
    path = node.get_parameter("config_file").value or None
    cfg = load_config(path)
    defaults = param_values(cfg)
    for spec in PARAMS:
        node.declare_parameter(spec.name, defaults[spec.name], _descriptor(spec, defaults[spec.name]))
    values = {spec.name: node.get_parameter(spec.name).value for spec in PARAMS}
    return config_with_params(cfg, values, f"{path or 'config/ssp.yaml'} + ROS parameters")


def _qos(reliable: bool, transient_local: bool = False) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE)


class SegmentationNode:
    """The rclpy node (``self.node``) with its worker thread; ``close()`` stops the worker."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_updater import Updater
        from sensor_msgs.msg import CompressedImage, Image
        from std_srvs.srv import Trigger

        self.node = rclpy.create_node(NODE_NAME)
        self.log = self.node.get_logger()
        cfg = declare_parameters(self.node)
        classes = load_class_set(cfg.model.dataset)
        backend = make_backend(cfg, classes.num_classes)
        self.processor = StreamProcessor(Pipeline(cfg, backend), classes, RclpyMessages(Image), cfg.node,
                                         fallback=cv_bridge_fallback())
        self.slot: FrameSlot[Any] = FrameSlot()
        out_qos = _qos(reliable=True)
        names = OUTPUTS + (("similarity",) if cfg.node.publish_similarity else ())
        self.publishers = {name: self.node.create_publisher(Image, f"~/{name}", out_qos) for name in names}
        self._publish_label_info(classes)
        subscription = self.node.create_subscription(CompressedImage if cfg.node.input_compressed else Image,
                                                     cfg.node.image_topic, self._on_image, _qos(cfg.node.reliable))
        self.monitor = StreamMonitor(backend.name, subscription.topic_name,
                                     window_s=max(2.0, 2 * cfg.node.diagnostics_period_s))
        self.node.create_service(Trigger, "~/reset", self._on_reset)
        self.node.add_on_set_parameters_callback(self._on_set_parameters)
        self.updater = Updater(self.node, period=cfg.node.diagnostics_period_s)
        self.updater.setHardwareID(backend.name)
        for name in NAMES:
            self.updater.add(name, partial(self._diagnose, name))
        self.worker = threading.Thread(target=self._work, name="ssp_worker", daemon=True)
        self.worker.start()
        self.log.info(f"segmenting {self.monitor.topic} ({'CompressedImage' if cfg.node.input_compressed else 'Image'}"
                      f", {'reliable' if cfg.node.reliable else 'best effort'}) with {backend.name}, "
                      f"{classes.num_classes} classes ({classes.name})")

    def _publish_label_info(self, classes: ClassSet) -> None:
        try:
            from vision_msgs.msg import LabelInfo, VisionClass
        except ImportError:
            self.log.info("vision_msgs has no LabelInfo here: ~/label_info is not published")
            return
        self._label_info = self.node.create_publisher(LabelInfo, "~/label_info", _qos(True, transient_local=True))
        msg = LabelInfo(class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(classes.names)],
                        threshold=0.0)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._label_info.publish(msg)

    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self.monitor.received(now)
        if self.slot.put(msg):
            self.monitor.superseded(now)

    def _work(self) -> None:
        while not self.slot.closed:
            msg = self.slot.take(timeout=0.5)
            if msg is None:
                continue
            now = self.node.get_clock().now().nanoseconds * 1e-9  # the stamps' clock (sim time in replays)
            try:
                outcome = self.processor.process(msg, now=now,
                                                 with_overlay=self.publishers["overlay"].get_subscription_count() > 0)
            except Exception as err:  # noqa: BLE001 - the worker must outlive one bad frame; logged and counted
                self.log.error(f"processing failed: {err!r}")
                outcome = self.processor.skip(PIPELINE_ERROR, repr(err))
            self.monitor.outcome(time.monotonic(), outcome)
            if isinstance(outcome, StreamOutput):
                for name, publisher in self.publishers.items():
                    message = getattr(outcome, name)
                    if message is not None:
                        publisher.publish(message)
            else:
                self.log.warning(f"skipped a frame ({outcome.reason}): {outcome.detail}",
                                 throttle_duration_sec=LOG_THROTTLE_S)

    def _on_reset(self, request: Any, response: Any) -> Any:
        self.processor.reset()
        response.success, response.message = True, "the next frame starts over"
        return response

    def _on_set_parameters(self, params: list) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        values = {p.name: p.value for p in params if p.name in SPECS}
        if not values:
            return SetParametersResult(successful=True)
        try:
            self.processor.reconfigure(values)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.log.info(f"parameters changed: {values}")
        return SetParametersResult(successful=True)

    def _diagnose(self, name: str, stat: Any) -> Any:
        item = next(i for i in self.monitor.items(time.monotonic()) if i.name == name)
        stat.summary(bytes([item.level]), item.message)
        for key, value in item.values:
            stat.add(key, value)
        return stat

    def close(self) -> None:
        """Stop the worker and destroy the node."""
        self.slot.close()
        self.worker.join(timeout=5.0)
        self.node.destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run ssp_ros ssp_node``: spins until Ctrl-C or an external shutdown."""
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException
    except ImportError:
        print("ssp_node: rclpy is not importable: source a ROS 2 installation (e.g. /opt/ros/humble/setup.bash) "
              "before running the node; `ssp demo` and `ssp replay` run without ROS.", file=sys.stderr)
        return 1
    rclpy.init(args=args)
    segmenter = None
    try:
        segmenter = SegmentationNode()
        rclpy.spin(segmenter.node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SspError as err:
        print(f"ssp_node: error: {err}", file=sys.stderr)
        return 2
    finally:
        if segmenter is not None:
            segmenter.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
