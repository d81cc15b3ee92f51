"""The camera and viewer in the bench's process, on the node's own transports (``transport.Transport``): frames
out on ``CAMERA_TOPIC``; the node's ``~/mask`` and /diagnostics back into a ``MaskLog``.

``RclpyCamera`` runs ``RclpyTransport`` on a node of its own rclpy context, spun by one executor thread (in the
node's process ``ros/main.py`` owns context, node and executor; the transport only wraps the node), and counts
the publishers on the mask topic from the rclpy graph (the seam has no such query: the node never needs one).
``DdsCamera`` runs ``DdsTransport``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ssp_ros.ros.node import DIAGNOSTICS_TOPIC, NODE_NAME
from ssp_ros.ros.transport import DEFAULT, QosProfile, Transport
from ssp_ros.tools.node_bench.node_process import environment, ros_env
from ssp_ros.tools.node_bench.plan import CAMERA_TOPIC, MASK_TOPIC

FRAME_ID = "camera_optical"
IMAGE = "sensor_msgs/msg/Image"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"


def diagnostics_dict(msg: Any) -> dict[str, dict[str, Any]]:
    """A DiagnosticArray (rclpy or rosbags) as {status name: {"level", "message", key: value …}}."""
    out = {}
    for status in msg.status:
        level = status.level
        level = int.from_bytes(level, "little") if isinstance(level, bytes) else int(level)
        out[status.name] = {"level": level, "message": status.message,
                            **{kv.key: kv.value for kv in status.values}}
    return out


class MaskLog:
    """What came back from the node, written by the middleware's callback thread: (stamp, arrival) in ns per mask,
    in arrival order, and the newest /diagnostics of the node."""

    def __init__(self) -> None:
        self.masks: list[tuple[int, int]] = []
        self.stamps: set[int] = set()
        self.diagnostics: dict[str, dict[str, Any]] | None = None
        self.changed = threading.Condition()

    def on_mask(self, msg: Any) -> None:
        """Record a mask's stamp and its arrival (wall clock)."""
        arrival = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.changed:
            self.masks.append((stamp, arrival))
            self.stamps.add(stamp)
            self.changed.notify_all()

    def on_diagnostics(self, msg: Any) -> None:
        """Keep a DiagnosticArray that holds the node's statuses."""
        statuses = diagnostics_dict(msg)
        if any(name.startswith(f"{NODE_NAME}: ") for name in statuses):
            with self.changed:
                self.diagnostics = statuses

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Until ``predicate()`` holds (checked on every change) or ``timeout`` s; whether it holds."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def snapshot(self) -> list[tuple[int, int]]:
        """A copy of the (stamp, arrival) pairs so far."""
        with self.changed:
            return list(self.masks)




class Camera:
    """One message per frame, built once by ``transport``; ``publish`` stamps one and sends it. The viewer:
    ``log`` gets the node's masks and /diagnostics. Subclasses make the transport, count the node's mask
    publishers and close it."""

    def __init__(self, transport: Transport, header: Callable[[], Any], frames: Sequence[np.ndarray], log: MaskLog,
                 qos: QosProfile) -> None:
        self.messages = [transport.image(header(), f, "rgb8") for f in frames]  # each with its own header
        self._camera = transport.publisher(CAMERA_TOPIC, IMAGE, qos)
        self._masks = transport.subscribe(MASK_TOPIC, IMAGE, DEFAULT, log.on_mask)
        transport.subscribe(DIAGNOSTICS_TOPIC, DIAGNOSTIC_ARRAY, DEFAULT, log.on_diagnostics)

    def publish(self, index: int, stamp_ns: int) -> None:
        """Send frame ``index`` stamped ``stamp_ns`` (wall clock)."""
        msg = self.messages[index]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        self._camera.publish(msg)

    def subscribers(self) -> int:
        """Subscriptions matched to the camera (the node's input)."""
        return self._camera.subscription_count()

    def mask_publishers(self) -> int:
        """Publishers on the node's ~/mask, as seen by our mask subscription."""
        raise NotImplementedError

    def close(self) -> None:
        """Leave the middleware."""
        raise NotImplementedError


class RclpyCamera(Camera):
    """The camera and viewer on rclpy (Fast DDS): ``RclpyTransport`` on a node of its own context, spun by one
    executor thread."""

    def __init__(self, domain: int, frames: Sequence[np.ndarray], log: MaskLog, qos: QosProfile) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from std_msgs.msg import Header

        from ssp_ros.ros.rclpy_transport import RclpyTransport

        with environment(ros_env(domain)):
            self.context = rclpy.Context()
            rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
            self.node = rclpy.create_node("ssp_bench_camera", context=self.context)
        super().__init__(RclpyTransport(self.node), lambda: Header(frame_id=FRAME_ID), frames, log, qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, name="bench_camera", daemon=True)
        self.thread.start()

    def mask_publishers(self) -> int:
        return self.node.count_publishers(MASK_TOPIC)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)


class DdsCamera(Camera):
    """The camera and viewer on Cyclone DDS (``DdsTransport``: rosbags messages as CDR, one reader thread)."""

    def __init__(self, domain: int, frames: Sequence[np.ndarray], log: MaskLog, qos: QosProfile) -> None:
        from ssp_ros.ros.dds_transport import DdsTransport

        with environment(ros_env(domain)):
            self.transport = DdsTransport(domain, "ssp_bench_camera")
        types = self.transport.typestore.types

        def header() -> Any:
            return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                                frame_id=FRAME_ID)

        super().__init__(self.transport, header, frames, log, qos)

    def mask_publishers(self) -> int:
        return self._masks.get_subscription_matched_status().current_count

    def close(self) -> None:
        self.transport.close()


CAMERAS: dict[str, type[Camera]] = {"rclpy": RclpyCamera, "dds": DdsCamera}
