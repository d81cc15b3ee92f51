"""What the bench runs: the transports, frame sizes and topics, one run's plan and the matrix of plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ssp_ros.errors import SspError
from ssp_ros.ros.node import NODE_NAME
from ssp_ros.ros.transport import resolve_name

TRANSPORTS = ("rclpy", "dds")  # rclpy: ssp_node on Fast DDS; dds: ssp node --transport dds on Cyclone DDS
DEFAULT_SIZES = ((368, 640), (736, 1280))
CAMERA_TOPIC = "/camera/image_raw"
MASK_TOPIC = resolve_name("~/mask", NODE_NAME)  # /ssp/mask


@dataclass(frozen=True)
class RunPlan:
    """One node process: which middleware, frame size, camera rate and length."""

    kind: str  # "latency" (the camera at its rate) or "overload" (faster than the node: RSS must stay flat)
    transport: str  # one of TRANSPORTS
    frame_size: tuple[int, int]  # (H, W) of the camera frames
    rate_hz: float  # camera frames per second
    duration_s: float  # streaming time, warm-up included


def plan_runs(transports: Sequence[str], sizes: Sequence[tuple[int, int]], rate_hz: float, duration_s: float,
              warmup_s: float, overload_rate_hz: float = 60.0, overload_duration_s: float = 0.0,
              overload_size: tuple[int, int] | None = None) -> list[RunPlan]:
    """The matrix: a latency run per size and transport, then (``overload_duration_s`` > 0) an overload run per
    transport at ``overload_size`` (default: the largest size, whose frames would grow a queue fastest)."""
    if not transports or not sizes:
        raise SspError("bench-node: give at least one transport and one frame size")
    unknown = sorted(set(transports) - set(TRANSPORTS))
    if unknown:
        raise SspError(f"bench-node: unknown transport(s) {unknown} (known: {', '.join(TRANSPORTS)})")
    for name, value in (("rate", rate_hz), ("duration", duration_s), ("overload rate", overload_rate_hz)):
        if not value > 0:
            raise SspError(f"bench-node: {name} must be > 0, got {value}")
    if not 0 <= warmup_s < duration_s or (overload_duration_s > 0 and warmup_s >= overload_duration_s):
        raise SspError(f"bench-node: warm-up ({warmup_s} s) must be >= 0 and shorter than every run "
                       f"(duration {duration_s} s, overload duration {overload_duration_s} s)")
    plans = [RunPlan("latency", t, tuple(s), float(rate_hz), float(duration_s)) for s in sizes for t in transports]
    if overload_duration_s > 0:
        size = tuple(overload_size or max(sizes, key=lambda s: s[0] * s[1]))
        plans += [RunPlan("overload", t, size, float(overload_rate_hz), float(overload_duration_s))  # type: ignore[arg-type]
                  for t in transports]
    return plans
