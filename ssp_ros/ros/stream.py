"""The ROS node's logic without ROS: newest-frame slot, stale-frame policy, message → pipeline → messages.

``StreamProcessor.process(msg)`` converts one Image/CompressedImage message, runs ``Pipeline.process`` and
builds the output messages with the input header. It never raises on bad input: it returns
``Skipped(reason, detail)`` and counts the reason. The node feeds it from a worker thread through a
``FrameSlot`` (the subscription callback only drops the message into the slot), bag replay feeds it
directly.
"""

from __future__ import annotations

import threading
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
from ssp_ros.ros.images import MessageError, MessageFactory, message_to_rgb, rgb_to_bgr, stamp_ns
from ssp_ros.ros.params import check_dynamic, config_with_params

SUPERSEDED = "superseded by a newer frame"  # the slot held it when a newer one arrived
STALE = "stale"  # older than node.max_age_ms when its turn came
DUPLICATE = "duplicate stamp"  # the same stamp as the last frame processed
NOT_NEWER = "stamp not newer"  # older stamp with propagation.reset_on_backwards_time off
REJECTED = "frame rejected"  # a converted frame the pipeline refuses (e.g. smaller than 16 px)
PIPELINE_ERROR = "pipeline error"  # any other SspError from the pipeline

T = TypeVar("T")


class FrameSlot(Generic[T]):
    """A one-item mailbox between a subscription callback and a worker: ``put`` replaces what is waiting
    (counted in ``dropped``), ``take`` waits for the newest item. Thread-safe."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Offer ``item``; True if it displaced one that was never taken."""
        with self._cond:
            displaced = self._item is not None
            self.dropped += displaced
            self._item = item
            self._cond.notify()
            return displaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` s; None on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
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


@dataclass(frozen=True)
class Skipped:
    """A message that produced no output, and why (``reason`` is the counter key)."""

    reason: str
    detail: str
    stamp_ns: int | None = None


@dataclass
class StreamOutput:
    """What one message produced: the pipeline result and the messages to publish (input header)."""

    header: Any
    stamp_ns: int
    frame: np.ndarray  # the input as H×W×3 RGB
    result: FrameResult
    mask: Any  # mono8 class ids
    confidence: Any  # mono8
    overlay: Any | None  # bgr8 colour blend; None when not asked for
    similarity: Any | None  # mono8; None after a reset or when not published


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

    def process(self, msg: Any, now: float | None = None, with_overlay: bool = True) -> StreamOutput | Skipped:
        """Run one Image or CompressedImage message; ``now`` (seconds, the stamps' clock) enables the
        ``max_age_ms`` check. Bad input comes back as a counted ``Skipped``, never as an exception."""
        try:
            stamp = stamp_ns(msg.header)
        except MessageError as err:
            return self.skip(err.reason, str(err))
        seconds = stamp * 1e-9
        if now is not None and is_stale(seconds, now, self.node.max_age_ms):
            return self.skip(STALE, f"{frame_age_ms(seconds, now):.0f} ms old > max_age_ms "
                                    f"{self.node.max_age_ms:g}", stamp)
        if stamp == self._last_stamp_ns:
            return self.skip(DUPLICATE, f"stamp {seconds:.9f} s was already processed", stamp)
        try:
            frame = message_to_rgb(msg, self.fallback)
        except MessageError as err:
            return self.skip(err.reason, str(err), stamp)
        try:
            result = self.pipeline.process(frame, seconds)
        except FrameError as err:
            return self.skip(REJECTED, str(err), stamp)
        except (SspError, cv2.error) as err:
            return self.skip(PIPELINE_ERROR, str(err), stamp)
        if result is None:
            return self.skip(NOT_NEWER, f"stamp {seconds:.9f} s is not newer than the last frame's", stamp)
        self._last_stamp_ns = stamp
        self.outputs += 1
        return self._output(msg.header, stamp, frame, result, with_overlay)

    def _output(self, header: Any, stamp: int, frame: np.ndarray, result: FrameResult,
                with_overlay: bool) -> StreamOutput:
        build = self.messages.image
        blend = build(header, rgb_to_bgr(overlay(frame, result.mask, self.classes)), "bgr8") if with_overlay else None
        similarity = None
        if self.node.publish_similarity and result.similarity is not None:
            similarity = build(header, result.similarity, "mono8")
        return StreamOutput(header=header, stamp_ns=stamp, frame=frame, result=result,
                            mask=build(header, result.mask, "mono8"),
                            confidence=build(header, result.confidence, "mono8"), overlay=blend,
                            similarity=similarity)
