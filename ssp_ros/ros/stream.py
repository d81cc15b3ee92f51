"""The ROS node's logic without ROS: newest-frame slot, stale-frame policy, message → pipeline → messages.

``StreamProcessor.process(msg)`` converts one Image/CompressedImage message, runs ``Pipeline.process`` and
builds the output messages with the input header. It never raises on bad input: it returns
``Skipped(reason, detail)`` and counts the reason. The node feeds it from a worker thread through a
``FrameSlot`` (the subscription callback only drops the message into the slot), bag replay feeds it
directly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from ssp_ros.classes import ClassSet, overlay
from ssp_ros.config import NodeConfig, SspConfig
from ssp_ros.errors import FrameError, SspError
from ssp_ros.pipeline import FrameResult, Pipeline
from ssp_ros.registration import Registration
from ssp_ros.ros.images import MessageError, MessageFactory, message_to_rgb, rgb_to_bgr, stamp_ns
from ssp_ros.ros.params import check_dynamic, config_with_params
from ssp_ros.stabiliser import StabilisedFrame

SUPERSEDED = "superseded by a newer frame"  # the slot held it when a newer one arrived
STALE = "stale"  # older than node.max_age_ms when its turn came
FUTURE = "stamp in the future"  # stamped more than node.max_future_ms ahead of the node's clock
DUPLICATE = "duplicate stamp"  # the same stamp as the last frame processed
NOT_NEWER = "stamp not newer"  # older stamp with propagation.reset_on_backwards_time off
REJECTED = "frame rejected"  # a converted frame the pipeline refuses (e.g. smaller than 16 px)
PIPELINE_ERROR = "pipeline error"  # any other SspError from the pipeline

T = TypeVar("T")


class FrameSlot(Generic[T]):
    """A one-item mailbox between a subscription callback and a worker: ``put`` replaces what is waiting
    (counted in ``dropped``), ``take`` waits for the newest item. Thread-safe; ``waited_s`` is how long the
    item ``take`` returned last had waited in the slot."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._put_at = 0.0
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0
        self.waited_s = 0.0

    def put(self, item: T) -> bool:
        """Offer ``item``; True if it displaced one that was never taken."""
        with self._cond:
            displaced = self._item is not None
            self.dropped += displaced
            self._item, self._put_at = item, time.monotonic()
            self._cond.notify()
            return displaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` s; None on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            if item is not None:
                self.waited_s = time.monotonic() - self._put_at
            return None if self._closed else item

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake the worker for good (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def frame_age_ms(stamp: float, now: float) -> float:
    """How old a frame stamped ``stamp`` is at ``now`` (both seconds, same clock); negative if from the future."""
    return 1000.0 * (now - stamp)


def is_stale(stamp: float, now: float, max_age_ms: float) -> bool:
    """True if ``max_age_ms`` > 0 and the frame is older than that (0 keeps every frame)."""
    return max_age_ms > 0 and frame_age_ms(stamp, now) > max_age_ms


def is_future(stamp: float, now: float, max_future_ms: float) -> bool:
    """True if the frame is stamped more than ``max_future_ms`` ahead of ``now``. A clock at 0 has not started
    (sim time before the first /clock message): nothing is in its future yet."""
    return now > 0 and -frame_age_ms(stamp, now) > max_future_ms


def stamp_problem(stamp: int, now: float | None, node: NodeConfig, last_stamp: int | None) -> tuple[str, str] | None:
    """Why a frame stamped ``stamp`` (ns) is not to be processed at ``now`` (seconds; None skips the clock checks)
    after the frame stamped ``last_stamp``: (reason, detail) for ``STALE``, ``FUTURE`` or ``DUPLICATE``, else None."""
    seconds = stamp * 1e-9
    if now is not None and is_stale(seconds, now, node.max_age_ms):
        return STALE, f"{frame_age_ms(seconds, now):.0f} ms old > max_age_ms {node.max_age_ms:g}"
    if now is not None and is_future(seconds, now, node.max_future_ms):
        return FUTURE, (f"stamp {seconds:.9f} s is {-frame_age_ms(seconds, now):.0f} ms ahead of the node's clock "
                        f"({now:.3f} s) > max_future_ms {node.max_future_ms:g}")
    if stamp == last_stamp:
        return DUPLICATE, f"stamp {seconds:.9f} s was already processed"
    return None


@dataclass(frozen=True)
class Skipped:
    """A message that produced no output, and why (``reason`` is the counter key)."""

    reason: str
    detail: str
    stamp_ns: int | None = None


OUTPUTS = ("mask", "overlay", "confidence", "similarity")  # the messages a frame can give, by topic name
# The node's own costs around the pipeline's STAGES: camera stamp → callback (middleware, deserialisation, the
# GIL), the wait in the newest-frame slot, message → RGB, building the outputs, publishing them.
NODE_STAGES = ("transit", "wait", "convert", "messages", "publish")


@dataclass
class StabilisedResult:
    """One frame of the stabiliser node: the stabiliser's result with the node's timings, read by the monitor
    as a ``FrameResult`` is (``fused``, ``reset_reason``, ``registration``, ``registration_ms``, ``timings_ms``)."""

    frame: StabilisedFrame
    timings_ms: dict[str, float]

    @property
    def fused(self) -> bool:
        return self.frame.fused

    @property
    def reset_reason(self) -> str:
        return self.frame.reset_reason

    @property
    def registration(self) -> Registration | None:
        return self.frame.registration

    @property
    def registration_ms(self) -> None:
        """None: the stabiliser registers in line, so registration has no thread time of its own."""
        return None


@dataclass
class StreamOutput:
    """What one message produced: the pipeline result and the messages to publish (input header). A message
    nobody asked for is None, and never built."""

    header: Any
    stamp_ns: int
    frame: np.ndarray  # the input as H×W×3 RGB
    result: FrameResult | StabilisedResult
    mask: Any | None  # mono8 class ids
    confidence: Any | None  # mono8
    overlay: Any | None  # bgr8 colour blend
    similarity: Any | None  # mono8; also None after a reset or without node.publish_similarity
    timings_ms: dict[str, float]  # "convert" (message → RGB), "messages" (building the outputs) and, given
    #                               ``now``, "age" (camera stamp → the start of processing)


class StreamProcessor:
    """One camera stream: messages in, output messages (or a counted skip) out. One thread at a time;
    ``reset`` and ``reconfigure`` may be called from another thread (they swap whole objects)."""

    def __init__(self, pipeline: Pipeline, classes: ClassSet, messages: MessageFactory, node: NodeConfig,
                 fallback: Callable[[Any], np.ndarray] | None = None) -> None:
        self.pipeline, self.classes, self.messages, self.node = pipeline, classes, messages, node
        self.fallback = fallback
        self.skipped: Counter[str] = Counter()
        self.last_problem: dict[str, str] = {}  # reason → the latest detail
        self.outputs = 0
        self._last_stamp_ns: int | None = None

    @property
    def config(self) -> SspConfig:
        return replace(self.pipeline.cfg, node=self.node)

    def skip(self, reason: str, detail: str, stamp: int | None = None) -> Skipped:
        """Count a skipped message under ``reason`` (also for skips decided outside, e.g. replay's)."""
        self.skipped[reason] += 1
        self.last_problem[reason] = detail
        return Skipped(reason, detail, stamp)

    def reset(self) -> None:
        """Start over at the next frame (the ~/reset service)."""
        self.pipeline.reset()

    def reconfigure(self, values: dict[str, Any]) -> SspConfig:
        """Apply changed parameters (name → ROS value) in flight; ConfigError (nothing applied) if a value is
        invalid or the parameter cannot change while running."""
        check_dynamic(list(values))
        cfg = config_with_params(self.config, values)
        self.pipeline.reconfigure(propagation=cfg.propagation, registration=cfg.registration)
        self.node = cfg.node
        return cfg

    def process(self, msg: Any, now: float | None = None,
                outputs: frozenset[str] | None = None) -> StreamOutput | Skipped:
        """Run one Image or CompressedImage message; ``now`` (seconds, the stamps' clock) enables the
        ``max_age_ms`` and ``max_future_ms`` checks; ``outputs`` names the messages to build (default: all of
        ``OUTPUTS``, the similarity only with ``node.publish_similarity``). Bad input comes back as a counted
        ``Skipped``, never as an exception."""
        try:
            stamp = stamp_ns(msg.header)
        except MessageError as err:
            return self.skip(err.reason, str(err))
        seconds = stamp * 1e-9
        problem = stamp_problem(stamp, now, self.node, self._last_stamp_ns)
        if problem is not None:
            return self.skip(*problem, stamp)
        wanted = frozenset(OUTPUTS) if outputs is None else outputs
        if not self.node.publish_similarity:
            wanted -= {"similarity"}
        clock = time.perf_counter()
        try:
            frame = message_to_rgb(msg, self.fallback, self.node.max_pixels)
        except MessageError as err:
            return self.skip(err.reason, str(err), stamp)
        convert_ms = 1000.0 * (time.perf_counter() - clock)
        try:
            result = self.pipeline.process(frame, seconds, with_similarity="similarity" in wanted)
        except FrameError as err:
            return self.skip(REJECTED, str(err), stamp)
        except (SspError, cv2.error) as err:
            return self.skip(PIPELINE_ERROR, str(err), stamp)
        if result is None:
            return self.skip(NOT_NEWER, f"stamp {seconds:.9f} s is not newer than the last frame's", stamp)
        self._last_stamp_ns = stamp
        self.outputs += 1
        clock = time.perf_counter()
        messages = self._messages(msg.header, frame, result, wanted)
        timings = {"convert": convert_ms, "messages": 1000.0 * (time.perf_counter() - clock)}
        if now is not None:
            timings["age"] = frame_age_ms(seconds, now)
        return StreamOutput(header=msg.header, stamp_ns=stamp, frame=frame, result=result, **messages,
                            timings_ms=timings)

    def _messages(self, header: Any, frame: np.ndarray, result: FrameResult, wanted: frozenset[str]) -> dict[str, Any]:
        """The output messages named in ``wanted`` (None for the others), with the input header."""
        images = {"mask": lambda: (result.mask, "mono8"), "confidence": lambda: (result.confidence, "mono8"),
                  "overlay": lambda: (rgb_to_bgr(overlay(frame, result.mask, self.classes)), "bgr8"),
                  "similarity": lambda: (result.similarity, "mono8")}
        out: dict[str, Any] = dict.fromkeys(OUTPUTS)
        for name in OUTPUTS:
            if name in wanted and not (name == "similarity" and result.similarity is None):
                out[name] = self.messages.image(header, *images[name]())
        return out
