"""The segmentation node over any ``transport.Transport``: ROS 2 (``ssp_node``) or Cyclone DDS (``ssp node``).

The subscription callback only drops each message into a newest-frame slot; one worker thread takes the
newest frame, runs it (conversion, pipeline, output messages) and publishes with the input header, so the
callback never blocks and stale frames are dropped instead of queued. Topics: input ``node.image_topic``
(Image, or CompressedImage with ``node.input_compressed``), outputs ``~/mask`` (mono8 class ids),
``~/overlay`` (bgr8), ``~/confidence`` (mono8), ``~/similarity`` (mono8, optional) and ``/diagnostics``
(one DiagnosticArray every ``node.diagnostics_period_s``, statuses named like diagnostic_updater's, by the
node's fully qualified name under a namespace). An output message is only built while something subscribes
to its topic. ROS-only extras (``~/reset``, ``~/label_info``, parameter changes in flight) are wired by
``rclpy_transport``; the entry points are in ``main``.

Built active by default (subscribed, publishing). The managed node (``lifecycle``) builds it inactive at
*configure* and calls ``activate``/``deactivate``/``close`` from its transitions.

rclpy and the ROS message packages are imported inside functions, so the package imports without ROS.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ssp_ros.backends import make_backend
from ssp_ros.classes import ClassSet, load_class_set
from ssp_ros.config import SspConfig
from ssp_ros.pipeline import Pipeline
from ssp_ros.resources import resolve_data_path
from ssp_ros.ros.diagnostics import StreamMonitor
from ssp_ros.ros.log_throttle import LogThrottle, with_held_back
from ssp_ros.ros.stream import OUTPUTS, PIPELINE_ERROR, FrameSlot, Skipped, StreamOutput, StreamProcessor
from ssp_ros.ros.transport import (
    DEFAULT,
    RELIABLE_LATEST,
    SENSOR_DATA,
    BadSample,
    DiagnosticItem,
    QosProfile,
    Transport,
)
from ssp_ros.segmenter_pipeline import OUTPUTS as SEGMENTER_OUTPUTS
from ssp_ros.segmenter_pipeline import SegmenterPipeline

NODE_NAME = "ssp"
IMAGE, COMPRESSED_IMAGE = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
DIAGNOSTICS_TOPIC = "/diagnostics"
LOG_THROTTLE_S = 5.0  # a per-frame problem is logged once in this long per kind, with a count of the rest
THREAD_STOP_WAIT_S = 5.0  # close() waits this long for each of its threads before it says one did not stop
BACKEND_CLOSE_WAIT_S = 30.0  # close() waits this long for a frame still in flight before it frees the backend


class SegmentationNode:
    """Pipeline + stream logic on a transport, with its worker and diagnostics threads; ``close()`` stops them
    (the transport stays open: its owner closes it)."""

    def __init__(self, transport: Transport, cfg: SspConfig,
                 fallback: Callable[[Any], np.ndarray] | None = None, active: bool = True) -> None:
        self.transport = transport
        self.cfg = cfg
        self._backend: Any = None  # closed by close(), after the worker that runs it has stopped
        self.classes: ClassSet
        self.classes, self.processor, self.hardware_id = self._make_processor(fallback)
        self.slot: FrameSlot[Any] = FrameSlot()
        names = self._output_names()
        self.publishers: dict[str, Any] = {}
        self.diagnostics: Any = None
        try:  # a bad QoS override fails one publisher: the ones made before it go too
            for name in names:
                self.publishers[name] = transport.publisher(f"~/{name}", IMAGE, RELIABLE_LATEST)
            self.diagnostics = transport.publisher(DIAGNOSTICS_TOPIC, DIAGNOSTIC_ARRAY, DEFAULT)
        except BaseException:
            self._destroy_publishers()
            self._close_backend()
            raise
        self.period_s = cfg.node.diagnostics_period_s
        self.monitor = StreamMonitor(self.hardware_id, transport.resolve(cfg.node.image_topic),
                                     window_s=max(2.0, 2 * cfg.node.diagnostics_period_s))
        self._stop = threading.Event()
        self._active = threading.Event()  # frames are processed and outputs published only while set
        self._busy = threading.Lock()  # held for one frame or one diagnostics message; deactivate waits on it
        self._generation = 0  # counts deactivations: a frame taken before one is not processed after it
        self._subscriptions: list[Any] = []
        self.failure: BaseException | None = None  # what stopped the worker, if anything did
        self.publish_errors = 0
        self._throttle = LogThrottle(LOG_THROTTLE_S)
        self._threads = [threading.Thread(target=self._work, name="ssp_worker", daemon=True),
                         threading.Thread(target=self._report, name="ssp_diagnostics", daemon=True)]
        for thread in self._threads:
            thread.start()
        if active:
            try:
                self.activate()
            except BaseException:
                self.close()  # e.g. a bad QoS override: no thread may outlive a node that failed to start
                raise

    def _make_processor(self, fallback: Callable[[Any], np.ndarray] | None) -> tuple[ClassSet, Any, str]:
        """The class list, the processor of the worker's items and the hardware id; sets ``_backend``. With
        ``node.segmenter`` the user's ONNX segmenter and the stabiliser take the pipeline's place."""
        if self.cfg.node.segmenter:
            spec = resolve_data_path(self.cfg.node.segmenter, "node.segmenter", "segmenter YAML")
            pipeline = SegmenterPipeline(self.cfg, spec)
            processor = StreamProcessor(pipeline, pipeline.classes, self.transport, self.cfg.node, fallback=fallback)
            return pipeline.classes, processor, f"onnxruntime ({pipeline.segmenter.model.name}) + stabiliser"
        classes = load_class_set(self.cfg.model.dataset)
        backend = make_backend(self.cfg, classes.num_classes)
        self._backend = backend
        try:
            processor = StreamProcessor(Pipeline(self.cfg, backend), classes, self.transport, self.cfg.node,
                                        fallback=fallback)
        except BaseException:
            self._close_backend()
            raise
        return classes, processor, backend.name

    def _output_names(self) -> list[str]:
        """The output topics (``~/<name>``) this node publishes (a stabilised segmenter gives mask and overlay)."""
        if self.cfg.node.segmenter:
            return [name for name in OUTPUTS if name in SEGMENTER_OUTPUTS]
        return [name for name in OUTPUTS if name != "similarity" or self.cfg.node.publish_similarity]

    def _inputs(self) -> list[tuple[str, str, QosProfile, Callable[[Any], None]]]:
        """What ``activate`` subscribes to: (topic, type, QoS, callback) each."""
        node = self.cfg.node
        msg_type = COMPRESSED_IMAGE if node.input_compressed else IMAGE
        return [(node.image_topic, msg_type, RELIABLE_LATEST if node.reliable else SENSOR_DATA, self._on_image)]

    def _describe(self) -> str:
        """The line ``activate`` logs."""
        node = self.cfg.node
        kind = "CompressedImage" if node.input_compressed else "Image"
        return (f"segmenting {self.monitor.topic} ({kind}, {'reliable' if node.reliable else 'best effort'}) with "
                f"{self.hardware_id}, {self.classes.num_classes} classes ({self.classes.name})")

    @property
    def active(self) -> bool:
        """True while subscribed to the camera and publishing."""
        return self._active.is_set()

    def activate(self) -> None:
        """Subscribe to the inputs: outputs flow from the next frame on."""
        if self._subscriptions:
            return
        self._active.set()  # before subscribing: the first frame must not find the node inactive
        try:
            for topic, msg_type, qos, callback in self._inputs():
                self._subscriptions.append(self.transport.subscribe(topic, msg_type, qos, callback))
        except BaseException:
            self._unsubscribe()  # those made before the one that failed go too
            raise
        self.transport.log("info", self._describe())

    def deactivate(self) -> None:
        """Unsubscribe, let the frame in flight finish and drop the propagation state: nothing is published after
        this returns, and the next ``activate`` starts from a fresh frame."""
        self._unsubscribe()
        with self._busy:
            self._generation += 1  # a frame the worker holds from before this is not for later
            self.slot.take(timeout=0)
            self.processor.reset()

    def _unsubscribe(self) -> None:
        while self._subscriptions:
            self.transport.destroy(self._subscriptions.pop())
        self._active.clear()

    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self.monitor.received(now)
        if isinstance(msg, BadSample):  # the transport could not decode it: received, and skipped
            outcome = Skipped(BadSample.REASON, msg.detail)
            self.monitor.outcome(now, outcome)
            self._log_skip(outcome)
        elif self.slot.put(msg):
            self.monitor.superseded(now)

    def _work(self) -> None:
        try:
            while not self.slot.closed:
                generation = self._generation
                msg = self.slot.take(timeout=0.5)
                with self._busy:
                    if msg is not None and self._active.is_set() and generation == self._generation:
                        self.process(msg)
        except BaseException as err:  # noqa: BLE001 - the owner sees ``failure`` and exits non-zero (respawn)
            self.failure = err
            self._log("error", f"the worker stopped: {err!r}")

    def _log(self, level: str, text: str) -> None:
        """Log through the transport; a failing logger must not take the worker down with it."""
        try:
            self.transport.log(level, text)
        except Exception as err:  # noqa: BLE001 - nothing left to log to but stderr
            print(f"[{level}] {text} (logging failed: {err!r})", file=sys.stderr)

    def _log_throttled(self, level: str, key: str, text: str) -> None:
        """Log a per-frame event at most once per ``LOG_THROTTLE_S`` for its ``key``, with a count of the lines of
        that kind held back since the last one."""
        held = self._throttle.check(key, time.monotonic())
        if held is not None:
            self._log(level, with_held_back(text, held, LOG_THROTTLE_S))

    def _log_skip(self, outcome: Skipped) -> None:
        self._log_throttled("warning", f"skipped: {outcome.reason}",
                            f"skipped a frame ({outcome.reason}): {outcome.detail}")

    def _stopping(self) -> bool:
        """True once the node or the middleware is shutting down: what fails then is not an error."""
        return self._stop.is_set() or not self.transport.ok()

    def process(self, msg: Any) -> None:
        """Run one input message and publish its outputs (or count and log why it was skipped). Raises nothing
        that one frame could cause: conversion, pipeline, publishing and logging errors are counted and logged.
        Only the outputs that someone subscribes to are built."""
        waited_ms = 1000.0 * self.slot.waited_s
        try:
            wanted = frozenset(name for name, publisher in self.publishers.items()
                               if publisher.subscription_count() > 0)
            outcome = self.processor.process(msg, now=self.transport.now(), outputs=wanted)
        except Exception as err:  # noqa: BLE001 - the worker must outlive one bad frame; logged and counted
            self._log_throttled("error", "processing", f"processing failed: {err!r}")
            outcome = self.processor.skip(PIPELINE_ERROR, repr(err))
        if isinstance(outcome, StreamOutput):
            clock = time.perf_counter()
            try:
                for name, publisher in self.publishers.items():
                    message = getattr(outcome, name)
                    if message is not None:
                        publisher.publish(message)
            except Exception as err:  # noqa: BLE001 - e.g. the middleware shutting down under us
                if not self._stopping():  # SIGINT shuts the context down under a frame in flight: no error
                    self.publish_errors += 1
                    self._log_throttled("error", "publish",
                                        f"publishing the outputs of stamp {outcome.stamp_ns} failed: {err!r}")
            outcome.timings_ms.update(wait=waited_ms, publish=1000.0 * (time.perf_counter() - clock))
            if "age" in outcome.timings_ms:  # camera stamp → callback: the age when taken, less the wait
                outcome.timings_ms["transit"] = outcome.timings_ms["age"] - waited_ms
        else:
            self._log_skip(outcome)
        self.monitor.outcome(time.monotonic(), outcome)

    @property
    def alive(self) -> bool:
        """False once the worker thread has stopped on an error it could not survive (see ``failure``)."""
        return self.failure is None

    def _diagnostic_items(self, now: float) -> list[DiagnosticItem]:
        """The statuses /diagnostics carries at ``now`` (monotonic seconds)."""
        return self.monitor.items(now)

    def publish_diagnostics(self) -> None:
        """Publish the node's statuses once on /diagnostics."""
        items = self._diagnostic_items(time.monotonic())
        self.diagnostics.publish(self.transport.diagnostics(round(self.transport.now() * 1e9), items,
                                                            self.hardware_id))

    def _report(self) -> None:
        while not self._stop.wait(self.period_s):
            with self._busy:  # so that nothing is published once deactivate has returned
                if not self._active.is_set():
                    continue
                try:
                    self.publish_diagnostics()
                except Exception as err:  # noqa: BLE001 - diagnostics must never stop the node
                    if not self._stopping():
                        self._log_throttled("error", "diagnostics", f"publishing diagnostics failed: {err!r}")

    def close(self) -> None:
        """Unsubscribe, stop the worker and diagnostics threads (the frame being processed finishes first),
        destroy the publishers and close the backend (its GPU memory and CUDA context go now, not whenever the
        last reference does). Idempotent."""
        self._unsubscribe()
        self._stop.set()
        self.slot.close()
        for thread in self._threads:
            thread.join(timeout=THREAD_STOP_WAIT_S)
            if thread.is_alive():  # e.g. the worker inside a long frame: the backend wait below covers it
                self._log("warning", f"thread {thread.name} did not stop within {THREAD_STOP_WAIT_S:g} s")
        self._destroy_publishers()
        # a worker still inside a frame holds _busy: the backend is closed once that frame is done, never under it
        if self._busy.acquire(timeout=BACKEND_CLOSE_WAIT_S):
            try:
                self._close_backend()
            finally:
                self._busy.release()
        else:
            self._log("error", f"the frame in flight did not finish within {BACKEND_CLOSE_WAIT_S:g} s; "
                               "the backend is left open")

    def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception as err:  # noqa: BLE001 - closing must finish; what it could not free is logged
                self._log("error", f"closing the {backend.name} backend failed: {err!r}")

    def _destroy_publishers(self) -> None:
        for publisher in (*self.publishers.values(), self.diagnostics):
            if publisher is not None:
                self.transport.destroy(publisher)
        self.publishers, self.diagnostics = {}, None
