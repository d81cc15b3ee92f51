"""Frame in, segmentation out: letterbox → segmenter → registration → propagation → outputs.

``Pipeline.process(frame, stamp)`` runs one camera frame through the backend and returns the class mask,
confidence and (when asked for) similarity at the camera's size, whether it was fused with the previous
frame (or why it started over), and the time spent in each stage. The ROS node, bag replay and ``ssp demo`` all use it.

Registration needs only the frame, so it runs in a second thread while the segmenter runs (OpenCV, ONNX
Runtime, torch and TensorRT all release the GIL); the frame becomes the registrar's reference only once the
segmenter succeeded, so the output is the same as in sequence, frame for frame. The ``registration`` stage
time is what registration adds to the frame's latency: the wait for it after the segmenter; what registration
itself took, in its own thread, is ``FrameResult.registration_ms``. Backends that
queue GPU work are synchronised before the segmenter's and the fusion's clocks stop, so each stage's time is
its own.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ssp_ros.backends.base import Backend
from ssp_ros.config import PropagationConfig, RegistrationConfig, SspConfig
from ssp_ros.frames import check_frame
from ssp_ros.geometry import cells_to_previous
from ssp_ros.letterbox import Letterbox
from ssp_ros.matching import Detector
from ssp_ros.propagation import Propagator
from ssp_ros.registration import DETECTION_KEYS, FrameRegistrar, PendingRegistration, Registration

STAGES = ("preprocess", "segmenter", "registration", "fusion", "postprocess")
MIN_FRAME_SIDE = 16  # px: smaller frames are refused (nothing to segment at stride 4)


@dataclass
class FrameResult:
    """What one frame produced, at the camera frame's size."""

    stamp: float
    mask: np.ndarray  # H×W uint8 class ids
    confidence: np.ndarray  # H×W uint8, max softmax probability × 255
    similarity: np.ndarray | None  # H×W uint8, s × 255 (weight of the previous frame); None after a reset
    #                                 or when not asked for
    fused: bool  # True: blended with the previous frame; False: started over
    reset_reason: str  # why it started over ("" when fused)
    registration: Registration | None  # None when propagation is off
    timings_ms: dict[str, float] = field(default_factory=dict)
    registration_ms: float | None = None  # registration's own time in its thread (wall clock); None when not run
    image_mask: np.ndarray | None = None  # the image model's own mask (before fusion), with ``keep_image_mask``


@dataclass
class _State:
    logits: Any
    feats: Any


class Pipeline:
    """One camera stream through one backend. ``process`` runs in one thread at a time (one pipeline per
    stream); ``reset`` and ``reconfigure`` may be called from any other thread.

    ``keep_image_mask``: also give each frame's image-model mask (the segmenter's logits before fusion), so one
    pass scores both the image model and SSP on the same frames (``ssp replay``); it costs one more argmax and
    resize on fused frames."""

    def __init__(self, cfg: SspConfig, backend: Backend, keep_image_mask: bool = False) -> None:
        self.cfg, self.backend, self.keep_image_mask = cfg, backend, keep_image_mask
        self.propagator: Propagator[_State] = Propagator(cfg.propagation)
        self.registrar = FrameRegistrar(cfg.registration)
        self._letterbox: Letterbox | None = None
        self._lock = threading.Lock()
        self._pending: SspConfig | None = None  # settings that reconfigure staged for the next frame
        self._registering = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssp_registration")

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts over)."""
        self.propagator.request_reset()

    def reconfigure(self, propagation: PropagationConfig | None = None,
                    registration: RegistrationConfig | None = None) -> None:
        """The one way to change a running pipeline: new propagation and/or registration settings.

        They are checked here (a detector this OpenCV build lacks raises SspError before anything changes),
        ``cfg`` shows them at once, and the stages switch to them together at the start of the next frame,
        in the thread that runs ``process``. So the ROS parameter callback may call this from its own
        thread, and no frame runs on half of a change."""
        with self._lock:
            cfg = self.cfg
            if registration is not None:
                if any(getattr(cfg.registration, key) != getattr(registration, key) for key in DETECTION_KEYS):
                    Detector(registration)  # raises here, in the caller, if the detector cannot be made
                cfg = replace(cfg, registration=registration)
            if propagation is not None:
                cfg = replace(cfg, propagation=propagation)
            self.cfg = self._pending = cfg

    def _apply_pending(self) -> None:
        """Hand the settings staged by ``reconfigure`` to the stages (called by ``process``, between frames)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.propagator.cfg = pending.propagation
            self.registrar.reconfigure(pending.registration)

    def process(self, frame: np.ndarray, stamp: float, with_similarity: bool = False) -> FrameResult | None:
        """Segment one RGB frame taken at ``stamp`` (seconds). None if the frame is dropped (an old stamp
        with ``reset_on_backwards_time`` off); FrameError if it is not an image we can use.

        ``with_similarity``: also bring the similarity map to the camera's size (a resize per frame that
        only ``~/similarity`` needs)."""
        check_frame(frame, min_side=MIN_FRAME_SIDE)
        self._apply_pending()
        if self.propagator.admit(stamp) is not None:
            return None
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + 1000.0 * (now - clock)
            clock = now

        prepared: Future[PendingRegistration] | None = None
        if self.cfg.propagation.enabled:  # the registrar is this thread's again once ``result()`` returned
            prepared = self._registering.submit(self._prepare, frame)
        try:
            size = frame.shape[:2]
            if self._letterbox is None or self._letterbox.frame_size != size:
                self._letterbox = Letterbox(size, self.backend.input_size)
            image = self._letterbox.apply(frame)
            lap("preprocess")
            logits, feats = self.backend.segment(image)
            self.backend.synchronize()  # the GPU's time is the segmenter's, not the next stage that waits
            lap("segmenter")
        except BaseException:
            if prepared is not None:
                prepared.cancel()
                wait([prepared])  # nothing of this frame is committed, and nothing runs on past it
            raise
        registration, registration_ms = None, None
        if prepared is not None:
            pending, registration_ms = prepared.result()
            registration = self.registrar.commit(pending)
        lap("registration")
        decision = self.propagator.decide(stamp, size, registration)
        similarity, image_mask = None, None
        if decision.fuse:
            if self.keep_image_mask:  # before fusion, which may reuse the logits' buffers; not timed as SSP's
                image_mask = self._letterbox.restore(self.backend.labels(logits)[0], nearest=True)
                clock = time.perf_counter()
            to_previous = cells_to_previous(self._letterbox.homography_to_input(registration.homography), 4)
            prev = self.propagator.state
            logits, s = self.backend.fuse(logits, feats, prev.logits, prev.feats, to_previous)
            self.backend.synchronize()
            lap("fusion")
            if with_similarity:
                similarity = self._letterbox.restore(self.backend.similarity(s), nearest=False)
        self.propagator.commit(_State(logits, feats), stamp, size)
        ids, confidence = self.backend.labels(logits)
        mask = self._letterbox.restore(ids, nearest=True)
        confidence = self._letterbox.restore(confidence, nearest=False)
        lap("postprocess")
        timings["total"] = sum(timings.values())
        if self.keep_image_mask and image_mask is None:  # not fused: the output is the image model's own
            image_mask = mask
        return FrameResult(stamp=stamp, mask=mask, confidence=confidence, similarity=similarity,
                           fused=decision.fuse, reset_reason=decision.reason, registration=registration,
                           timings_ms=timings, registration_ms=registration_ms, image_mask=image_mask)

    def _prepare(self, frame: np.ndarray) -> tuple[PendingRegistration, float]:
        """Register ``frame`` to the previous one (in the registration thread), with the time it took (ms)."""
        start = time.perf_counter()
        pending = self.registrar.prepare(frame)
        return pending, 1000.0 * (time.perf_counter() - start)
