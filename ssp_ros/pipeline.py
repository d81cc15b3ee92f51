"""Frame in, segmentation out: letterbox → segmenter → registration → propagation → outputs.

``Pipeline.process(frame, stamp)`` runs one camera frame through the backend and returns the class mask,
confidence and similarity at the camera's size, whether it was fused with the previous frame (or why it
started over), and the time spent in each stage. The ROS node, bag replay and ``ssp demo`` all use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ssp_ros.backends.base import Backend
from ssp_ros.config import PropagationConfig, RegistrationConfig, SspConfig
from ssp_ros.frames import check_frame
from ssp_ros.geometry import cells_to_previous
from ssp_ros.letterbox import Letterbox
from ssp_ros.propagation import Propagator
from ssp_ros.registration import FrameRegistrar, Registration

STAGES = ("preprocess", "segmenter", "registration", "fusion", "postprocess")
MIN_FRAME_SIDE = 16  # px: smaller frames are refused (nothing to segment at stride 4)


@dataclass
class FrameResult:
    """What one frame produced, at the camera frame's size."""

    stamp: float
    mask: np.ndarray  # H×W uint8 class ids
    confidence: np.ndarray  # H×W uint8, max softmax probability × 255
    similarity: np.ndarray | None  # H×W uint8, s × 255 (weight of the previous frame); None after a reset
    fused: bool  # True: blended with the previous frame; False: started over
    reset_reason: str  # why it started over ("" when fused)
    registration: Registration | None  # None when propagation is off
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class _State:
    logits: Any
    feats: Any


class Pipeline:
    """One camera stream through one backend. Not thread-safe: one pipeline per stream."""

    def __init__(self, cfg: SspConfig, backend: Backend) -> None:
        self.cfg, self.backend = cfg, backend
        self.propagator: Propagator[_State] = Propagator(cfg.propagation)
        self.registrar = FrameRegistrar(cfg.registration)
        self._letterbox: Letterbox | None = None

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts over)."""
        self.propagator.request_reset()

    def reconfigure(self, propagation: PropagationConfig | None = None,
                    registration: RegistrationConfig | None = None) -> None:
        """The one way to change a running pipeline: new propagation and/or registration settings, used from
        the next frame on (each stage reads its settings once per frame). May be called from another thread
        than ``process`` (the ROS parameter callback): each setting is swapped as a whole object."""
        if propagation is not None:
            self.propagator.cfg = propagation
            self.cfg = replace(self.cfg, propagation=propagation)
        if registration is not None:
            self.registrar.reconfigure(registration)
            self.cfg = replace(self.cfg, registration=registration)

    def process(self, frame: np.ndarray, stamp: float) -> FrameResult | None:
        """Segment one RGB frame taken at ``stamp`` (seconds). None if the frame is dropped (an old stamp
        with ``reset_on_backwards_time`` off); FrameError if it is not an image we can use."""
        check_frame(frame, min_side=MIN_FRAME_SIDE)
        if self.propagator.admit(stamp) is not None:
            return None
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + 1000.0 * (now - clock)
            clock = now

        size = frame.shape[:2]
        if self._letterbox is None or self._letterbox.frame_size != size:
            self._letterbox = Letterbox(size, self.backend.input_size)
        image = self._letterbox.apply(frame)
        lap("preprocess")
        logits, feats = self.backend.segment(image)
        lap("segmenter")
        registration = self.registrar.register(frame) if self.cfg.propagation.enabled else None
        lap("registration")
        decision = self.propagator.decide(stamp, size, registration)
        similarity = None
        if decision.fuse:
            to_previous = cells_to_previous(self._letterbox.homography_to_input(registration.homography), 4)
            prev = self.propagator.state
            logits, s = self.backend.fuse(logits, feats, prev.logits, prev.feats, to_previous)
            lap("fusion")
            similarity = self._letterbox.restore(self.backend.similarity(s), nearest=False)
        self.propagator.commit(_State(logits, feats), stamp, size)
        ids, confidence = self.backend.labels(logits)
        mask = self._letterbox.restore(ids, nearest=True)
        confidence = self._letterbox.restore(confidence, nearest=False)
        lap("postprocess")
        timings["total"] = sum(timings.values())
        return FrameResult(stamp=stamp, mask=mask, confidence=confidence, similarity=similarity,
                           fused=decision.fuse, reset_reason=decision.reason, registration=registration,
                           timings_ms=timings)
