"""What the node reports on /diagnostics, as plain data the node turns into DiagnosticStatus messages.

``StreamMonitor`` records timestamped events (message received, output, skip, slot drop) from any thread
and summarises a sliding window on demand, so each diagnostic task can ask independently and get the
same picture: input/output FPS, latency per stage, dropped and skipped frames with reasons, resets with
reasons, registration inliers and the backend. Latency per stage covers the node's own costs too: the wait in
the newest-frame slot, the message conversion, building the output messages and publishing them, and before
them the transit from the camera's stamp to the subscription callback. The ``registration`` stage is what
registration adds to a frame's latency (the wait for its thread after the segmenter); what registration itself
took in its thread is reported beside it (``REGISTRATION_THREAD``), since on a loaded CPU the two differ.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from ssp_ros.classes import ClassSet
from ssp_ros.pipeline import STAGES
from ssp_ros.propagation import DISABLED
from ssp_ros.ros.pairing import IMAGE, MASK, UNPAIRED, StampPairer
from ssp_ros.ros.pairing import SUPERSEDED as PAIR_SUPERSEDED
from ssp_ros.ros.stream import NODE_STAGES, STALE, SUPERSEDED, Skipped, StreamOutput
from ssp_ros.ros.transport import DiagnosticItem

OK, WARN, ERROR, STALE_LEVEL = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
NAMES = ("input", "processing", "propagation")  # one status each, in this order
HISTORY = 2000  # events kept per kind (a window never needs more at camera rates)
REGISTRATION_THREAD = "registration in its thread"  # a timing key beside the stages: ``FrameResult.registration_ms``


@dataclass(frozen=True)
class _Frame:
    time: float
    timings_ms: dict[str, float]
    fused: bool
    reset_reason: str
    inliers: int | None


class StreamMonitor:
    """Event log of one stream; ``items(now)`` summarises the last ``window_s`` seconds. Thread-safe."""

    def __init__(self, backend: str, topic: str, window_s: float = 5.0) -> None:
        self.backend, self.topic, self.window_s = backend, topic, window_s
        self._lock = threading.Lock()
        self._received: deque[float] = deque(maxlen=HISTORY)
        self._frames: deque[_Frame] = deque(maxlen=HISTORY)
        self._skips: deque[tuple[float, str]] = deque(maxlen=HISTORY)
        self.totals: Counter[str] = Counter()  # "received", "output", and every skip reason
        self.resets: Counter[str] = Counter()
        self.last_problem: dict[str, str] = {}

    def received(self, now: float) -> None:
        """A message arrived on the input topic."""
        with self._lock:
            self._received.append(now)
            self.totals["received"] += 1

    def superseded(self, now: float) -> None:
        """The newest-frame slot dropped an unprocessed message for a newer one."""
        self.outcome(now, Skipped(SUPERSEDED, "a newer frame arrived before this one was processed"))

    def outcome(self, now: float, outcome: StreamOutput | Skipped) -> None:
        """What ``StreamProcessor.process`` returned for a message."""
        with self._lock:
            if isinstance(outcome, Skipped):
                self._skips.append((now, outcome.reason))
                self.totals[outcome.reason] += 1
                self.last_problem[outcome.reason] = outcome.detail
                return
            result = outcome.result
            inliers = result.registration.inliers if result.registration is not None else None
            timings = {**result.timings_ms, **outcome.timings_ms}
            if result.registration_ms is not None:  # registration ran in its own thread
                timings[REGISTRATION_THREAD] = result.registration_ms
            self._frames.append(_Frame(now, timings, result.fused, result.reset_reason, inliers))
            self.totals["output"] += 1
            if not result.fused:
                self.resets[result.reset_reason] += 1

    def items(self, now: float) -> list[DiagnosticItem]:
        """The statuses named in NAMES, over the last ``window_s`` seconds before ``now``."""
        with self._lock:
            start = now - self.window_s
            received = [t for t in self._received if t > start]
            frames = [f for f in self._frames if f.time > start]
            skips = Counter(reason for t, reason in self._skips if t > start)
            totals, resets, problems = Counter(self.totals), Counter(self.resets), dict(self.last_problem)
        return [self._input(received, skips, totals, problems), self._processing(frames, len(received), skips),
                self._propagation(frames, resets)]

    def _fps(self, count: int) -> float:
        return count / self.window_s

    def _input(self, received: list[float], skips: Counter, totals: Counter, problems: dict) -> DiagnosticItem:
        bad = {r: n for r, n in skips.items() if r not in (SUPERSEDED, STALE, UNPAIRED + PAIR_SUPERSEDED)}
        skipped = sum(n for reason, n in totals.items() if reason not in ("received", "output"))
        values = [("topic", self.topic), ("input fps", f"{self._fps(len(received)):.1f}"),
                  ("received", str(totals["received"])), ("published", str(totals["output"])),
                  ("skipped", str(skipped)), ("in flight", str(totals["received"] - totals["output"] - skipped)),
                  ("dropped (newer frame waiting)", str(totals[SUPERSEDED])), ("dropped (stale)", str(totals[STALE]))]
        values += [(f"skipped: {reason}", str(n)) for reason, n in sorted(totals.items())
                   if reason not in ("received", "output", SUPERSEDED, STALE)]
        values += [(f"last problem: {reason}", detail) for reason, detail in sorted(problems.items())]
        if not received:
            return DiagnosticItem("input", STALE_LEVEL, f"no messages on {self.topic} for {self.window_s:g} s",
                                  tuple(values))
        if bad:
            worst = max(bad, key=bad.get)
            return DiagnosticItem("input", WARN, f"{sum(bad.values())} bad messages skipped in {self.window_s:g} s "
                                  f"(mostly {worst})", tuple(values))
        return DiagnosticItem("input", OK, f"{self._fps(len(received)):.1f} fps in", tuple(values))

    def _processing(self, frames: list[_Frame], received: int, skips: Counter) -> DiagnosticItem:
        fps_out = self._fps(len(frames))
        values = [("backend", self.backend), ("output fps", f"{fps_out:.1f}")]
        for stage in (*NODE_STAGES[:3], *STAGES, "total", *NODE_STAGES[3:], REGISTRATION_THREAD):
            times = [f.timings_ms[stage] for f in frames if stage in f.timings_ms]
            if times:
                label = f"{stage} ms" if stage == REGISTRATION_THREAD else f"latency {stage} ms"
                values.append((f"{label} (median / max)", f"{np.median(times):.1f} / {max(times):.1f}"))
        dropped = skips[SUPERSEDED] + skips[STALE] + skips[UNPAIRED + PAIR_SUPERSEDED]
        values.append(("dropped in window", str(dropped)))
        if received and not frames:
            return DiagnosticItem("processing", ERROR, f"{received} messages in, no output in {self.window_s:g} s",
                                  tuple(values))
        if received and dropped > received / 2:
            return DiagnosticItem("processing", WARN, f"{fps_out:.1f} fps out: dropping {dropped} of {received} "
                                  "frames (processing slower than the camera)", tuple(values))
        return DiagnosticItem("processing", OK, f"{fps_out:.1f} fps out ({self.backend})", tuple(values))

    def _propagation(self, frames: list[_Frame], resets: Counter) -> DiagnosticItem:
        fused = sum(f.fused for f in frames)
        inliers = [f.inliers for f in frames if f.inliers is not None]
        values = [("fused in window", f"{fused} / {len(frames)}")]
        if inliers:
            values.append(("registration inliers (median / min)", f"{np.median(inliers):.0f} / {min(inliers)}"))
        values += [(f"resets: {reason}", str(n)) for reason, n in sorted(resets.items())]
        window_resets = Counter(f.reset_reason for f in frames if not f.fused)
        if frames and set(window_resets) == {DISABLED}:
            return DiagnosticItem("propagation", OK, "disabled: per-frame image model", tuple(values))
        if len(frames) >= 5 and fused < len(frames) / 2:
            worst = max(window_resets, key=window_resets.get)
            return DiagnosticItem("propagation", WARN, f"started over on {len(frames) - fused} of {len(frames)} "
                                  f"frames (mostly {worst})", tuple(values))
        return DiagnosticItem("propagation", OK, f"fused {fused} of {len(frames)} frames", tuple(values))


def pairing_status(topic: str, pairer: StampPairer) -> DiagnosticItem:
    """The ``masks`` status of stabilise mode: the masks on ``topic`` received, paired with their image, waiting
    and dropped by reason (cumulative), and the images waiting. What happens to a pair after it formed is the
    ``input`` status's (the image's) to count."""
    masks = pairer.dropped[MASK]
    values = [("topic", topic), ("received", str(pairer.received[MASK])), ("paired", str(pairer.paired)),
              ("waiting", str(pairer.waiting(MASK))), ("images waiting", str(pairer.waiting(IMAGE))),
              ("dropped", str(sum(masks.values())))]
    values += [(f"dropped: {reason}", str(n)) for reason, n in sorted(masks.items())]
    if not pairer.received[MASK]:
        level = WARN if pairer.received[IMAGE] else STALE_LEVEL
        return DiagnosticItem("masks", level, f"no masks on {topic} yet", tuple(values))
    if not pairer.paired:
        return DiagnosticItem("masks", WARN, f"no mask has matched an image's stamp on {topic}", tuple(values))
    return DiagnosticItem("masks", OK, f"{pairer.paired} of {pairer.received[MASK]} masks paired", tuple(values))


@dataclass
class LabelInfoCount:
    """The LabelInfo messages of stabilise mode's class-list topic: received, taken (a new list), refused (no
    usable list), the last refusal's reason and whether the newest message was refused."""

    received: int = 0
    taken: int = 0
    refused: int = 0
    last_problem: str = ""
    newest_refused: bool = False

    def usable(self) -> None:
        self.received += 1
        self.newest_refused = False

    def refuse(self, problem: str) -> None:
        self.received += 1
        self.refused += 1
        self.last_problem, self.newest_refused = problem, True


def label_info_status(topic: str, classes: ClassSet | None, counts: LabelInfoCount) -> DiagnosticItem:
    """The ``classes`` status of stabilise mode with ``node.label_info_topic``: the class list in use (WARN while
    none has come, when every pair is skipped, and while the newest LabelInfo was refused), and the LabelInfo
    messages counted."""
    values = [("topic", topic), ("classes", "none yet" if classes is None else str(classes.num_classes)),
              ("received", str(counts.received)), ("lists taken", str(counts.taken)),
              ("refused", str(counts.refused))]
    if counts.last_problem:
        values.append(("last refusal", counts.last_problem))
    if classes is None:
        message = (f"no usable LabelInfo on {topic} yet ({counts.refused} refused): pairs are skipped"
                   if counts.refused else f"waiting for a LabelInfo on {topic} (its publisher must be transient "
                                          "local, as vision_msgs asks): pairs are skipped")
        return DiagnosticItem("classes", WARN, message, tuple(values))
    if counts.newest_refused:
        return DiagnosticItem("classes", WARN, f"{classes.num_classes} classes from {topic}; the newest LabelInfo "
                                               "was refused", tuple(values))
    return DiagnosticItem("classes", OK, f"{classes.num_classes} classes from {topic}", tuple(values))
