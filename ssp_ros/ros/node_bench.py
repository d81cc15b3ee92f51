"""``ssp bench-node``: the running node measured from outside, as a camera and a viewer on the drone see it.

Each run starts the node as its own process (``ssp_node`` on rclpy / Fast DDS, or ``ssp node --transport dds`` on
Cyclone DDS) on loopback in a private domain, with a config the bench writes (backend, export folder, model input =
the frame size rounded up to a multiple of 32). A camera in this process, on the same middleware, publishes
synthetic drone frames at a fixed rate, each stamped with the wall clock when it is sent; a subscription to the
node's ``~/mask`` records arrival time − header stamp per mask: the camera-stamp → mask latency (both transport
legs, the newest-frame slot, conversion, pipeline, publishing). A sampler reads the node process's VmRSS
(``/proc/<pid>/status``) every second. ``ssp bench`` (``eval/bench.py``) measures the pipeline alone.

One run, every wait bounded:

1. ``write_node_config``, start the node; wait until it subscribes to the camera (``START_TIMEOUT_S``);
2. handshake: repeat one frame until its mask comes back (a best-effort reader may miss the first samples);
   refuse a domain where another node or camera is on the same topics;
3. ``stream`` for ``duration_s`` at ``rate_hz``, sampling RSS; the first ``warmup_s`` are left out of every number;
4. drain: wait until the last frame's mask came back, or none came for ``DRAIN_QUIET_S`` (at most ``DRAIN_MAX_S``);
5. keep the node's /diagnostics: the last one while streaming (its window: fps, per-stage latency) and the last
   after the drain (its totals: received, dropped, skipped); stop it with SIGINT.

An overload run is a run with the camera faster than the node: frames must be dropped, not queued, so the RSS
drift after the warm-up (max − min) stays within ``rss_limit_mb``. Speed targets live here, in JSON, never in
timed tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import ssp_ros
from ssp_ros.backends.export_info import load_export_info
from ssp_ros.config import SspConfig, load_config
from ssp_ros.errors import SspError
from ssp_ros.eval.bench import input_size_for
from ssp_ros.resources import resolve_data_path
from ssp_ros.ros.dds_transport import LOOPBACK
from ssp_ros.ros.node import DIAGNOSTICS_TOPIC, NODE_NAME
from ssp_ros.ros.transport import DEFAULT, RELIABLE_LATEST, SENSOR_DATA, QosProfile, resolve_name
from ssp_ros.schema import to_dict
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import SimConfig, SyntheticConfig

TRANSPORTS = ("rclpy", "dds")  # rclpy: ssp_node on Fast DDS; dds: ssp node --transport dds on Cyclone DDS
DEFAULT_SIZES = ((368, 640), (736, 1280))
CAMERA_TOPIC = "/camera/image_raw"
MASK_TOPIC = resolve_name("~/mask", NODE_NAME)  # /ssp/mask
FRAME_ID = "camera_optical"
IMAGE = "sensor_msgs/msg/Image"
LOOP_FRAMES = 60  # synthetic frames rendered per size, played forward then backward (no jump, no reset)
RSS_PERIOD_S = 1.0
RSS_LIMIT_MB = 25.0  # the bound on RSS drift under overload
START_TIMEOUT_S = 120.0  # process start to camera matched: imports, model load, discovery
HANDSHAKE_TIMEOUT_S = 30.0
HANDSHAKE_PERIOD_S = 0.5
DRAIN_QUIET_S = 2.0  # after the stream: done when no mask came for this long ...
DRAIN_MAX_S = 15.0  # ... or after this long
STOP_TIMEOUT_S = 15.0  # SIGINT, then kill
MIDDLEWARE_ENV = ("FASTDDS_BUILTIN_TRANSPORTS", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                  "RMW_FASTRTPS_USE_QOS_FROM_XML", "RMW_FASTRTPS_PUBLICATION_MODE")  # what the node inherits
VERSIONED = ("ssp_ros", "onnxruntime", "rclpy", "ros-jazzy-rclpy", "ros-jazzy-rmw-fastrtps-cpp", "ros-fastrtps",
             "cyclonedds", "numpy", "opencv-python", "opencv-python-headless", "torch")


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


# --- pure numbers -------------------------------------------------------------------------------------------------

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


# --- the node process ---------------------------------------------------------------------------------------------

def default_domain() -> int:
    """A private DDS domain: 1-9 (0 is ROS's default; the node tests take 10-109), low enough that Fast DDS's and
    Cyclone's ports stay below the ephemeral range."""
    return 1 + os.getpid() % 9


def ros_env(domain: int) -> dict[str, str | None]:
    """Loopback-only discovery in ``domain`` for rclpy (Fast DDS) and Cyclone DDS; None: unset (the deprecated
    ROS_LOCALHOST_ONLY, which rcl warns about whenever it is set)."""
    return {"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": None,
            "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "CYCLONEDDS_URI": LOOPBACK}


def with_env(base: dict[str, str], values: dict[str, str | None]) -> dict[str, str]:
    """``base`` with ``values`` set (None: removed)."""
    out = {k: v for k, v in base.items() if k not in values}
    out.update({k: v for k, v in values.items() if v is not None})
    return out


@contextlib.contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: unset) while the middleware reads it (participant creation), then
    restored."""
    saved = {key: os.environ.get(key) for key in values}

    def apply(settings: dict[str, str | None]) -> None:
        for key, value in settings.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    apply(values)
    try:
        yield
    finally:
        apply(saved)


def write_node_config(base: SspConfig, path: Path, input_size: tuple[int, int], backend: str,
                      export_dir: Path | None, threads: int | None, reliable: bool | None = None) -> Path:
    """``base`` as the node's config YAML at ``path``: model input, backend and export folder set (threads and the
    input's reliability too, unless None), data paths absolute, input on ``CAMERA_TOPIC``; validated by loading
    it back."""
    data = to_dict(base)
    model = data["model"]
    model["input_size"] = list(input_size)
    for key in ("weights", "backbone_weights"):
        if model[key] is not None:
            model[key] = str(resolve_data_path(model[key], f"model.{key}", "model weights file").resolve())
    data["runtime"].update(backend=backend, export_dir=None if export_dir is None else str(export_dir.resolve()))
    if threads is not None:
        data["runtime"]["threads"] = threads
    data["node"]["image_topic"] = CAMERA_TOPIC
    if reliable is not None:
        data["node"]["reliable"] = reliable
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_config(path)
    return path


def node_command(transport: str, config: Path, domain: int) -> list[str]:
    """The node process: ``ssp_node`` (rclpy) or ``ssp node --transport dds``, both with this interpreter."""
    if transport == "rclpy":
        return [sys.executable, "-m", "ssp_ros.ros.main", "--ros-args", "-p", f"config_file:={config}"]
    return [sys.executable, "-m", "ssp_ros.cli.main", "node", "--transport", "dds", "--config", str(config),
            "--domain-id", str(domain)]


def start_node(transport: str, config: Path, domain: int, log: Path) -> subprocess.Popen:
    """Start the node with its output in ``log``; it imports this same ``ssp_ros``."""
    root = str(Path(ssp_ros.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = with_env(dict(os.environ), {**ros_env(domain), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"})
    with log.open("w") as out:
        return subprocess.Popen(node_command(transport, config, domain), env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def stop_node(node: subprocess.Popen) -> int | None:
    """SIGINT (Ctrl-C), then the exit status; None when it had to be killed after ``STOP_TIMEOUT_S``."""
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            return node.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
            return None
    return node.returncode


def log_tail(log: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a node log."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RssSampler:
    """VmRSS and RssAnon of a process every ``RSS_PERIOD_S`` on its own thread; t counts from ``t0`` (monotonic)."""

    def __init__(self, pid: int, t0: float) -> None:
        self.pid, self.t0 = pid, t0
        self.samples: list[tuple[float, float, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss_sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            rss = read_rss_mb(self.pid)
            if rss is None:
                return
            self.samples.append((time.monotonic() - self.t0, *rss))
            if self._stop.wait(RSS_PERIOD_S):
                return

    def stop(self) -> list[tuple[float, float, float | None]]:
        self._stop.set()
        self._thread.join(timeout=5.0)
        return list(self.samples)


# --- the camera and viewer in this process ------------------------------------------------------------------------

def diagnostics_dict(msg: Any) -> dict[str, dict[str, Any]]:
    """A DiagnosticArray (rclpy or rosbags) as {status name: {"level", "message", key: value …}}."""
    out = {}
    for status in msg.status:
        level = status.level
        level = int.from_bytes(level, "little") if isinstance(level, bytes) else int(level)
        out[status.name] = {"level": level, "message": status.message,
                            **{kv.key: kv.value for kv in status.values}}
    return out


class MaskLog:
    """What came back from the node, written by the middleware's callback thread: (stamp, arrival) in ns per mask,
    in arrival order, and the newest /diagnostics of the node."""

    def __init__(self) -> None:
        self.masks: list[tuple[int, int]] = []
        self.stamps: set[int] = set()
        self.diagnostics: dict[str, dict[str, Any]] | None = None
        self.changed = threading.Condition()

    def on_mask(self, msg: Any) -> None:
        arrival = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.changed:
            self.masks.append((stamp, arrival))
            self.stamps.add(stamp)
            self.changed.notify_all()

    def on_diagnostics(self, msg: Any) -> None:
        statuses = diagnostics_dict(msg)
        if any(name.startswith(f"{NODE_NAME}: ") for name in statuses):
            with self.changed:
                self.diagnostics = statuses

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def snapshot(self) -> list[tuple[int, int]]:
        with self.changed:
            return list(self.masks)


class Camera:
    """One message per frame, built once; ``publish`` stamps one and sends it. Subclasses connect the middleware:
    ``_publisher`` (camera), ``subscribers`` and ``mask_publishers`` (who else is on the topics), ``close``."""

    messages: list[Any]

    def publish(self, index: int, stamp_ns: int) -> None:
        msg = self.messages[index]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        self._send(msg)

    def _send(self, msg: Any) -> None:
        raise NotImplementedError

    def subscribers(self) -> int:
        """Subscriptions matched to the camera (the node's input)."""
        raise NotImplementedError

    def mask_publishers(self) -> int:
        """Publishers matched to our mask subscription (the node's ~/mask)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class RclpyCamera(Camera):
    """The camera and viewer on rclpy (Fast DDS): its own context and node, spun by one executor thread."""

    def __init__(self, domain: int, frames: Sequence[np.ndarray], log: MaskLog, qos: QosProfile) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        from ssp_ros.ros.images import image_fields, rclpy_image_data
        from ssp_ros.ros.rclpy_transport import rclpy_qos

        self.messages = [Image(header=Header(frame_id=FRAME_ID), **image_fields(f, "rgb8"), data=rclpy_image_data(f))
                         for f in frames]
        with environment(ros_env(domain)):
            self.context = rclpy.Context()
            rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
            self.node = rclpy.create_node("ssp_bench_camera", context=self.context)
        self._camera = self.node.create_publisher(Image, CAMERA_TOPIC, rclpy_qos(qos))
        self.node.create_subscription(Image, MASK_TOPIC, log.on_mask, rclpy_qos(DEFAULT))
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, log.on_diagnostics, rclpy_qos(DEFAULT))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, name="bench_camera", daemon=True)
        self.thread.start()

    def _send(self, msg: Any) -> None:
        self._camera.publish(msg)

    def subscribers(self) -> int:
        return self._camera.get_subscription_count()

    def mask_publishers(self) -> int:
        return self.node.count_publishers(MASK_TOPIC)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)


class DdsCamera(Camera):
    """The camera and viewer on Cyclone DDS (``DdsTransport``: rosbags messages as CDR, one reader thread)."""

    def __init__(self, domain: int, frames: Sequence[np.ndarray], log: MaskLog, qos: QosProfile) -> None:
        from ssp_ros.ros.dds_transport import DdsTransport

        with environment(ros_env(domain)):
            self.transport = DdsTransport(domain, "ssp_bench_camera")
        types = self.transport.typestore.types
        header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                              frame_id=FRAME_ID)
        self.messages = [self.transport.image(header, f, "rgb8") for f in frames]  # each gets its own header copy
        self._camera = self.transport.publisher(CAMERA_TOPIC, IMAGE, qos)
        self._masks = self.transport.subscribe(MASK_TOPIC, IMAGE, DEFAULT, log.on_mask)
        self.transport.subscribe(DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", DEFAULT,
                                 log.on_diagnostics)

    def _send(self, msg: Any) -> None:
        self._camera.publish(msg)

    def subscribers(self) -> int:
        return self._camera.subscription_count()

    def mask_publishers(self) -> int:
        return self._masks.get_subscription_matched_status().current_count

    def close(self) -> None:
        self.transport.close()


CAMERAS: dict[str, type[Camera]] = {"rclpy": RclpyCamera, "dds": DdsCamera}


# --- one run ------------------------------------------------------------------------------------------------------

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
    """Steps 1-5 of the module docstring for one plan; the run's record (without its settings). The camera
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


# --- the matrix ---------------------------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    """CPU count, platform, Python and the versions of the packages that shape the numbers."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "versions": versions}


def export_folders(given: Sequence[Path], needed: Sequence[tuple[int, int]], backend: str, cfg: SspConfig,
                   scratch: Path) -> dict[tuple[int, int], Path | None]:
    """Model input size → export folder: a ``given`` folder exported at that size, else (onnxruntime) a fresh
    export of ``cfg.model`` into ``scratch`` (ONNX graphs have a static input size: one export per size)."""
    if backend == "torch":
        return {size: None for size in needed}
    by_size: dict[tuple[int, int], Path] = {}
    for folder in given:
        by_size.setdefault(tuple(load_export_info(folder).input_size), folder.resolve())  # type: ignore[arg-type]
    out: dict[tuple[int, int], Path | None] = {}
    for size in needed:
        if size in by_size:
            out[size] = by_size[size]
        elif backend == "onnxruntime":
            from ssp_ros.deploy.export import export_config  # needs torch: the bench exports what it measures

            model = dataclasses.replace(cfg.model, input_size=size)
            out[size] = export_config(model, scratch / f"export_{size[0]}x{size[1]}").resolve()
        else:
            have = ", ".join(f"{h}x{w}" for h, w in by_size) or "none given"
            raise SspError(f"--export-dir: backend {backend} needs a folder exported (and built) at input "
                           f"{size[0]}x{size[1]}; have {have}")
    return out


def run_node_bench(cfg: SimConfig, plans: Sequence[RunPlan], *, backend: str = "onnxruntime",
                   export_dirs: Sequence[Path] = (), warmup_s: float = 5.0, input_size: tuple[int, int] | None = None,
                   threads: int | None = None, domain: int | None = None, scenario: SyntheticConfig | None = None,
                   seed: int = 2000, rss_limit_mb: float = RSS_LIMIT_MB, reliable: bool | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every plan, one node process each; a run that fails is recorded with its error and the rest go on.
    ``reliable``: the node's ``node.reliable`` (and the camera's QoS); None keeps ``cfg``'s."""
    domain = default_domain() if domain is None else domain
    scenario = cfg.synthetic if scenario is None else scenario
    say = progress or (lambda _: None)
    report: dict[str, Any] = {
        "tool": "ssp bench-node",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {"backend": backend, "warmup_s": warmup_s, "input_size": None if input_size is None
                     else list(input_size), "threads": cfg.runtime.threads if threads is None else threads,
                     "domain_id": domain, "seed": seed, "loop_frames": LOOP_FRAMES, "rss_limit_mb": rss_limit_mb,
                     "max_age_ms": cfg.node.max_age_ms, "camera_topic": CAMERA_TOPIC, "mask_topic": MASK_TOPIC,
                     "input_qos": "reliable" if (cfg.node.reliable if reliable is None else reliable)
                     else "best effort",
                     "middleware_env": {k: os.environ[k] for k in MIDDLEWARE_ENV if k in os.environ},
                     "latency": "mask arrival (wall clock, this process) - header stamp (wall clock when sent)"},
        "runs": []}
    inputs = {plan.frame_size: input_size or input_size_for(plan.frame_size) for plan in plans}
    with tempfile.TemporaryDirectory(prefix="ssp-bench-node-") as tmp:
        scratch = Path(tmp)
        exports = export_folders(export_dirs, sorted(set(inputs.values())), backend, cfg, scratch)
        frames: dict[tuple[int, int], list[np.ndarray]] = {}
        for i, plan in enumerate(plans):
            size = plan.frame_size
            export = exports[inputs[size]]
            record: dict[str, Any] = {**dataclasses.asdict(plan), "frame_size": list(size),
                                      "input_size": list(inputs[size]), "backend": backend,
                                      "export_dir": None if export is None else str(export), "warmup_s": warmup_s}
            say(f"[{i + 1}/{len(plans)}] {plan.kind} run: {plan.transport}, {size[0]}x{size[1]}, "
                f"{plan.rate_hz:g} Hz for {plan.duration_s:g} s")
            try:
                if size not in frames:
                    video = SyntheticVideo(dataclasses.replace(scenario, height=size[0], width=size[1]),
                                           LOOP_FRAMES, seed)
                    frames[size] = [f.image for f in video]
                config = write_node_config(cfg, scratch / f"ssp_{i}.yaml", inputs[size], backend, export, threads,
                                           reliable)
                record.update(run_once(plan, config, frames[size], domain, warmup_s, rss_limit_mb, scratch))
            except SspError as err:
                record["error"] = str(err)
            report["runs"].append(record)
            say(summary_line(record))
    report["summary"] = [summary_line(r) for r in report["runs"]]
    return report


# --- reporting ----------------------------------------------------------------------------------------------------

def summary_line(run: dict[str, Any]) -> str:
    """One line per run: what was sent, what came back, latency, RSS."""
    head = f"{run['kind']} {run['transport']} {run['frame_size'][0]}x{run['frame_size'][1]} @ {run['rate_hz']:g} Hz"
    if "error" in run:
        return f"{head}: FAILED: {run['error'].splitlines()[0]}"
    lat, rss = run["latency_ms"], run["rss_mb"]
    text = (f"{head}: {run['masks_received']} masks / {run['frames_sent']} frames after warm-up, "
            f"{run['throughput_fps']:.2f} masks/s")
    if run.get("not_received_by_node"):
        text += f", {run['not_received_by_node']} frames lost before the node"
    if lat["n"]:
        text += f", latency p50/p90/p99 {lat['p50']:.0f}/{lat['p90']:.0f}/{lat['p99']:.0f} ms (max {lat['max']:.0f})"
    if rss["drift"] is not None:
        text += (f", RSS {rss['first']:.0f} -> {rss['last']:.0f} MiB, drift {rss['drift']:.1f} "
                 f"{'<=' if rss['flat'] else '>'} {rss['limit_mb']:g} MiB")
    if rss.get("slope_mb_per_min") is not None:
        text += f" (trend {rss['slope_mb_per_min']:+.2f} MiB/min)"
    return text


BREAKDOWN = ("transit", "wait", "convert", "total", "messages", "publish")  # "total": the pipeline's


def node_breakdown(run: dict[str, Any]) -> dict[str, float] | None:
    """The node's own median per stage (ms) from its /diagnostics while the camera ran: camera stamp → callback,
    the wait in the slot, conversion, the pipeline (``total``), building and publishing the outputs; None without
    diagnostics."""
    processing = (run.get("node", {}).get("diagnostics_streaming") or {}).get(f"{NODE_NAME}: processing", {})
    medians = {}
    for stage in BREAKDOWN:
        value = processing.get(f"latency {stage} ms (median / max)")
        if value is not None:
            medians[stage] = float(value.split("/")[0])
    return medians if "total" in medians else None


def markdown(report: dict[str, Any]) -> str:
    """The runs as Markdown tables (latency and memory; where the time goes), with the machine and settings above."""
    m, s = report["machine"], report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = ["# Node benchmark (camera stamp -> mask)", "",
             f"{m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}; {versions}.",
             f"Backend {s['backend']}; input QoS {s['input_qos']}; warm-up {s['warmup_s']:g} s left out; "
             f"node.max_age_ms {s['max_age_ms']:g}; "
             f"DDS domain {s['domain_id']}; created {report['created']}.", "",
             "| run | transport | frame | input | rate Hz | frames | not received by node | masks | masks/s | p50 ms | "
             "p90 ms | p99 ms | max ms | node CPU % | RSS first / last MiB | drift MiB | trend MiB/min |",
             "|---" * 17 + "|"]
    for r in report["runs"]:
        head = (f"| {r['kind']} | {r['transport']} | {r['frame_size'][0]}x{r['frame_size'][1]} | "
                f"{r['input_size'][0]}x{r['input_size'][1]} | {r['rate_hz']:g} |")
        if "error" in r:
            lines.append(head + f" failed: {r['error'].splitlines()[0]} |" + " |" * 11)
            continue
        lat, rss = r["latency_ms"], r["rss_mb"]
        flat = "" if rss["flat"] is None else (" ok" if rss["flat"] else " **over**")
        lines.append(head + f" {r['frames_sent']} | {r.get('not_received_by_node')} | {r['masks_received']} | "
                     f"{r['throughput_fps']} | {lat['p50']} | "
                     f"{lat['p90']} | {lat['p99']} | {lat['max']} | {r['cpu_percent']['node']} | {rss['first']} / "
                     f"{rss['last']} | {rss['drift']}{flat} | {rss.get('slope_mb_per_min')} |")
    lines += ["", "Frames and masks: stamped after the warm-up. Not received by node: frames of the whole run that the "
              "middleware lost (sent minus the node's own count). Latency: mask arrival here minus the frame's header "
              f"stamp. Drift: max - min VmRSS after the warm-up (limit {s['rss_limit_mb']:g} MiB).", "",
              "Where the time goes: the node's medians over its last /diagnostics window while the camera ran, ms "
              "(transit: camera stamp -> the node's callback; wait: in the newest-frame slot; pipeline: "
              "Pipeline.process; messages: building the outputs someone subscribes to); the camera -> mask p99 over "
              "the pipeline median (the issue's target is 1.5).", "",
              "| run | transport | frame | transit | wait | convert | pipeline | messages | publish | "
              "p99 / pipeline median |", "|---" * 10 + "|"]
    for r in report["runs"]:
        parts = node_breakdown(r) if "error" not in r else None
        if parts is None:
            continue
        cells = " | ".join(f"{parts[k]:.1f}" if k in parts else "" for k in BREAKDOWN)
        p99 = r["latency_ms"]["p99"]
        ratio = "" if p99 is None else f"{p99 / parts['total']:.2f}"
        lines.append(f"| {r['kind']} | {r['transport']} | {r['frame_size'][0]}x{r['frame_size'][1]} | {cells} | "
                     f"{ratio} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path,
                 render: Callable[[dict[str, Any]], str] = markdown) -> tuple[Path, Path]:
    """Write the JSON to ``out`` and its Markdown (``render``) beside it (same name, ``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.with_suffix(".md")
    out.write_text(json.dumps(report, indent=2) + "\n")
    md.write_text(render(report))
    return out, md
