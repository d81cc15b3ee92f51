"""The node as its own process: a private loopback domain, the config the bench writes, start, stop, its log,
and an RSS sampler."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

import ssp_ros
from ssp_ros.config import SspConfig, load_config
from ssp_ros.resources import resolve_data_path
from ssp_ros.ros.dds_transport import LOOPBACK
from ssp_ros.schema import to_dict
from ssp_ros.tools.node_bench.plan import CAMERA_TOPIC
from ssp_ros.tools.node_bench.run_numbers import RSS_PERIOD_S, read_rss_mb

STOP_TIMEOUT_S = 15.0  # SIGINT, then kill


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


def stop_node(node: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """Send ``sig`` (SIGINT: Ctrl-C; SIGTERM: what ``ros2 launch`` sends), then the exit status; None when the node
    had to be killed after ``timeout_s``."""
    if node.poll() is None:
        node.send_signal(sig)
        try:
            return node.wait(timeout=timeout_s)
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
        """Stop sampling; the samples (t, VmRSS, RssAnon)."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        return list(self.samples)
