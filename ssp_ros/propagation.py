"""The SSP state machine: keep the previous fused state, and decide per frame to fuse or to start over.

The state itself (previous fused logits and stride-4 features) is opaque here: it lives wherever the
inference backend keeps it (on the GPU for TensorRT), and the warp + similarity fusion run in the
backend (``ssp_ros.models.WarpFusionStep`` or its exported graph). This module only decides, counts
and remembers, so the same rules serve every backend and the node's diagnostics.

Per frame, in order:
1. ``admit(stamp)``: None, or why the frame must be dropped before it touches any state (a stamp that
   is not newer than the last one, when ``reset_on_backwards_time`` is off). One bad stamp must not hold up
   the stream: a requested reset admits the next frame, and so does a run of ``NOT_NEWER_LIMIT`` refusals
   (then the last stamp was the outlier, or the clock jumped back), which starts over as time going backwards.
2. the caller registers the frame to the previous one;
3. ``decide(stamp, size, registration)``: fuse with the previous state, or start over and say why
   (first frame, propagation disabled, reset requested, resolution change, time gap, time going
   backwards, failed registration);
4. ``commit(state, stamp, size)``: the fused state becomes the previous state of the next frame.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

from ssp_ros.config import PropagationConfig
from ssp_ros.registration import Registration

State = TypeVar("State")

FIRST_FRAME = "first frame"
DISABLED = "propagation disabled"
REQUESTED = "reset requested"
RESOLUTION_CHANGED = "resolution changed"
TIME_GAP = "time gap"
BACKWARDS_TIME = "time went backwards"
REGISTRATION_FAILED = "registration failed"
NOT_NEWER_LIMIT = 5  # frames refused in a row as not newer; the next one is admitted and starts over


@dataclass(frozen=True)
class Decision:
    """Fuse with the previous state, or start over (``reason`` says why; ``detail`` adds numbers)."""

    fuse: bool
    reason: str = ""
    detail: str = ""


class Propagator(Generic[State]):
    """Holds the previous fused state and applies the reset rules of ``PropagationConfig``."""

    def __init__(self, cfg: PropagationConfig) -> None:
        self.cfg = cfg
        self.state: State | None = None
        self.stamp: float | None = None
        self.size: tuple[int, int] | None = None
        self.resets: Counter[str] = Counter()  # reason → count, for diagnostics
        self.dropped: Counter[str] = Counter()
        self._requested = False
        self._refused_in_a_row = 0

    def request_reset(self) -> None:
        """Start over at the next frame (e.g. the node's ~/reset service)."""
        self._requested = True

    def admit(self, stamp: float) -> str | None:
        """None if the frame may be processed; else why it is dropped (it is counted, state untouched)."""
        if (self.stamp is not None and stamp <= self.stamp and not self.cfg.reset_on_backwards_time
                and not self._requested and self._refused_in_a_row < NOT_NEWER_LIMIT):
            self._refused_in_a_row += 1
            self.dropped[BACKWARDS_TIME] += 1
            return (f"stamp {stamp:.6f} s is not newer than the last frame's {self.stamp:.6f} s (refused "
                    f"{self._refused_in_a_row} of {NOT_NEWER_LIMIT} in a row; then the stream starts over)")
        self._refused_in_a_row = 0
        return None

    def decide(self, stamp: float, size: tuple[int, int], registration: Registration | None) -> Decision:
        """Whether this frame fuses with the previous state; a reset is counted under its reason."""
        decision = self._rules(stamp, size, registration)
        if not decision.fuse:
            self.resets[decision.reason] += 1
            self._requested = False
        return decision

    def _rules(self, stamp: float, size: tuple[int, int], registration: Registration | None) -> Decision:
        if not self.cfg.enabled:
            return Decision(False, DISABLED)
        if self.state is None:
            return Decision(False, FIRST_FRAME)
        if self._requested:
            return Decision(False, REQUESTED)
        if size != self.size:
            return Decision(False, RESOLUTION_CHANGED, f"{self.size[0]}x{self.size[1]} -> {size[0]}x{size[1]}")
        gap = stamp - self.stamp
        if gap <= 0:
            return Decision(False, BACKWARDS_TIME, f"{gap * 1000:.1f} ms")
        if gap > self.cfg.max_time_gap_s:
            return Decision(False, TIME_GAP, f"{gap:.3f} s > {self.cfg.max_time_gap_s} s")
        if registration is None or not registration.ok:
            return Decision(False, REGISTRATION_FAILED, registration.reason if registration else "not run")
        return Decision(True)

    def commit(self, state: State, stamp: float, size: tuple[int, int]) -> None:
        """Remember this frame's fused state for the next frame."""
        self.state, self.stamp, self.size = state, stamp, size
