"""Cyclone DDS transport: the node as a plain DDS process that ROS 2 machines see as a ROS 2 node's topics.

``DdsTransport`` implements ``transport.Transport`` with the cyclonedds wheel (no ROS): ROS topic ``/ssp/mask``
is the DDS topic ``rt/ssp/mask`` of type ``sensor_msgs::msg::dds_::Image_`` (``dds_types``), in the DDS domain
that ROS 2 calls ``ROS_DOMAIN_ID``. Messages are rosbags dataclasses (Humble typestore) serialised with rosbags'
CDR and written as raw bytes (cyclonedds' ``ddspy_write`` / ``ddspy_take``, the calls under ``DataWriter.write``
and ``DataReader.take``): frame data never becomes a Python list. One reader thread waits on all subscriptions
and calls their callbacks. ``ssp node --transport dds`` runs the node on it (``main.run_dds_node``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ssp_ros.errors import SspError
from ssp_ros.ros.images import RosbagsMessages
from ssp_ros.ros.label_info import DEFINITIONS
from ssp_ros.ros.log_throttle import LogThrottle, with_held_back
from ssp_ros.ros.transport import BadSample, DiagnosticItem, QosProfile, resolve_name

LOG = logging.getLogger("ssp.node")
MAX_TAKE = 16  # samples taken per reader per wake-up (keep-last readers hold fewer)
WAIT_S = 0.2  # reader thread wake-up period when nothing arrives (checks for shutdown)
RELIABLE_BLOCKING_S = 0.1  # max_blocking_time of reliable writers (ROS 2's default)
LOG_THROTTLE_S = 5.0  # a failing reader logs once in this long, with a count of what it held back
# CYCLONEDDS_URI for a private domain on the loopback interface only (the node tests, ``ssp bench-node``)
LOOPBACK = ("<CycloneDDS><Domain Id='any'><General><Interfaces><NetworkInterface name='lo'/></Interfaces>"
            "<AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto</ParticipantIndex>"
            "<MaxAutoParticipantIndex>50</MaxAutoParticipantIndex><Peers><Peer address='127.0.0.1'/></Peers>"
            "</Discovery></Domain></CycloneDDS>")
# Fast DDS 3 (ROS 2 Kilted's default RMW) announces XTypes type information that Cyclone DDS 11 cannot use: its
# sequences' element flags lack the try-construct bits (Cyclone rejects the type object), and its type lookup answers
# with complete type objects only, which Cyclone cannot find assignable to our final structs; Cyclone then never
# matches its endpoints. Ignoring the type information of eProsima's vendor id (1.15) matches them by type name and
# QoS, as Fast DDS 2 (Jazzy), which announces none, always was.
FAST_DDS_COMPAT = ("<CycloneDDS><Domain Id='any'><Compatibility><IgnoreTypeInformation>1.15</IgnoreTypeInformation>"
                   "</Compatibility></Domain></CycloneDDS>")


def dds_qos(qos: QosProfile) -> Any:
    """``qos`` as a Cyclone DDS Qos (keep last; best effort or reliable; volatile or transient local)."""
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.util import duration

    reliability = (Policy.Reliability.Reliable(duration(seconds=RELIABLE_BLOCKING_S)) if qos.reliable
                   else Policy.Reliability.BestEffort)
    durability = Policy.Durability.TransientLocal if qos.transient_local else Policy.Durability.Volatile
    return Qos(reliability, Policy.History.KeepLast(qos.depth), durability)


def cyclone_config(user: str | None) -> str:
    """The participant's Cyclone configuration: ``FAST_DDS_COMPAT``, then the user's CYCLONEDDS_URI (files or XML
    fragments), whose settings win where both set one."""
    return f"{FAST_DDS_COMPAT},{user}" if user else FAST_DDS_COMPAT


def participant(domain_id: int) -> Any:
    """A DomainParticipant with ``cyclone_config``: Cyclone reads CYCLONEDDS_URI when a process's first participant
    creates the domain, so it is set for that call and restored after."""
    from cyclonedds.domain import DomainParticipant

    user = os.environ.get("CYCLONEDDS_URI")
    os.environ["CYCLONEDDS_URI"] = cyclone_config(user)
    try:
        return DomainParticipant(domain_id)
    finally:
        if user is None:
            del os.environ["CYCLONEDDS_URI"]
        else:
            os.environ["CYCLONEDDS_URI"] = user


class DdsPublisher:
    """A DataWriter that writes rosbags messages as CDR bytes."""

    def __init__(self, writer: Any, msg_type: str, typestore: Any) -> None:
        self.writer, self.msg_type, self._typestore = writer, msg_type, typestore

    def publish(self, msg: Any) -> None:
        from cyclonedds._clayer import ddspy_write
        from cyclonedds.core import DDSException

        data = bytes(self._typestore.serialize_cdr(msg, self.msg_type))
        data += b"\0" * (-len(data) % 4)  # CDR samples are padded to 4 bytes (as DataWriter.write does)
        writer = self.writer  # one read: ``close`` may run in another thread
        if writer is None:
            raise SspError(f"publishing {self.msg_type} after the publisher was destroyed")
        ret = ddspy_write(writer._ref, data)
        if ret < 0:
            raise DDSException(ret, f"writing {self.msg_type} to {writer.topic.name}")

    def subscription_count(self) -> int:
        return 0 if self.writer is None else self.writer.get_publication_matched_status().current_count

    def close(self) -> None:
        """Drop the DataWriter (Cyclone deletes it with its last reference); ``publish`` raises after this."""
        self.writer = None


def vision_types() -> dict[str, Any]:
    """rosbags types of vision_msgs' LabelInfo and VisionClass (``label_info.DEFINITIONS``), to register."""
    types: dict[str, Any] = {}
    for name, definition in DEFINITIONS.items():
        types.update(get_types_from_msg(definition, name))
    return types


class RosbagsBuilder:
    """Output messages (Image, DiagnosticArray) as rosbags dataclasses: the DDS transport's message side."""

    def __init__(self, typestore: Any, node_name: str) -> None:
        self.typestore, self.node_name = typestore, node_name
        self._messages = RosbagsMessages(typestore)

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        return self._messages.image(header, pixels, encoding)

    def diagnostics(self, stamp_ns: int, items: Sequence[DiagnosticItem], hardware_id: str) -> Any:
        types = self.typestore.types
        status = [types["diagnostic_msgs/msg/DiagnosticStatus"](
            level=item.level, name=f"{self.node_name}: {item.name}", message=item.message, hardware_id=hardware_id,
            values=[types["diagnostic_msgs/msg/KeyValue"](key=k, value=v) for k, v in item.values])
            for item in items]
        stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        header = types["std_msgs/msg/Header"](stamp=stamp, frame_id="")
        return types["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=status)


class DdsTransport:
    """``transport.Transport`` on one DomainParticipant; ``close()`` stops the reader thread."""

    def __init__(self, domain_id: int = 0, node_name: str = "ssp", namespace: str = "/") -> None:
        from cyclonedds.core import GuardCondition, WaitSet

        self.node_name, self.namespace = node_name, namespace
        self.participant = participant(domain_id)
        self.typestore = get_typestore(Stores.ROS2_HUMBLE)
        self.typestore.register(vision_types())  # the Humble store has no vision_msgs
        self._messages = RosbagsBuilder(self.typestore, node_name)
        self._topics: dict[str, Any] = {}
        self._readers: list[tuple[Any, Any, str, Callable[[Any], None]]] = []  # reader, condition, type, callback
        self._readers_lock = threading.Lock()  # held by the reader thread while it delivers; ``destroy`` waits
        self._waitset = WaitSet(self.participant)
        self._guard = GuardCondition(self.participant)
        self._waitset.attach(self._guard)
        self._closed = False
        self._thread: threading.Thread | None = None
        self._throttle = LogThrottle(LOG_THROTTLE_S)

    def resolve(self, topic: str) -> str:
        return resolve_name(topic, self.node_name, self.namespace)

    def _topic(self, topic: str, msg_type: str) -> Any:
        from cyclonedds.topic import Topic

        from ssp_ros.ros.dds_types import IDL_TYPES, dds_topic

        if msg_type not in IDL_TYPES:
            raise SspError(f"no DDS type for {msg_type} (known: {', '.join(IDL_TYPES)})")
        name = dds_topic(self.resolve(topic))
        if name not in self._topics:
            self._topics[name] = Topic(self.participant, name, IDL_TYPES[msg_type])
        return self._topics[name]

    def subscribe(self, topic: str, msg_type: str, qos: QosProfile, callback: Callable[[Any], None]) -> Any:
        """As ``Transport.subscribe``; returns the DataReader (for its matched status)."""
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState
        from cyclonedds.sub import DataReader

        reader = DataReader(self.participant, self._topic(topic, msg_type), qos=dds_qos(qos))
        condition = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        self._waitset.attach(condition)
        with self._readers_lock:
            self._readers.append((reader, condition, msg_type, callback))
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="dds_reader", daemon=True)
            self._thread.start()
        return reader

    def publisher(self, topic: str, msg_type: str, qos: QosProfile) -> DdsPublisher:
        from cyclonedds.pub import DataWriter

        writer = DataWriter(self.participant, self._topic(topic, msg_type), qos=dds_qos(qos))
        return DdsPublisher(writer, msg_type, self.typestore)

    def destroy(self, entity: Any) -> None:
        """As ``Transport.destroy``: a DataReader stops delivering at once; Cyclone deletes each entity when its
        last Python reference goes (cyclonedds keeps them in a WeakValueDictionary)."""
        if isinstance(entity, DdsPublisher):
            entity.close()
            return
        with self._readers_lock:
            for item in [item for item in self._readers if item[0] is entity]:
                self._waitset.detach(item[1])
                self._readers.remove(item)

    def _read(self) -> None:
        from cyclonedds._clayer import ddspy_take
        from cyclonedds.util import duration

        while not self._closed:
            self._waitset.wait(duration(seconds=WAIT_S))
            with self._readers_lock:
                for reader, condition, msg_type, callback in self._readers:
                    samples = ddspy_take(reader._ref, condition.mask, MAX_TAKE)
                    if isinstance(samples, int):
                        held = self._throttle.check(f"take {reader.topic.name}", time.monotonic())
                        if held is not None:
                            LOG.error(with_held_back(f"taking from {reader.topic.name} failed (DDS return code "
                                                     f"{samples})", held, LOG_THROTTLE_S))
                        continue
                    for data, info in samples:
                        if info.valid_data:
                            self._deliver(data, msg_type, callback, reader.topic.name)

    def _deliver(self, data: bytes, msg_type: str, callback: Callable[[Any], None], topic: str) -> None:
        try:
            msg = self.typestore.deserialize_cdr(data, msg_type)
        except Exception as err:  # noqa: BLE001 - a corrupt sample from the network must not stop the reader
            msg = BadSample(topic, f"a {len(data)}-byte {msg_type} sample on {topic} does not decode: {err!r}")
        try:
            callback(msg)
        except Exception:  # noqa: BLE001 - one failing callback must not stop the reader thread
            LOG.exception("subscription callback for %s failed", topic)

    def ok(self) -> bool:
        return not self._closed

    def now(self) -> float:
        return time.time()

    def log(self, level: str, text: str) -> None:
        LOG.log(logging.getLevelName(level.upper()), text)

    def image(self, header: Any, pixels: np.ndarray, encoding: str) -> Any:
        return self._messages.image(header, pixels, encoding)

    def diagnostics(self, stamp_ns: int, items: Sequence[DiagnosticItem], hardware_id: str) -> Any:
        return self._messages.diagnostics(stamp_ns, items, hardware_id)

    def close(self) -> None:
        """Stop the reader thread (no callback runs after this returns)."""
        self._closed = True
        self._guard.set(True)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
