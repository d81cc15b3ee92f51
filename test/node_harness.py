"""What the end-to-end node tests share (test_dds_node.py on Cyclone DDS, test_rclpy_node.py on rclpy, test_interop.py
across the two): the viewer's record of what the node sent, waits that last as long as the node makes progress, the
in-process reference run, the check of the outputs against it and stopping a node process.

Waits: CI runs these tests on two loaded cores, where a node process can be many times slower than alone. No wait
here is a short fixed timeout. A wait on something that moves (the node's counters, its outputs, its CPU time)
goes on while it moves and fails once nothing moved for ``STALL_S`` (or after ``CEILING_S`` in all); a wait on
something with no progress to watch (a service to appear, a process to exit) is bounded by ``HUNG_S``, which only
a hung test reaches."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from ssp_ros.classes import load_class_set, overlay
from ssp_ros.config import load_config
from ssp_ros.ros.images import rgb_to_bgr
from ssp_ros.tools.node_bench.node_process import stop_node as bench_stop_node

STALL_S = 60.0  # a wait on progress fails once nothing it watches has moved for this long
CEILING_S = 300.0  # ... and after this long in all, moving or not
HUNG_S = 120.0  # a wait with no progress to watch (discovery, a service, a process or thread to stop)
POLL_S = 0.05
COUNTERS = ("received", "dropped (", "skipped: ", "resets: ")  # the node's running totals in /diagnostics


def wait_for_progress(predicate: Callable[[], bool], progress: Callable[[], Hashable], what: str, *,
                      stall_s: float = STALL_S, ceiling_s: float = CEILING_S,
                      condition: threading.Condition | None = None, poll_s: float = POLL_S) -> None:
    """Return once ``predicate()`` holds; wait as long as ``progress()`` (e.g. a tuple of counters) keeps changing.
    AssertionError, saying what was last seen, once its value has not changed for ``stall_s`` seconds or
    ``ceiling_s`` have passed. With ``condition`` (notified when the watched state changes) both are evaluated
    holding it and the wait wakes on each notification; without it they are polled every ``poll_s``."""
    start = moved = time.monotonic()
    with condition if condition is not None else contextlib.nullcontext():
        seen = progress()
        while not predicate():
            now, value = time.monotonic(), progress()
            if value != seen:
                seen, moved = value, now
            if now - moved >= stall_s or now - start >= ceiling_s:
                why = (f"nothing moved for {now - moved:.0f} s" if now - moved >= stall_s else
                       f"still moving after the {ceiling_s:g} s ceiling (last move {now - moved:.1f} s ago)")
                raise AssertionError(f"gave up waiting for {what} after {now - start:.0f} s: {why}; "
                                     f"last seen: {seen!r}")
            if condition is not None:
                condition.wait(poll_s)
            else:
                time.sleep(poll_s)


def wait_until(predicate: Callable[[], bool], what: str, limit_s: float = HUNG_S) -> None:
    """Poll ``predicate()`` until it holds, for a wait with no progress to watch (discovery, a subscription going
    away); AssertionError after ``limit_s``, which only a hung test reaches."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up waiting for {what} after {limit_s:g} s")
        time.sleep(POLL_S)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux /proc), None where it cannot be read: a starting node's
    progress (importing torch, loading the weights) while it has nothing to show on the graph yet."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def wait_for_start(node: subprocess.Popen, log: Path, ready: Callable[[], bool], what: str) -> None:
    """Until ``ready()`` (e.g. the node matched the viewer), as long as the node process keeps using CPU: the first
    start imports torch and loads the weights. Fails at once, with the node's log, if the process exits."""

    def check() -> bool:
        if node.poll() is not None:
            raise AssertionError(f"the node exited with {node.returncode}:\n{log.read_text()}")
        return ready()

    try:
        wait_for_progress(check, lambda: cpu_seconds(node.pid), f"{what} (progress: the node's CPU seconds)")
    except AssertionError as err:
        if node.poll() is not None:
            raise
        raise AssertionError(f"{err}\n{log.read_text()}") from None


class NodeWatcher:
    """The viewer's record of what a node process sent, from the middleware's callback threads: output images
    by name and header stamp (mask stamps in arrival order), /diagnostics arrays. A transport's viewer
    subclasses it, subscribes ``_on_output``/``_on_diagnostics`` and implements ``publish`` and ``now_ns``."""

    def __init__(self, outputs: tuple[str, ...]) -> None:
        self.outputs: dict[str, dict[int, object]] = {name: {} for name in outputs}
        self.order: list[int] = []
        self.arrival_ns: dict[int, int] = {}
        self.diagnostics: list = []
        self.changed = threading.Condition()

    def publish(self, frame: np.ndarray, stamp_ns: int) -> None:
        raise NotImplementedError

    def now_ns(self) -> int:
        raise NotImplementedError

    def _on_output(self, name: str, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.changed:
            if name == "mask":
                self.arrival_ns[stamp] = time.time_ns()
                self.order.append(stamp)
            self.outputs[name][stamp] = msg
            self.changed.notify_all()

    def _on_diagnostics(self, msg) -> None:
        with self.changed:
            self.diagnostics.append(msg)
            self.changed.notify_all()

    def progress(self) -> tuple:
        """What moves while the node works: how many of each output the viewer got, and the node's running totals
        (received, dropped, skipped and resets by reason) in its newest /diagnostics. Not the number of
        /diagnostics messages: those come while the node is idle, or stuck with a frame lost on the way."""
        with self.changed:
            outputs = tuple(len(received) for received in self.outputs.values())
            if not self.diagnostics:
                return outputs, ()
            return outputs, tuple((kv.key, kv.value) for status in self.diagnostics[-1].status
                                  for kv in status.values if kv.key.startswith(COUNTERS))

    def wait_for(self, predicate, what: str, stall_s: float = STALL_S) -> None:
        """Until ``predicate()`` (evaluated under ``changed``), as long as ``progress()`` moves: fails once nothing
        moved for ``stall_s``."""
        wait_for_progress(predicate, self.progress, what, stall_s=stall_s, condition=self.changed)

    def handshake(self, frame: np.ndarray, stamp_ns: Callable[[int], int] | None = None) -> int:
        """Publish ``frame`` every 0.5 s, stamped ``stamp_ns(attempt)`` (default: now), until its mask comes back:
        endpoint matching is asymmetric, so a best-effort reader may miss the very first samples, and a loaded
        machine makes the node's first frame slow. Returns the number of frames sent; fails after ``STALL_S``
        without an answer (nothing before the first answer tells a slow node from a stuck one)."""
        start, sent = time.monotonic(), 0
        while time.monotonic() - start < STALL_S:
            sent += 1
            stamp = self.now_ns() if stamp_ns is None else stamp_ns(sent)
            self.publish(frame, stamp)
            with self.changed:
                if self.changed.wait_for(lambda s=stamp: s in self.outputs["mask"], 0.5):
                    return sent
        raise AssertionError(f"the node never answered a handshake frame: {sent} sent in {STALL_S:g} s; "
                             f"last seen: {self.progress()!r}")

    def last_status(self, name: str) -> dict[str, str]:
        """Key/values of the newest diagnostics status ``ssp: <name>``."""
        with self.changed:
            status = next(s for s in self.diagnostics[-1].status if s.name == f"ssp: {name}")
        return {kv.key: kv.value for kv in status.values}

    def received_now(self) -> int:
        """The node's count of received messages, from a /diagnostics message that arrives after this call."""
        with self.changed:
            seen = len(self.diagnostics)
        self.wait_for(lambda: len(self.diagnostics) > seen, "a fresh /diagnostics message")
        return int(self.last_status("input")["received"])


def stop_node(node: subprocess.Popen, sig: int = signal.SIGINT) -> int | None:
    """Send ``sig``, then the exit status (None if the node had to be killed after ``HUNG_S``: a stop that is
    merely slow is the caller's to judge). The node bench's stop, with the tests' bound."""
    return bench_stop_node(node, sig, HUNG_S)


def reference_masks(config: Path, frames: list[np.ndarray], stamps_ns: list[int]) -> list[np.ndarray]:
    """What ``ssp demo`` computes for these frames and stamps: the same Pipeline, frame by frame, one torch
    thread (as the node processes run)."""
    import torch

    from ssp_ros.backends import make_backend
    from ssp_ros.pipeline import Pipeline

    cfg = load_config(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipeline = Pipeline(cfg, make_backend(cfg, load_class_set(cfg.model.dataset).num_classes))
        return [pipeline.process(frame, stamp * 1e-9).mask for frame, stamp in zip(frames, stamps_ns)]
    finally:
        torch.set_num_threads(threads)


def pixels(msg) -> np.ndarray:
    """An Image message's data as a height×width(×channels) uint8 array (rosbags ndarray or rclpy array('B'))."""
    data = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, -1)
    return data[..., 0] if data.shape[2] == 1 else data


ENCODINGS = {"mask": "mono8", "overlay": "bgr8", "confidence": "mono8"}


def assert_outputs(viewer: NodeWatcher, frames: list[np.ndarray], stamps: list[int], expected: list[np.ndarray],
                   frame_id: str = "camera_optical") -> None:
    """Every output the viewer subscribes to came back for each frame under the frame's stamp, with the camera's
    frame_id, the frame's size and its encoding; the mask equals ``expected`` (the reference run), the overlay
    is its colour blend."""
    assert len(stamps) == len(frames) == len(expected) > 0
    classes = load_class_set("uavid")
    h, w = frames[0].shape[:2]
    for stamp, frame, want in zip(stamps, frames, expected):
        for name, received in viewer.outputs.items():
            assert stamp in received, f"no {name} stamped {stamp}"
            msg = received[stamp]
            assert msg.header.frame_id == frame_id and (msg.height, msg.width) == (h, w), (name, stamp)
            assert msg.encoding == ENCODINGS[name], (name, msg.encoding)
        np.testing.assert_array_equal(pixels(viewer.outputs["mask"][stamp]), want)
        blend = rgb_to_bgr(overlay(frame, want, classes))
        np.testing.assert_array_equal(pixels(viewer.outputs["overlay"][stamp]), blend)
