"""Pipelines timed in turn, frame by frame, on the same frames, so that each sees the machine as the others do.

Timed one after the other, two runs on a shared machine see different loads: on 2 shared cores the SSP / image
model latency ratio of ``ssp bench`` moved by ±0.15 between runs (issue #25). Here every frame goes through each
pipeline before the next frame comes, and the order turns around each frame (image, SSP | SSP, image | image, SSP
...), so no pipeline always finds the frame and the shared weights warm in the cache. Each pipeline keeps its own
state (SSP its previous frame). Since two pipelines time the same frame back to back, the per-frame ratio of their
totals is defined (SSP's over the image model's on frame i), and ``ratio_spread`` says how steady it was.

Memory: the kernel's peak-RSS counter is reset before each pipeline's frame and read after it; a pipeline's peak is
the largest of its frames', the process's peak resident set while that pipeline ran. It includes what stays
resident throughout: the other pipelines' state and a backend they share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

RATIO_PERCENTILES = (10, 50, 90)


class TimedPipeline(Protocol):
    """What ``time_interleaved`` needs of a pipeline (``ssp_ros.pipeline.Pipeline`` is one)."""

    def process(self, frame: np.ndarray, stamp: float) -> Any:
        """Process one frame; the result has ``timings_ms`` (stage → ms, with "total") and ``fused``."""


@dataclass
class PipelineTiming:
    """One pipeline's timed frames (after the warm-up), in frame order."""

    timings_ms: list[dict[str, float]] = field(default_factory=list)  # per frame: stage → ms, "total" included
    fused_frames: int = 0
    peak_rss_mb: float | None = None  # None where the peak cannot be reset (not Linux)


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MiB since the last reset (Linux ``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def turn_order(names: list[str], index: int) -> list[str]:
    """The order the pipelines run frame ``index`` in: as given on even frames, reversed on odd ones."""
    return names if index % 2 == 0 else names[::-1]


def time_interleaved(pipelines: dict[str, TimedPipeline], frames: list[tuple[np.ndarray, float]],
                     warmup: int) -> dict[str, PipelineTiming]:
    """Run every (frame, stamp) through each pipeline in ``turn_order``; time the frames after the first ``warmup``
    (which run the same way, untimed). → name → its timing."""
    names = list(pipelines)
    out = {name: PipelineTiming() for name in names}
    for index, (image, stamp) in enumerate(frames):
        timed = index >= warmup
        for name in turn_order(names, index):
            reset = timed and peak_rss_reset()
            result = pipelines[name].process(image, stamp)
            if not timed:
                continue
            timing = out[name]
            timing.timings_ms.append(dict(result.timings_ms))
            timing.fused_frames += bool(result.fused)
            peak = peak_rss_mb() if reset else None
            if peak is not None:
                timing.peak_rss_mb = max(peak, timing.peak_rss_mb or 0.0)
    return out


def ratio_spread(numerator_ms: list[float], denominator_ms: list[float]) -> dict[str, float]:
    """Percentiles (p10, p50, p90) of the per-frame ratio ``numerator_ms[i] / denominator_ms[i]`` of two pipelines
    timed on the same frames."""
    if len(numerator_ms) != len(denominator_ms) or not numerator_ms:
        raise ValueError(f"ratio_spread needs two equally long, non-empty series, got {len(numerator_ms)} and "
                         f"{len(denominator_ms)} frames")
    per_frame = np.asarray(numerator_ms, dtype=np.float64) / np.asarray(denominator_ms, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(per_frame, q)), 3) for q in RATIO_PERCENTILES}
