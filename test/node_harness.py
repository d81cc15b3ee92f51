"""What the end-to-end node tests share (test_dds_node.py on Cyclone DDS, test_rclpy_node.py on rclpy, test_interop.py
across the two): the viewer's record of what the node sent, the in-process reference run, the check of the outputs
against it and stopping a node process."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ssp_ros.classes import load_class_set, overlay
from ssp_ros.config import load_config
from ssp_ros.ros.images import rgb_to_bgr

TIMEOUT_S = 20.0  # any single wait in the node tests


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

    def wait_for(self, predicate, what: str, timeout: float = TIMEOUT_S) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")

    def handshake(self, frame: np.ndarray, stamp_ns: Callable[[int], int] | None = None) -> int:
        """Publish ``frame`` every 0.5 s, stamped ``stamp_ns(attempt)`` (default: now), until its mask comes back:
        endpoint matching is asymmetric, so a best-effort reader may miss the very first samples. Returns the
        number of frames sent."""
        for sent in range(1, int(TIMEOUT_S / 0.5)):
            stamp = self.now_ns() if stamp_ns is None else stamp_ns(sent)
            self.publish(frame, stamp)
            with self.changed:
                if self.changed.wait_for(lambda s=stamp: s in self.outputs["mask"], 0.5):
                    return sent
        raise AssertionError("the node never answered a handshake frame")

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
    """Send ``sig`` (SIGINT: Ctrl-C; SIGTERM: what ``ros2 launch`` sends), then the exit status (None if the
    node had to be killed after 15 s)."""
    if node.poll() is None:
        node.send_signal(sig)
        try:
            return node.wait(timeout=15.0)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
            return None
    return node.returncode


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
