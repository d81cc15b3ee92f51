"""The pure numbers of a run: latency percentiles, the window after the warm-up, RSS drift and trend, the
frame loop, and a process's RSS and CPU time read from ``/proc``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RSS_PERIOD_S = 1.0
RSS_LIMIT_MB = 25.0  # the bound on RSS drift under overload


def latency_stats(ms: Sequence[float]) -> dict[str, Any]:
    """Count, p50 / p90 / p99 (linear interpolation), max and mean of latencies in ms; None values when empty."""
    if len(ms) == 0:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    values = np.asarray(ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": int(values.size), "p50": round(float(p50), 2), "p90": round(float(p90), 2),
            "p99": round(float(p99), 2), "max": round(float(values.max()), 2), "mean": round(float(values.mean()), 2)}


def window_numbers(sent_ns: Sequence[int], masks: Sequence[tuple[int, int]], start_ns: int, end_ns: int,
                   warmup_s: float) -> dict[str, Any]:
    """Frames sent, masks received, throughput and latency of the frames stamped in [start + warm-up, end].

    ``sent_ns``: stamps of the frames sent; ``masks``: (stamp, arrival) in ns per mask received."""
    first = start_ns + round(warmup_s * 1e9)
    seconds = max(end_ns - first, 1) / 1e9
    sent = sum(first <= s <= end_ns for s in sent_ns)
    kept = [(s, a) for s, a in masks if first <= s <= end_ns]
    return {"window_s": round(seconds, 3), "frames_sent": sent, "masks_received": len(kept),
            "delivered_share": round(len(kept) / sent, 4) if sent else None,
            "send_rate_hz": round(sent / seconds, 2), "throughput_fps": round(len(kept) / seconds, 2),
            "latency_ms": latency_stats([(a - s) / 1e6 for s, a in kept])}


def rss_numbers(samples: Sequence[tuple[float, float, float | None]], warmup_s: float,
                limit_mb: float = RSS_LIMIT_MB) -> dict[str, Any]:
    """The RSS series (t in s from the stream start, VmRSS MiB, RssAnon MiB) and, over the samples after the
    warm-up, first / last / min / max and drift = max − min, with the verdict ``flat`` (drift <= ``limit_mb``).

    Drift also counts a transient peak (a frame's buffers sampled mid-flight); a leak shows in the trend as well:
    ``slope_mb_per_min`` (least squares) and ``quarter_delta_mb`` (median of the last quarter of the samples
    minus that of the first)."""
    after = [(t, vm) for t, vm, _ in samples if t >= warmup_s]
    out: dict[str, Any] = {"period_s": RSS_PERIOD_S, "t_s": [round(t, 2) for t, _, _ in samples],
                           "vm_rss": [round(vm, 1) for _, vm, _ in samples],
                           "rss_anon": [None if anon is None else round(anon, 1) for _, _, anon in samples],
                           "limit_mb": limit_mb}
    if not after:
        return {**out, "first": None, "last": None, "min": None, "max": None, "drift": None, "flat": None,
                "slope_mb_per_min": None, "quarter_delta_mb": None}
    t, vm = np.array([a[0] for a in after]), np.array([a[1] for a in after])
    drift = float(vm.max() - vm.min())
    slope = float(np.polyfit(t, vm, 1)[0]) * 60.0 if len(after) >= 2 and np.ptp(t) > 0 else None
    quarter = max(1, len(after) // 4)
    return {**out, "first": round(float(vm[0]), 1), "last": round(float(vm[-1]), 1), "min": round(float(vm.min()), 1),
            "max": round(float(vm.max()), 1), "drift": round(drift, 1), "flat": bool(drift <= limit_mb),
            "slope_mb_per_min": None if slope is None else round(slope, 3),
            "quarter_delta_mb": round(float(np.median(vm[-quarter:]) - np.median(vm[:quarter])), 1)}


def pingpong(i: int, n: int) -> int:
    """Frame index ``i`` of a loop over ``n`` frames played forward, then backward: 0 1 … n-1 n-2 … 1 0 1 …"""
    if n <= 1:
        return 0
    k = i % (2 * n - 2)
    return k if k < n else 2 * n - 2 - k


def read_rss_mb(pid: int) -> tuple[float, float | None] | None:
    """(VmRSS, RssAnon) of process ``pid`` in MiB; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie
        return None
    anon = fields.get("RssAnon")
    return int(fields["VmRSS"].split()[0]) / 1024, None if anon is None else int(anon.split()[0]) / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (``/proc/<pid>/stat``); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
