"""How registration went over one clip: inlier ratios, how far the frame corners moved, and resets by reason.

On real video there is no ground truth to score registration against, so ``ssp demo`` reports what the
registrar itself saw frame after frame: a steady inlier ratio and plausible corner motion mean SSP fused on
good homographies; failures and resets say where it started over and why. A frame with no previous frame (the
first, or the first after the registrar forgot its reference) is no frame pair: it is not counted as a failure, and
the stream's start is not counted as a reset either (``resets_after_start``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ssp_ros.geometry import corner_shift
from ssp_ros.propagation import FIRST_FRAME as STREAM_START
from ssp_ros.registration import FIRST_FRAME, Registration


def _stats(values: list[float], digits: int = 3) -> dict[str, float] | None:
    if not values:
        return None
    v = np.asarray(values, dtype=np.float64)
    return {"median": round(float(np.median(v)), digits), "p10": round(float(np.percentile(v, 10)), digits),
            "p90": round(float(np.percentile(v, 90)), digits), "min": round(float(v.min()), digits),
            "max": round(float(v.max()), digits)}


def resets_after_start(resets: Counter[str]) -> dict[str, int]:
    """The propagator's resets by reason (most first), without the stream's start: a first frame has nothing to fuse
    with, which is no reset."""
    return {reason: n for reason, n in resets.most_common() if reason != STREAM_START}


class RegistrationLog:
    """Collects each frame's registration (None with propagation off): distributions over the frame pairs that
    registered, failures counted by the registrar's reason."""

    def __init__(self) -> None:
        self.ratios: list[float] = []
        self.inliers: list[float] = []
        self.corner_motion_px: list[float] = []
        self.failures: Counter[str] = Counter()

    def add(self, registration: Registration | None, frame_size: tuple[int, int]) -> None:
        """Record one frame's registration to the previous frame (``frame_size``: its H, W)."""
        if registration is None or registration.reason == FIRST_FRAME:
            return  # nothing to register to: not a pair
        if not registration.ok:  # the registrar says why, e.g. too few inliers
            self.failures[registration.reason] += 1
            return
        self.ratios.append(registration.inlier_ratio)
        self.inliers.append(float(registration.inliers))
        self.corner_motion_px.append(corner_shift(registration.homography, np.eye(3), frame_size))

    def summary(self, resets: Counter[str]) -> dict:
        """Counts over the frame pairs (``pairs`` = ``registered`` + ``failed``) and distributions over the registered
        ones (corner motion: how far the homography moves the farthest frame corner, px), with the pipeline's
        ``resets`` (reason → count, the stream's start left out) beside them."""
        failed = sum(self.failures.values())
        return {"pairs": len(self.ratios) + failed, "registered": len(self.ratios), "failed": failed,
                "failures": dict(self.failures.most_common()), "inlier_ratio": _stats(self.ratios),
                "inliers": _stats(self.inliers, 1), "corner_motion_px": _stats(self.corner_motion_px, 2),
                "resets": resets_after_start(resets)}
