"""The node's stabiliser mode end to end on the real rclpy: ``ssp_node`` with ``node.mode: stabilise`` as a process on
Fast DDS, an rclpy camera, another segmenter's masks and a viewer in the test (test_rclpy_node.py's set-up: loopback,
a private domain, waits that last as long as the node makes progress)."""

from __future__ import annotations

import random
import signal
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from dds_domains import RCLPY_NODES, private_domain

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")

from conftest import small_scenario  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402 - after the skip
from node_harness import NodeWatcher, pixels, stop_node, wait_for_start  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_rclpy_node import node_config, start_node  # noqa: E402
from test_stabilise import flicker  # noqa: E402

from ssp_ros.classes import load_class_set, overlay  # noqa: E402
from ssp_ros.ros.images import rgb_to_bgr  # noqa: E402
from ssp_ros.ros.pairing import (  # noqa: E402
    NO_PARTNER,
    PARTNER_DROPPED,
    UNPAIRED,  # noqa: E402
)
from ssp_ros.ros.stabilise_stream import MASK_SIZE  # noqa: E402
from ssp_ros.synthetic import SyntheticVideo  # noqa: E402

OUTPUTS = ("mask", "overlay")  # label input: no confidence
MASKS = "/segmenter/mask"
FRAME_ID = "camera_optical"


class StabiliseViewer(NodeWatcher):
    """A camera, the other segmenter's mask publisher and subscriptions to the node's outputs and /diagnostics, in
    the test's own rclpy context spun by one thread; ``sent`` maps each stamp sent to its frame and labels."""

    def __init__(self, domain: int, handshake_labels: np.ndarray) -> None:
        super().__init__(OUTPUTS)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("viewer", context=self.context)
        self.camera = self.node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        self.masks = self.node.create_publisher(Image, MASKS, qos_profile_sensor_data)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions = [self.node.create_subscription(Image, f"/ssp/{name}",
                                                            lambda msg, name=name: self._on_output(name, msg),
                                                            reliable) for name in OUTPUTS]
        self.subscriptions.append(self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                                                self._on_diagnostics, reliable))
        self.handshake_labels = handshake_labels
        self.sent: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _message(self, pixels: np.ndarray, stamp: int, encoding: str) -> Image:
        msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                    step=pixels[0].nbytes, data=np.ascontiguousarray(pixels).tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.header.frame_id = FRAME_ID if encoding == "rgb8" else "segmenter"
        return msg

    def send_image(self, frame: np.ndarray, stamp: int) -> None:
        self.camera.publish(self._message(frame, stamp, "rgb8"))

    def send_mask(self, labels: np.ndarray, stamp: int) -> None:
        self.masks.publish(self._message(labels, stamp, "mono8"))

    def publish(self, frame: np.ndarray, stamp: int) -> None:
        """The handshake's pair: the image and its mask."""
        self.sent[stamp] = (frame, self.handshake_labels)
        self.send_image(frame, stamp)
        self.send_mask(self.handshake_labels, stamp)

    def counts(self) -> Counter[str]:
        """The node's running totals, from its newest /diagnostics: the input status's skips by reason and the
        masks status's drops by reason (prefixed ``masks ``)."""
        inputs, masks = self.last_status("input"), self.last_status("masks")
        out = Counter({key: int(value) for key, value in inputs.items() if key.startswith("skipped: ")})
        out.update({f"masks {key}": int(value) for key, value in masks.items() if key.startswith("dropped: ")})
        return out

    def settled(self) -> bool:
        """The newest /diagnostics has every image judged and nothing waiting for a partner."""
        if not self.diagnostics:
            return False
        inputs, masks = self.last_status("input"), self.last_status("masks")
        return inputs["in flight"] == "0" and masks["waiting"] == masks["images waiting"] == "0"

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=60)


def reference(config: Path, viewer: StabiliseViewer, stamps: list[int]) -> list[np.ndarray]:
    """What ``make_stabiliser`` gives for the pairs the node processed, in its order, one torch thread."""
    import torch

    from ssp_ros.config import load_config
    from ssp_ros.stabiliser import make_stabiliser

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stabiliser = make_stabiliser(load_config(config), 8, 0.9)
        return [stabiliser.process(*viewer.sent[stamp], stamp * 1e-9).labels for stamp in stamps]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_the_stabiliser_node_pairs_by_stamp_and_counts_every_drop(tmp_path) -> None:
    """Pairs in either order come back stabilised under the camera's stamp and frame_id, equal to an in-process
    stabiliser over the same pairs; an image without mask, a mask without image, a mask after its image was
    dropped and a mask of another size are each counted once under their reason, and paired with nothing."""
    video = list(SyntheticVideo(small_scenario(), frames=14, seed=2001))
    rng = np.random.default_rng(0)
    frames = [f.image for f in video]
    labels = [flicker(f.labels, rng) for f in video]
    config = node_config(tmp_path, node={"mode": "stabilise", "mask_topic": MASKS, "pair_wait_ms": 2000.0,
                                         "diagnostics_period_s": 0.1, "max_age_ms": 30000.0})
    domain = private_domain(RCLPY_NODES)
    log = tmp_path / "node.log"
    viewer = StabiliseViewer(domain, labels[0])
    node = start_node(config, domain, log)
    cases = ["pair", "mask first", "no mask", "pair", "no image", "late mask", "pair", "bad size", "mask first",
             "no mask", "pair", "pair", "pair"]
    expected: Counter[str] = Counter()
    good: list[int] = []
    order = random.Random(3)
    try:
        wait_for_start(node, log, lambda: bool(viewer.camera.get_subscription_count()
                                                and viewer.masks.get_subscription_count())
                       and all(s.get_publisher_count() for s in viewer.subscriptions),
                       "the node to match the camera, the masks and the viewer")
        viewer.handshake(frames[0])
        viewer.wait_for(viewer.settled, "the handshake's pairs to be judged")
        before = viewer.counts()
        for i, case in enumerate(cases, 1):
            stamp = viewer.now_ns()
            viewer.sent[stamp] = (frames[i], labels[i])
            if case in ("pair", "mask first"):
                if case == "mask first" or order.random() < 0.5:
                    viewer.send_mask(labels[i], stamp)
                    viewer.send_image(frames[i], stamp)
                else:
                    viewer.send_image(frames[i], stamp)
                    viewer.send_mask(labels[i], stamp)
                viewer.wait_for(lambda s=stamp: s in viewer.outputs["mask"] and s in viewer.outputs["overlay"],
                                f"the outputs of pair {i}")
                good.append(stamp)
                continue
            if case in ("no mask", "late mask"):
                viewer.send_image(frames[i], stamp)
                expected[f"skipped: {UNPAIRED}{NO_PARTNER}"] += 1
            if case == "no image":
                viewer.send_mask(labels[i], stamp)
                expected[f"masks dropped: {NO_PARTNER}"] += 1
            if case == "bad size":
                viewer.send_image(frames[i], stamp)
                viewer.send_mask(labels[i][:-8], stamp)
                expected[f"skipped: {MASK_SIZE}"] += 1
            viewer.wait_for(lambda: viewer.diagnostics and viewer.counts() - before == expected,
                            f"/diagnostics counting case {i} ({case})")
            if case == "late mask":
                viewer.send_mask(labels[i], stamp)
                expected[f"masks dropped: {PARTNER_DROPPED}"] += 1
                viewer.wait_for(lambda: viewer.diagnostics and viewer.counts() - before == expected,
                                f"/diagnostics counting the late mask of case {i}")
        viewer.wait_for(viewer.settled, "every image judged")
        assert viewer.counts() - before == expected, "each drop counted once, under its reason"
        assert node.poll() is None, log.read_text()
        code = stop_node(node, signal.SIGINT)
    finally:
        stop_node(node, signal.SIGKILL)
        viewer.close()
    assert code == 0, log.read_text()
    assert set(good) <= set(viewer.order) and len(good) == cases.count("pair") + cases.count("mask first")
    assert not set(viewer.order) - set(viewer.sent), "nothing came out under a stamp that was not sent"
    classes = load_class_set("uavid")
    for stamp, want in zip(viewer.order, reference(config, viewer, viewer.order)):
        frame = viewer.sent[stamp][0]
        for name in OUTPUTS:
            msg = viewer.outputs[name][stamp]
            assert msg.header.frame_id == FRAME_ID and (msg.height, msg.width) == frame.shape[:2], (name, stamp)
        assert viewer.outputs["mask"][stamp].encoding == "mono8"
        np.testing.assert_array_equal(pixels(viewer.outputs["mask"][stamp]), want)
        np.testing.assert_array_equal(pixels(viewer.outputs["overlay"][stamp]),
                                      rgb_to_bgr(overlay(frame, want, classes)))
