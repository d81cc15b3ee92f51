"""The rclpy transport (the product path on the drone) and the ROS-only parts of the node.

``RclpyTransport`` implements ``transport.Transport`` over an rclpy node (a lifecycle node gets lifecycle
publishers); every subscription and publisher it makes (camera, outputs, /diagnostics) takes rclpy's QoS
overrides (``QoSOverridingOptions``: history, depth and reliability as read-only
``qos_overrides.<topic>.<publisher|subscription>.<policy>`` parameters, set at launch).
``declare_parameters`` declares ``config_file`` and every key of ``params`` with descriptors;
``add_ros_interfaces`` adds what only a ROS graph has: ``~/reset`` (std_srvs/Trigger), ``~/label_info``
(vision_msgs/LabelInfo, transient local, where vision_msgs has it) and in-flight parameter changes. rclpy and
the message packages are imported inside functions, so this module imports without ROS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ssp_ros.classes import ClassSet
from ssp_ros.config import SspConfig, load_config
from ssp_ros.errors import ConfigError
from ssp_ros.ros.images import UNSUPPORTED_ENCODING, MessageError, image_fields, rclpy_image_data
from ssp_ros.ros.label_info import LABEL_INFO
from ssp_ros.ros.params import PARAMS, SPECS, ParamSpec, config_with_params, param_values
from ssp_ros.ros.stream import StreamProcessor
from ssp_ros.ros.transport import LATCHED, DiagnosticItem, QosProfile

LEVELS = ("info", "warning", "error")


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
    """The ROS descriptor of one parameter, all from the schema: description, constraints, read-only unless it
    may change in flight, and the range where the config's bounds are finite (an open end is checked by
    ``config_with_params``, which names it)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    descriptor = ParameterDescriptor(description=spec.description, additional_constraints=spec.constraints,
                                     read_only=not spec.dynamic,
                                     dynamic_typing=True)  # 500 for 500.0 is fine: config_with_params validates
    bounds = spec.bounds
    if bounds is not None and bounds.finite and isinstance(value, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(bounds.low),
                                                              to_value=float(bounds.high))]
    elif bounds is not None and bounds.finite and isinstance(value, int) and not isinstance(value, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(bounds.low), to_value=int(bounds.high), step=1)]
    return descriptor


def declare_parameters(node: Any) -> SspConfig:
    """Declare ``config_file`` and every parameter of ``params`` (defaults from that file), and return
    the validated configuration with the node's parameter overrides applied."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    node.declare_parameter("config_file", "", ParameterDescriptor(
        description="ssp_ros configuration YAML (schema ssp_ros/config.py); empty = the shipped config/ssp.yaml",
        read_only=True))
    path = node.get_parameter("config_file").value or None
    cfg = load_config(path)
    source = f"{path or 'config/ssp.yaml'} + ROS parameters"
    defaults = param_values(cfg)
    for spec in PARAMS:
        try:
            node.declare_parameter(spec.name, defaults[spec.name], _descriptor(spec, defaults[spec.name]))
        except (InvalidParameterValueException, InvalidParameterTypeException) as err:
            # an override from the launch or parameter file that the descriptor's range refuses: one line
            raise ConfigError(f"{source}: {spec.name}: {err.args[0]}; allowed: {spec.constraints}") from None
    values = {spec.name: node.get_parameter(spec.name).value for spec in PARAMS}
    return config_with_params(cfg, values, source)


def rclpy_qos(qos: QosProfile) -> Any:
    """``qos`` as an rclpy QoSProfile (keep last)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=qos.depth,
                      reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.transient_local else DurabilityPolicy.VOLATILE)


class _Publisher:
    def __init__(self, publisher: Any) -> None:
        self.handle = publisher  # the rclpy Publisher (or LifecyclePublisher)

    def publish(self, msg: Any) -> None:
        self.handle.publish(msg)

    def subscription_count(self) -> int:
        return self.handle.get_subscription_count()


def _message_types() -> dict[str, type]:
    """The message classes the node uses; LabelInfo only where vision_msgs is installed (not on PyPI)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, Image

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage,
             "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray}
    try:
        from vision_msgs.msg import LabelInfo
    except ImportError:
        return types
    return {**types, LABEL_INFO: LabelInfo}


def _message_type(types: dict[str, type], msg_type: str, topic: str) -> type:
    """``types[msg_type]``; a ConfigError naming the topic and the package to install where it is missing."""
    if msg_type not in types:
        package = msg_type.partition("/")[0]
        raise ConfigError(f"{topic}: the node reads {msg_type} there, but {package} is not installed here: install "
                          f"ros-$ROS_DISTRO-{package.replace('_', '-')}"
                          + (" or give the class list in node.classes" if msg_type == LABEL_INFO else ""))
    return types[msg_type]


class RclpyTransport:
    """``transport.Transport`` over an rclpy node (its executor calls the subscription callbacks)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        # /diagnostics status names: "ssp: input" as diagnostic_updater; under a namespace its use_fqn form,
        # "/left/ssp: input", so that two cameras' statuses differ
        self.node_name = node.get_name() if node.get_namespace() == "/" else node.get_fully_qualified_name()
        self._types = _message_types()
        self._messages = RclpyMessages(self._types["sensor_msgs/msg/Image"])

    def resolve(self, topic: str) -> str:
        return self.node.resolve_topic_name(topic)

    def _with_overrides(self, create: Callable[..., Any], kind: str, topic: str, *args: Any) -> Any:
        """``create(*args, qos_overriding_options=...)``; a bad override is a one-line ConfigError naming it."""
        from rclpy.exceptions import ParameterException
        from rclpy.qos_overriding_options import InvalidQosOverridesError, QoSOverridingOptions

        try:
            return create(*args, qos_overriding_options=QoSOverridingOptions.with_default_policies())
        except (RuntimeError, ValueError, ParameterException, InvalidQosOverridesError) as err:
            if not self.node.context.ok():
                raise  # shut down under us (SIGINT/SIGTERM while starting): not a QoS problem
            reason = err.args[0] if err.args else err  # Humble's parameter exceptions carry (message, name)
            raise ConfigError(f"qos_overrides.{self.resolve(topic)}.{kind}: {reason}; allowed: history keep_last|"
                              f"keep_all|system_default, depth an integer, reliability reliable|best_effort|"
                              f"system_default") from None

    def subscribe(self, topic: str, msg_type: str, qos: QosProfile, callback: Callable[[Any], None]) -> Any:
        return self._with_overrides(self.node.create_subscription, "subscription", topic,
                                    _message_type(self._types, msg_type, self.resolve(topic)), topic, callback,
                                    rclpy_qos(qos))

    def publisher(self, topic: str, msg_type: str, qos: QosProfile) -> _Publisher:
        # a lifecycle node's publishers are managed: they send only while the node is active
        create = getattr(self.node, "create_lifecycle_publisher", self.node.create_publisher)
        return _Publisher(self._with_overrides(create, "publisher", topic,
                                               _message_type(self._types, msg_type, self.resolve(topic)), topic,
                                               rclpy_qos(qos)))

    def destroy(self, entity: Any) -> None:
        if isinstance(entity, _Publisher):
            destroy = getattr(self.node, "destroy_lifecycle_publisher", self.node.destroy_publisher)
            destroy(entity.handle)
        else:
            self.node.destroy_subscription(entity)

    def ok(self) -> bool:
        return self.node.context.ok()

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def log(self, level: str, text: str) -> None:
        # One call per severity: rclpy remembers the severity of each call site (file, line) and raises
        # "Logger severity cannot be changed between calls" when one line logs at two.
        logger = self.node.get_logger()
        if level == "info":
            logger.info(text)
        elif level == "warning":
            logger.warning(text)
        elif level == "error":
            logger.error(text)
        else:
            raise ValueError(f"log level '{level}' is not one of {', '.join(LEVELS)}")

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        return self._messages.image(header, pixels, encoding)

    def diagnostics(self, stamp_ns: int, items: Sequence[DiagnosticItem], hardware_id: str) -> Any:
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
        from std_msgs.msg import Header

        status = [DiagnosticStatus(level=bytes([item.level]), name=f"{self.node_name}: {item.name}",
                                   message=item.message, hardware_id=hardware_id,
                                   values=[KeyValue(key=k, value=v) for k, v in item.values]) for item in items]
        header = Header()
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return self._types["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=status)


def add_parameter_callback(node: Any, reconfigure: Callable[[dict[str, Any]], Any]) -> None:
    """Apply changes of the node's own parameters through ``reconfigure(values)`` (name → value), which raises
    ConfigError to refuse them; the refusal's text is the reason ``ros2 param set`` prints."""
    from rcl_interfaces.msg import SetParametersResult

    def on_set_parameters(params: list) -> Any:
        values = {p.name: p.value for p in params if p.name in SPECS}
        if not values:
            return SetParametersResult(successful=True)
        try:
            reconfigure(values)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        node.get_logger().info(f"parameters changed: {values}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set_parameters)


def create_reset_service(node: Any, reset: Callable[[], str | None]) -> Any:
    """``~/reset`` (std_srvs/Trigger): ``reset()``, so that the next frame starts over; a string it returns is
    why it could not (the answer's message, with success false). Returns the service."""
    from std_srvs.srv import Trigger

    def on_reset(request: Any, response: Any) -> Any:
        refusal = reset()
        response.success = refusal is None
        response.message = "the next frame starts over" if refusal is None else refusal
        return response

    return node.create_service(Trigger, "~/reset", on_reset)


def publish_label_info(node: Any, classes: ClassSet) -> Any | None:
    """Latch ``classes`` on ``~/label_info`` (vision_msgs/LabelInfo); returns the publisher, None without
    vision_msgs."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        node.get_logger().info("vision_msgs has no LabelInfo here: ~/label_info is not published")
        return None
    publisher = node.create_publisher(LabelInfo, "~/label_info", rclpy_qos(LATCHED))
    msg = LabelInfo(class_map=[VisionClass(class_id=i, class_name=name)
                               for i, name in enumerate(classes.names)], threshold=0.0)
    msg.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(msg)
    return publisher


def add_ros_interfaces(node: Any, processor: StreamProcessor, classes: ClassSet | None) -> None:
    """``~/reset``, ``~/label_info`` (``classes``; None: they come from the other segmenter's LabelInfo, which
    describes the output as well) and in-flight parameter changes (applied to ``processor``) on the rclpy
    ``node``: the plain node's. The lifecycle node adds the same pieces itself (``~/reset`` and the parameter
    callback at start, ``~/label_info`` at configure)."""
    create_reset_service(node, processor.reset)
    add_parameter_callback(node, processor.reconfigure)
    if classes is not None:
        publish_label_info(node, classes)
