"""One run, steps 1-5 of the package docstring: wait for the node, handshake, stream, drain, record."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssp_ros.config import load_config
from ssp_ros.errors import SspError
from ssp_ros.ros.node import NODE_NAME
from ssp_ros.ros.transport import RELIABLE_LATEST, SENSOR_DATA
from ssp_ros.tools.node_bench.camera import CAMERAS, Camera, MaskLog
from ssp_ros.tools.node_bench.node_process import RssSampler, log_tail, start_node, stop_node
from ssp_ros.tools.node_bench.plan import CAMERA_TOPIC, MASK_TOPIC, RunPlan
from ssp_ros.tools.node_bench.run_numbers import cpu_seconds, pingpong, read_rss_mb, rss_numbers, window_numbers

START_TIMEOUT_S = 120.0  # process start to camera matched: imports, model load, discovery
HANDSHAKE_TIMEOUT_S = 30.0
HANDSHAKE_PERIOD_S = 0.5
DRAIN_QUIET_S = 2.0  # after the stream: done when no mask came for this long ...
DRAIN_MAX_S = 15.0  # ... or after this long


def wait_until_subscribed(camera: Camera, node: subprocess.Popen, log: Path) -> float:
    """Seconds until the node subscribes to the camera; SspError when it exits or takes too long."""
    start = time.monotonic()
    while time.monotonic() - start < START_TIMEOUT_S:
        if node.poll() is not None:
            raise SspError(f"the node exited with {node.returncode} before subscribing:\n{log_tail(log)}")
        if camera.subscribers():
            return time.monotonic() - start
        time.sleep(0.05)
    raise SspError(f"the node did not subscribe to {CAMERA_TOPIC} within {START_TIMEOUT_S:g} s:\n{log_tail(log)}")


def handshake(camera: Camera, masks: MaskLog, node: subprocess.Popen, log: Path) -> int:
    """Send frame 0 every ``HANDSHAKE_PERIOD_S`` until its mask comes back; the number of frames sent."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < HANDSHAKE_TIMEOUT_S:
        if node.poll() is not None:
            raise SspError(f"the node exited with {node.returncode} during the handshake:\n{log_tail(log)}")
        stamp = time.time_ns()
        camera.publish(0, stamp)
        sent += 1
        if masks.wait(lambda s=stamp: s in masks.stamps, HANDSHAKE_PERIOD_S):
            return sent
    raise SspError(f"no mask came back on {MASK_TOPIC} within {HANDSHAKE_TIMEOUT_S:g} s ({sent} frames sent; on "
                   "best-effort QoS the middleware may lose large frames: try --reliable):\n" + log_tail(log))


def stream(camera: Camera, frames: int, rate_hz: float, duration_s: float, node: subprocess.Popen,
           log: Path) -> list[int]:
    """Publish at ``rate_hz`` for ``duration_s`` (never in bursts: a late frame shifts the ones after it); the
    stamps sent."""
    period = 1.0 / rate_hz
    start = due = time.monotonic()
    sent: list[int] = []
    while True:
        now = time.monotonic()
        if now - start >= duration_s:
            return sent
        if now < due:
            time.sleep(min(due - now, start + duration_s - now))
            continue
        if node.poll() is not None:
            raise SspError(f"the node exited with {node.returncode} while streaming:\n{log_tail(log)}")
        stamp = time.time_ns()
        camera.publish(pingpong(len(sent), frames), stamp)
        sent.append(stamp)
        due = max(due + period, now)


def drain(masks: MaskLog, last_ns: int | None) -> None:
    """Wait for masks still in flight: until the last frame's mask came back or none came for ``DRAIN_QUIET_S``
    (the node dropped the last frames), at most ``DRAIN_MAX_S``."""
    end = time.monotonic() + DRAIN_MAX_S
    while time.monotonic() < end:
        with masks.changed:
            if last_ns in masks.stamps:
                return
            count = len(masks.masks)
        if not masks.wait(lambda c=count: last_ns in masks.stamps or len(masks.masks) > c,
                          min(DRAIN_QUIET_S, end - time.monotonic())):
            return


def run_once(plan: RunPlan, config: Path, frames: Sequence[np.ndarray], domain: int, warmup_s: float,
             rss_limit_mb: float, logs: Path) -> dict[str, Any]:
    """Steps 1-5 of the package docstring for one plan; the run's record (without its settings). The camera
    publishes with the QoS the node subscribes with (``node.reliable`` of ``config``)."""
    log = logs / f"node_{plan.kind}_{plan.transport}_{plan.frame_size[0]}x{plan.frame_size[1]}.log"
    masks = MaskLog()
    qos = RELIABLE_LATEST if load_config(config).node.reliable else SENSOR_DATA
    camera = CAMERAS[plan.transport](domain, frames, masks, qos)
    try:
        node = start_node(plan.transport, config, domain, log)
    except OSError as err:
        camera.close()
        raise SspError(f"cannot start the node: {err}") from None
    try:
        startup_s = wait_until_subscribed(camera, node, log)
        handshake_frames = handshake(camera, masks, node, log)
        peers = camera.subscribers(), camera.mask_publishers()
        if peers != (1, 1):
            raise SspError(f"domain {domain} is not private: {peers[0]} subscriber(s) on {CAMERA_TOPIC} and "
                           f"{peers[1]} publisher(s) on {MASK_TOPIC} (expected 1 and 1): pass another --domain-id")
        rss_ready = read_rss_mb(node.pid)
        load_before = os.getloadavg()
        cpu_node, cpu_self, t0 = cpu_seconds(node.pid), time.process_time(), time.monotonic()
        start_ns = time.time_ns()
        sampler = RssSampler(node.pid, t0)
        try:
            sent = stream(camera, len(frames), plan.rate_hz, plan.duration_s, node, log)
        finally:
            samples = sampler.stop()
        end_ns, elapsed = time.time_ns(), time.monotonic() - t0
        cpu_node_end, cpu_self_end = cpu_seconds(node.pid), time.process_time()
        streaming = masks.diagnostics  # the node's window (stage latency, fps) while the camera still ran
        drain(masks, sent[-1] if sent else None)
        record = {
            "frames_sent_total": len(sent),
            "masks_received_total": sum(s >= start_ns for s, _ in masks.snapshot()),
            **window_numbers(sent, masks.snapshot(), start_ns, end_ns, warmup_s),
            "rss_mb": {"at_ready": None if rss_ready is None else round(rss_ready[0], 1),
                       **rss_numbers(samples, warmup_s, rss_limit_mb)},
            "cpu_percent": {"node": None if cpu_node is None or cpu_node_end is None
                            else round(100 * (cpu_node_end - cpu_node) / elapsed, 1),
                            "camera_process": round(100 * (cpu_self_end - cpu_self) / elapsed, 1)},
            "loadavg_before": [round(v, 2) for v in load_before],
            "node": {"pid": node.pid, "startup_s": round(startup_s, 2), "handshake_frames": handshake_frames,
                     "diagnostics_streaming": streaming, "diagnostics_final": masks.diagnostics}}
    finally:
        exit_code = stop_node(node)
        camera.close()
    record["node"]["exit_code"] = exit_code
    final = (record["node"]["diagnostics_final"] or {}).get(f"{NODE_NAME}: input", {})
    if "received" in final:  # sent after the match but never seen by the node: lost in the middleware
        record["not_received_by_node"] = handshake_frames + len(sent) - int(final["received"])
    return record
