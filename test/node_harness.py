"""What the end-to-end node tests share (test_dds_node.py on Cyclone DDS, test_rclpy_node.py on rclpy): the
in-process reference run and stopping a node process."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import numpy as np

from ssp_ros.classes import load_class_set
from ssp_ros.config import load_config


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
