"""The stabiliser node's logic without ROS: a paired camera image and mask message → stabilised output messages.

``StabiliseProcessor.process(pair)`` converts both messages of a ``pairing.Pair``, runs the stabiliser
(``ssp_ros.stabiliser``, built by ``make_stabiliser``) and builds the output messages under the camera image's
header: ``mask`` (the stabilised class ids, mono8, or mono16 for mono16 labels), ``overlay`` (bgr8) and, for soft
input only, ``confidence`` (mono8: the other segmenter's probability of the published class × 255; label images
carry no probability to report). Like ``StreamProcessor`` it never raises on bad input: it returns a counted
``Skipped``; a problem of the mask is counted under ``mask: <reason>``. Where the class list comes from the other
segmenter's LabelInfo, the processor starts without one: pairs are skipped under ``WAITING_FOR_CLASSES`` until
``offer_classes`` gives it, and a pair that formed under another list than the one in use is skipped under
``CLASSES_CHANGED`` (its mask numbers the classes of that list).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from ssp_ros.classes import ClassSet, overlay
from ssp_ros.config import SspConfig
from ssp_ros.errors import ConfigError, FrameError, SspError
from ssp_ros.ros.images import MessageError, MessageFactory, message_to_rgb, rgb_to_bgr
from ssp_ros.ros.masks import LABELS, LOGITS, mask_labels, mask_scores
from ssp_ros.ros.pairing import Pair
from ssp_ros.ros.params import check_dynamic, config_with_params
from ssp_ros.ros.stream import (
    NOT_NEWER,
    PIPELINE_ERROR,
    REJECTED,
    Skipped,
    StabilisedResult,
    StreamOutput,
    stamp_problem,
)
from ssp_ros.stabiliser import StabilisedFrame, Stabiliser, check_labels, check_scores

MASK = "mask: "  # prefix of the reasons that are the mask's fault
MASK_SIZE = MASK + "size differs from the image"
MASK_LABELS = MASK + "labels outside the classes"
MASK_SCORES = MASK + "scores refused"
WAITING_FOR_CLASSES = "waiting for the class list"
CLASSES_CHANGED = "formed under another class list"
STABILISE_OUTPUTS = ("mask", "overlay", "confidence")  # confidence for soft input only


def outputs_for(mask_input: str) -> tuple[str, ...]:
    """The output topics (``~/<name>``) of stabilise mode for ``node.mask_input``."""
    return STABILISE_OUTPUTS[:2] if mask_input == LABELS else STABILISE_OUTPUTS


def class_confidence(scores: np.ndarray, logits: bool, labels: np.ndarray) -> np.ndarray:
    """The probability (× 255, uint8) that soft ``scores`` (K×h×w) give each pixel's class in ``labels`` (H×W),
    the scores' cell of a pixel found by nearest neighbour."""
    p = scores.astype(np.float32)
    if logits:
        p = np.exp(p - p.max(axis=0, keepdims=True))
        p /= p.sum(axis=0, keepdims=True)
    h, w = labels.shape
    rows = np.minimum((np.arange(h) * p.shape[1]) // h, p.shape[1] - 1)[:, None]
    cols = np.minimum((np.arange(w) * p.shape[2]) // w, p.shape[2] - 1)[None, :]
    chosen = p[labels.astype(np.intp), rows, cols]
    return np.clip(chosen * 255.0 + 0.5, 0, 255).astype(np.uint8)


class StabiliseProcessor:
    """One camera stream and its masks: pairs in, output messages (or a counted skip) out. One thread at a time;
    ``reset`` and ``offer_classes`` may be called from another. ``stabiliser`` and ``classes`` None: not known yet
    (``offer_classes``); ``waiting`` then says what for."""

    def __init__(self, stabiliser: Stabiliser | None, cfg: SspConfig, classes: ClassSet | None,
                 messages: MessageFactory, fallback: Callable[[Any], np.ndarray] | None = None,
                 waiting: str = "") -> None:
        self.stabiliser, self._cfg, self.classes, self.messages = stabiliser, cfg, classes, messages
        self.waiting = waiting
        self.classes_version = 0  # of the list in use; a pair's ``classes_version`` must match it
        self._offered: tuple[ClassSet, Stabiliser, int] | None = None
        self._offer_lock = threading.Lock()  # an offer made while the worker takes the last one is not lost
        self.node = cfg.node
        self.fallback = fallback
        self.skipped: Counter[str] = Counter()
        self.last_problem: dict[str, str] = {}
        self.outputs = 0
        self._last_stamp_ns: int | None = None

    @property
    def config(self) -> SspConfig:
        return replace(self._cfg, node=self.node)

    def skip(self, reason: str, detail: str, stamp: int | None = None) -> Skipped:
        """Count a skipped pair under ``reason``."""
        self.skipped[reason] += 1
        self.last_problem[reason] = detail
        return Skipped(reason, detail, stamp)

    def reset(self) -> None:
        """Start over at the next frame (the ~/reset service)."""
        if self.stabiliser is not None:
            self.stabiliser.propagator.request_reset()

    def offer_classes(self, classes: ClassSet, stabiliser: Stabiliser, version: int) -> None:
        """A new class list, its stabiliser (for its K) and its version, taken before the next pair: the stream
        starts over there, and pairs of other versions are skipped. From any thread (the newest offer wins)."""
        if stabiliser.num_classes != classes.num_classes:
            raise ValueError(f"a stabiliser of {stabiliser.num_classes} classes for a list of {classes.num_classes}")
        with self._offer_lock:
            self._offered = (classes, stabiliser, version)

    def reconfigure(self, values: dict[str, Any]) -> SspConfig:
        """Apply changed ``node.*`` parameters in flight; ConfigError (nothing applied) for an invalid value, one
        that cannot change while running, or a propagation or registration setting: the stabiliser takes those
        at start only."""
        check_dynamic(list(values))
        fixed = sorted(name for name in values if not name.startswith("node."))
        if fixed:
            raise ConfigError(f"{', '.join(fixed)}: cannot change in flight in stabilise mode (restart the node with "
                              "the new value)")
        cfg = config_with_params(self.config, values)
        self.node = cfg.node
        return cfg

    def process(self, pair: Pair, now: float | None = None,
                outputs: frozenset[str] | None = None) -> StreamOutput | Skipped:
        """Run one pair; ``now`` (seconds, the stamps' clock) enables the ``max_age_ms`` and ``max_future_ms``
        checks; ``outputs`` names the messages to build (default: all of ``outputs_for(node.mask_input)``)."""
        stamp = pair.stamp_ns
        problem = stamp_problem(stamp, now, self.node, self._last_stamp_ns)
        if problem is not None:
            return self.skip(*problem, stamp)
        with self._offer_lock:
            offered, self._offered = self._offered, None
        if offered is not None:
            self.classes, self.stabiliser, self.classes_version = offered
        if self.stabiliser is None:
            return self.skip(WAITING_FOR_CLASSES, self.waiting, stamp)
        if pair.classes_version == 0 and self.classes_version > 0:  # it formed before the first list came
            return self.skip(WAITING_FOR_CLASSES, self.waiting, stamp)
        if pair.classes_version != self.classes_version:
            return self.skip(CLASSES_CHANGED, f"the pair of stamp {stamp * 1e-9:.9f} s formed under class list "
                                              f"{pair.classes_version}, the stabiliser has list "
                                              f"{self.classes_version} now", stamp)
        clock = time.perf_counter()
        try:
            frame = message_to_rgb(pair.image, self.fallback, self.node.max_pixels)
        except MessageError as err:
            return self.skip(err.reason, str(err), stamp)
        mask = self._mask(pair.mask, frame.shape[:2], stamp)
        if isinstance(mask, Skipped):
            return mask
        convert_ms = 1000.0 * (time.perf_counter() - clock)
        clock = time.perf_counter()
        try:
            result = self.stabiliser.process_output(frame, mask, stamp * 1e-9, self.node.mask_input)
        except FrameError as err:
            return self.skip(REJECTED, str(err), stamp)
        except (SspError, cv2.error) as err:
            return self.skip(PIPELINE_ERROR, str(err), stamp)
        if result is None:
            return self.skip(NOT_NEWER, f"stamp {stamp * 1e-9:.9f} s is not newer than the last frame's", stamp)
        timings = {"convert": convert_ms, "total": 1000.0 * (time.perf_counter() - clock)}
        self._last_stamp_ns = stamp
        self.outputs += 1
        clock = time.perf_counter()
        wanted = frozenset(outputs_for(self.node.mask_input)) if outputs is None else outputs
        messages = self._messages(pair.image.header, frame, result, mask, wanted)
        timings["messages"] = 1000.0 * (time.perf_counter() - clock)
        if now is not None:
            timings["age"] = 1000.0 * (now - stamp * 1e-9)
        return StreamOutput(header=pair.image.header, stamp_ns=stamp, frame=frame,
                            result=StabilisedResult(result, timings), similarity=None, timings_ms=timings, **messages)

    def _mask(self, msg: Any, size: tuple[int, int], stamp: int) -> np.ndarray | Skipped:
        """The mask message as class ids of the frame's ``size`` (labels) or K×h×w scores; a counted skip naming
        what is wrong with it."""
        k = self.classes.num_classes
        try:
            if self.node.mask_input == LABELS:
                labels = mask_labels(msg, self.node.max_pixels)
                if labels.shape != size:
                    return self.skip(MASK_SIZE, f"mask is {labels.shape[1]}x{labels.shape[0]}, its image "
                                                f"{size[1]}x{size[0]}", stamp)
                check_labels(labels, k, size)
                return labels
            scores = mask_scores(msg, k, self.node.max_pixels)
        except MessageError as err:
            return self.skip(MASK + err.reason, str(err), stamp)
        except FrameError as err:
            return self.skip(MASK_LABELS, str(err), stamp)
        try:
            check_scores(scores, k, self.node.mask_input == LOGITS)
        except FrameError as err:
            return self.skip(MASK_SCORES, str(err), stamp)
        return scores

    def _messages(self, header: Any, frame: np.ndarray, result: StabilisedFrame, mask: np.ndarray,
                  wanted: frozenset[str]) -> dict[str, Any]:
        """The output messages named in ``wanted`` (None for the others), with the camera image's header."""
        labels = result.labels
        images = {"mask": lambda: (labels, "mono16" if labels.dtype == np.uint16 else "mono8"),
                  "overlay": lambda: (rgb_to_bgr(overlay(frame, labels.astype(np.uint8), self.classes)), "bgr8"),
                  "confidence": lambda: (class_confidence(mask, self.node.mask_input == LOGITS, labels), "mono8")}
        return {name: self.messages.image(header, *images[name]())
                if name in wanted and name in outputs_for(self.node.mask_input) else None
                for name in STABILISE_OUTPUTS}
