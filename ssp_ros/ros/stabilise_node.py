"""The node in stabiliser mode (``node.mode: stabilise``): another segmenter's masks made temporally consistent.

It subscribes to the camera (``node.image_topic``) and to the other segmenter's output (``node.mask_topic``:
``sensor_msgs/Image``, mono8/mono16 class ids or a 32FC<K> probability or logit tensor, ``node.mask_input``), pairs
the two by exact header stamp (``pairing.StampPairer``: a bounded wait, ``node.pair_wait_ms`` and
``node.pair_hold``) and publishes the stabilised ``~/mask``, ``~/overlay`` and, for soft input, ``~/confidence``
under the camera image's header (``stabilise_stream``). The callbacks only pair; a complete pair goes to the
newest-frame slot of ``SegmentationNode``, whose worker, diagnostics and life cycle it shares, so a pair not
processed before the next one forms is dropped, never queued.

Everything not output is counted: an image dropped by the pairing goes into the ``input`` status under
``unpaired: <reason>`` (so received images still add up to published + skipped + in flight), and the ``masks``
status of /diagnostics counts the masks received, paired and dropped by reason. ``make_node`` builds the node of
``cfg.node.mode``.

The class list is ``node.classes`` (else ``model.dataset``) or, with ``node.label_info_topic``, the other
segmenter's ``vision_msgs/LabelInfo`` (``label_info``, transient local, so a late start still gets it): pairs are
skipped as ``waiting for the class list`` until one arrives; a LabelInfo with another list rebuilds the stabiliser
(the stream starts over), one that gives no usable list is logged, counted and ignored (the ``classes`` status).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ssp_ros.classes import ClassSet, load_class_set
from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError
from ssp_ros.ros.diagnostics import LabelInfoCount, label_info_status, pairing_status
from ssp_ros.ros.images import MessageError, stamp_ns
from ssp_ros.ros.label_info import LABEL_INFO, class_set_from_label_info
from ssp_ros.ros.node import IMAGE, SegmentationNode
from ssp_ros.ros.pairing import IMAGE as IMAGE_SIDE
from ssp_ros.ros.pairing import MASK as MASK_SIDE
from ssp_ros.ros.pairing import UNPAIRED, Drop, StampPairer
from ssp_ros.ros.stabilise_stream import StabiliseProcessor, outputs_for
from ssp_ros.ros.stream import Skipped
from ssp_ros.ros.transport import (
    LATCHED,
    RELIABLE_LATEST,
    SENSOR_DATA,
    BadSample,
    DiagnosticItem,
    QosProfile,
    Transport,
)
from ssp_ros.stabiliser import make_stabiliser, similarity_model


class StabilisingNode(SegmentationNode):
    """The stabiliser mode of the node: camera + masks in, stabilised masks out (see the module docstring)."""

    def __init__(self, transport: Transport, cfg: SspConfig,
                 fallback: Callable[[Any], np.ndarray] | None = None, active: bool = True) -> None:
        self.pairer = StampPairer(cfg.node.pair_wait_ms / 1000.0, cfg.node.pair_hold)
        self._pairing = threading.Lock()
        self.mask_topic = transport.resolve(cfg.node.mask_topic)
        topic = cfg.node.label_info_topic
        self.label_info_topic = transport.resolve(topic) if topic else None
        self.label_infos = LabelInfoCount()
        self._classes_version = 0  # of the newest class list taken (LabelInfo); pairs carry the one they formed under
        super().__init__(transport, cfg, fallback, active)

    def _make_processor(self, fallback: Callable[[Any], np.ndarray] | None
                        ) -> tuple[ClassSet | None, StabiliseProcessor, str]:
        """The other segmenter's classes (``node.classes``, else ``model.dataset``) and the stabiliser for them; with
        ``node.label_info_topic`` neither yet (the similarity model is loaded now, so a bad folder fails here)."""
        node = self.cfg.node
        self._similarity = similarity_model(self.cfg)
        if self.label_info_topic is not None:
            waiting = f"no class list yet: waiting for vision_msgs/LabelInfo on {self.label_info_topic}"
            return None, StabiliseProcessor(None, self.cfg, None, self.transport, fallback, waiting), "stabiliser"
        classes = load_class_set(node.classes or self.cfg.model.dataset)
        stabiliser = make_stabiliser(self.cfg, classes.num_classes, model=self._similarity)
        return classes, StabiliseProcessor(stabiliser, self.cfg, classes, self.transport, fallback), "stabiliser"

    def _output_names(self) -> list[str]:
        return list(outputs_for(self.cfg.node.mask_input))

    def _inputs(self) -> list[tuple[str, str, QosProfile, Callable[[Any], None]]]:
        node = self.cfg.node
        qos = RELIABLE_LATEST if node.reliable else SENSOR_DATA
        inputs = [*super()._inputs(), (node.mask_topic, IMAGE, qos, self._on_mask)]
        if node.label_info_topic:
            inputs.append((node.label_info_topic, LABEL_INFO, LATCHED, self._on_label_info))
        return inputs

    def _describe(self) -> str:
        node = self.cfg.node
        classes = (f"classes from the LabelInfo on {self.label_info_topic}" if self.label_info_topic is not None
                   else f"{self.classes.num_classes} classes ({self.classes.name})")
        return (f"stabilising {self.mask_topic} ({node.mask_input}) over {self.monitor.topic} "
                f"({'reliable' if node.reliable else 'best effort'}), {classes}; pairing by exact stamp, waiting "
                f"at most {node.pair_wait_ms:g} ms")

    def _on_label_info(self, msg: Any) -> None:
        """A class list from the other segmenter: taken when it differs from the one in use (the stabiliser takes it
        before its next pair and starts over; what waits for a partner is dropped, and a pair formed before is
        skipped, counted: their masks number the old list's classes); counted, logged and ignored when unusable."""
        try:
            if isinstance(msg, BadSample):
                raise MessageError(BadSample.REASON, msg.detail)
            classes = class_set_from_label_info(msg, self.label_info_topic)
            if self.classes is not None and classes.names == self.classes.names:
                self.label_infos.usable()
                return  # the same list again (a re-publication, or a second subscription's copy)
            stabiliser = make_stabiliser(self.cfg, classes.num_classes, model=self._similarity)
        except (MessageError, SspError) as err:  # SspError: e.g. stabiliser.confidence not above 1/K
            self.label_infos.refuse(str(err))
            self._log_throttled("warning", "label info refused", f"ignored a LabelInfo on {self.label_info_topic}: "
                                                                 f"{err}")
            return
        self.label_infos.usable()
        with self._pairing:  # no pair forms between the offer and the version it is for
            replaced = self.classes is not None
            self._classes_version += 1
            self.processor.offer_classes(classes, stabiliser, self._classes_version)
            self.classes = classes
            drops = self.pairer.clear("the class list changed") if replaced else []
        self._count(drops, time.monotonic())
        self.label_infos.taken += 1
        shown = ", ".join(classes.names[:12]) + (", ..." if classes.num_classes > 12 else "")
        self._log("info", f"class list from {self.label_info_topic}: {classes.num_classes} classes ({shown})"
                          + ("; it replaces the previous list, and the stream starts over" if replaced else ""))

    def deactivate(self) -> None:
        """As ``SegmentationNode.deactivate``; what waits for a partner is dropped too (counted)."""
        super().deactivate()
        with self._pairing:
            drops = self.pairer.clear()
        self._count(drops, time.monotonic())

    def _on_image(self, msg: Any) -> None:
        if isinstance(msg, BadSample):  # received and skipped, as in segment mode
            super()._on_image(msg)
            return
        now = time.monotonic()
        self.monitor.received(now)
        try:
            stamp = stamp_ns(msg.header)
        except MessageError as err:
            outcome = Skipped(err.reason, str(err))
            self.monitor.outcome(now, outcome)
            self._log_skip(outcome)
            return
        self._pair(IMAGE_SIDE, stamp, msg, now)

    def _on_mask(self, msg: Any) -> None:
        now = time.monotonic()
        if isinstance(msg, BadSample):
            self._refuse_mask(BadSample.REASON, msg.detail, now)
            return
        try:
            stamp = stamp_ns(msg.header)
        except MessageError as err:
            self._refuse_mask(err.reason, str(err), now)
            return
        self._pair(MASK_SIDE, stamp, msg, now)

    def _refuse_mask(self, reason: str, detail: str, now: float) -> None:
        """A mask that cannot take part in the pairing (undecodable, invalid stamp): counted as received and
        dropped."""
        with self._pairing:
            self.pairer.refuse(MASK_SIDE, reason)
        self._log_throttled("warning", f"mask: {reason}", f"dropped a mask on {self.mask_topic} ({reason}): {detail}")

    def _pair(self, side: str, stamp: int, msg: Any, now: float) -> None:
        with self._pairing:  # the slot too: under a multi-threaded executor a newer pair must not be overwritten
            pair, drops = self.pairer.add(side, stamp, msg, now)
            superseded = pair is not None and self.slot.put(replace(pair, classes_version=self._classes_version))
        self._count(drops, now)
        if superseded:
            self.monitor.superseded(now)

    def _count(self, drops: list[Drop], now: float) -> None:
        """Report the pairing's drops: an image's in the input status (the pairer counts the masks'); each kind
        is logged at most once per ``LOG_THROTTLE_S``."""
        for drop in drops:
            topic = self.monitor.topic if drop.side == IMAGE_SIDE else self.mask_topic
            if drop.side == IMAGE_SIDE:
                self.monitor.outcome(now, Skipped(UNPAIRED + drop.reason, drop.detail, drop.stamp_ns))
            self._log_throttled("warning", f"{drop.side}: {drop.reason}",
                                f"dropped the {drop.side} of stamp {drop.stamp_ns * 1e-9:.9f} s on {topic} "
                                f"({drop.reason}): {drop.detail}")

    def _diagnostic_items(self, now: float) -> list[DiagnosticItem]:
        with self._pairing:  # what waited too long is counted now, even with both topics silent
            drops = self.pairer.expire(now)
            status = pairing_status(self.mask_topic, self.pairer)
        self._count(drops, now)
        items = [*super()._diagnostic_items(now), status]
        if self.label_info_topic is not None:
            items.append(label_info_status(self.label_info_topic, self.classes, self.label_infos))
        return items


def make_node(transport: Transport, cfg: SspConfig, fallback: Callable[[Any], np.ndarray] | None = None,
              active: bool = True) -> SegmentationNode:
    """The node of ``cfg.node.mode``: ``SegmentationNode`` (segment) or ``StabilisingNode`` (stabilise)."""
    node_class = StabilisingNode if cfg.node.mode == "stabilise" else SegmentationNode
    return node_class(transport, cfg, fallback, active)
