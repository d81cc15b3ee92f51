"""The seam between the node's logic and a middleware: what ``node.SegmentationNode`` needs, nothing more.

Two implementations: ``rclpy_transport.RclpyTransport`` (ROS 2, the product path on the drone) and
``dds_transport.DdsTransport`` (Cyclone DDS without ROS: ``ssp node --transport dds``). Topic names are
ROS names (``~/mask`` is private to the node); type names are ROS 2's (``sensor_msgs/msg/Image``). Messages
are whatever the transport's library builds (rclpy or rosbags classes); the node reads them by duck typing
and builds them through ``MessageFactory``-style methods of the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class QosProfile:
    """The QoS policies the node uses, in ROS 2 terms; each transport maps them onto its own."""

    reliable: bool  # False: best effort
    depth: int  # keep last
    transient_local: bool = False  # late joiners get the last sample (else volatile)


SENSOR_DATA = QosProfile(reliable=False, depth=1)  # camera input: ROS 2's sensor-data profile, newest frame only
RELIABLE_LATEST = QosProfile(reliable=True, depth=1)  # outputs: reliable, but never a backlog of old frames
DEFAULT = QosProfile(reliable=True, depth=10)  # ROS 2's default profile (/diagnostics)
LATCHED = QosProfile(reliable=True, depth=1, transient_local=True)  # a class list: late joiners get the last one


@dataclass(frozen=True)
class BadSample:
    """A sample the transport received on a subscription but could not decode. It reaches the subscription's
    callback in place of a message, so that the node counts it as received and skipped, under ``REASON``."""

    REASON = "undecodable sample"

    topic: str
    detail: str


@dataclass(frozen=True)
class DiagnosticItem:
    """One DiagnosticStatus: name, level (OK/WARN/ERROR/STALE_LEVEL), summary message, key/values."""

    name: str
    level: int
    message: str
    values: tuple[tuple[str, str], ...]


class Publisher(Protocol):
    """A publisher created by ``Transport.publisher``."""

    def publish(self, msg: Any) -> None:
        """Send one message (thread-safe)."""

    def subscription_count(self) -> int:
        """How many subscriptions are matched right now."""


class Transport(Protocol):
    """Topics, time, logging and message construction for one node."""

    node_name: str

    def resolve(self, topic: str) -> str:
        """The fully qualified name of ``topic`` (``~/mask`` → ``/ssp/mask``)."""

    def subscribe(self, topic: str, msg_type: str, qos: QosProfile, callback: Callable[[Any], None]) -> Any:
        """Call ``callback(msg)`` for each message on ``topic`` (from a transport thread, never concurrently), or
        ``callback(BadSample(...))`` for a sample the transport cannot decode; returns the subscription, for
        ``destroy``."""

    def publisher(self, topic: str, msg_type: str, qos: QosProfile) -> Publisher:
        """A publisher of ``msg_type`` on ``topic``."""

    def destroy(self, entity: Any) -> None:
        """Remove a subscription or publisher made by this transport: no callback and no sample after it returns."""

    def ok(self) -> bool:
        """False once the middleware is shutting down (SIGINT, SIGTERM, close): a publish that fails then is
        part of the shutdown, not an error."""

    def now(self) -> float:
        """Seconds on the clock of the header stamps (ROS time on the drone, sim time in replays)."""

    def log(self, level: str, text: str) -> None:
        """Log ``text`` at ``level`` (info, warning, error)."""

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        """An output sensor_msgs/Image (the node's ``MessageFactory``)."""

    def diagnostics(self, stamp_ns: int, items: Sequence[DiagnosticItem], hardware_id: str) -> Any:
        """A diagnostic_msgs/DiagnosticArray with one status per item, named ``<node>: <item name>``."""


def resolve_name(topic: str, node_name: str, namespace: str = "/") -> str:
    """ROS 2 name resolution without remapping: ``~/x`` → ``<ns>/<node>/x``, ``x`` → ``<ns>/x``, ``/x`` as is."""
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if topic.startswith("/"):
        resolved = topic
    elif topic == "~" or topic.startswith("~/"):
        resolved = f"{namespace}/{node_name}{topic[1:]}"
    else:
        resolved = f"{namespace}/{topic}"
    if not resolved.strip("/") or "//" in resolved or resolved.endswith("/"):
        raise ValueError(f"topic '{topic}' resolves to the invalid name '{resolved}'")
    return resolved
