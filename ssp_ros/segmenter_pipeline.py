"""The user's ONNX segmenter and the stabiliser over it, in the place of the ``Pipeline`` that ``StreamProcessor``
runs, so that ``ssp replay --segmenter`` and the node with ``node.segmenter`` keep their conversion, skip counting,
stream policy and output messages: each frame goes through the segmenter (``backends/external.py``), then the
stabiliser.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssp_ros.classes import ClassSet
from ssp_ros.config import PropagationConfig, RegistrationConfig, SspConfig
from ssp_ros.errors import ConfigError
from ssp_ros.pipeline import FrameResult
from ssp_ros.propagation import Propagator
from ssp_ros.stabiliser import make_stabiliser

STAGES = ("segmenter", "stabiliser")  # the user's segmenter, then registration and fusion over its output
OUTPUTS = frozenset({"mask", "overlay"})  # the messages it can give: no confidence, no similarity


@dataclass
class SegmenterResult(FrameResult):
    """One frame's ``FrameResult``: ``mask`` the stabilised labels, ``input_mask`` the segmenter's own; the
    stabiliser gives no ``confidence`` or ``similarity`` (both None)."""

    input_mask: np.ndarray | None = None


class SegmenterPipeline:
    """``process(frame, stamp)`` as ``Pipeline`` has it, for ``StreamProcessor`` (replay, the node): the segmenter of
    the YAML ``spec`` and the stabiliser over it. One stream, one thread."""

    def __init__(self, cfg: SspConfig, spec: Path) -> None:
        from ssp_ros.backends.external import OnnxSegmenter

        self.cfg = cfg
        self.segmenter = OnnxSegmenter(spec, cfg.runtime.device)
        self.stabiliser = make_stabiliser(cfg, self.segmenter.num_classes)

    def reset(self) -> None:
        """Start over at the next frame (the node's ~/reset, a deactivation)."""
        self.stabiliser.propagator.request_reset()

    def reconfigure(self, propagation: PropagationConfig | None = None,
                    registration: RegistrationConfig | None = None) -> None:
        """What ``StreamProcessor`` calls on every parameter change: the stabiliser reads propagation and
        registration at start only, so a change of either is refused (ConfigError, nothing applied); the same
        values pass, so that ``node.*`` parameters still change in flight."""
        changed = [name for name, value in (("propagation", propagation), ("registration", registration))
                   if value is not None and value != getattr(self.cfg, name)]
        if changed:
            raise ConfigError(f"{' and '.join(changed)} settings cannot change in flight with node.segmenter "
                              "(restart the node with the new values)")

    @property
    def classes(self) -> ClassSet:
        return self.segmenter.classes

    @property
    def propagator(self) -> Propagator:
        """The stabiliser's propagator (its ``resets`` by reason go into the report)."""
        return self.stabiliser.propagator

    def process(self, frame: np.ndarray, stamp: float, with_similarity: bool = False) -> SegmenterResult | None:
        """The segmenter, then the stabiliser, on one RGB frame; None for a frame the stabiliser drops (an old
        stamp). ``with_similarity`` is there for ``StreamProcessor``; there is no similarity to give."""
        start = time.perf_counter()
        output = self.segmenter(frame)
        segmented = time.perf_counter()
        result = self.stabiliser.process_output(frame, output, stamp, self.segmenter.spec.output)
        if result is None:
            return None
        timings = {"segmenter": 1000.0 * (segmented - start), "stabiliser": 1000.0 * (time.perf_counter() - segmented)}
        return SegmenterResult(stamp=stamp, mask=result.labels, confidence=None, similarity=None, fused=result.fused,
                                reset_reason=result.reset_reason, registration=result.registration,
                                timings_ms={**timings, "total": sum(timings.values())},
                                input_mask=result.input_labels)
