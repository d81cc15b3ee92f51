"""The in-process ROS tests' context: once closed, its nodes are off the graph, so the next test in the same
process and domain never sees them."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")

from conftest import close_context, open_context  # noqa: E402 - after the skip
from node_harness import wait_until  # noqa: E402


def test_a_closed_context_takes_its_nodes_off_the_graph(monkeypatch) -> None:
    closing, probing = open_context(monkeypatch), open_context(monkeypatch)
    closed = False
    try:
        probe = rclpy.create_node("probe", context=probing)
        names = lambda: {name for name, _ in probe.get_node_names_and_namespaces()}  # noqa: E731
        node = rclpy.create_node("left_behind", context=closing)
        node.me = node  # a reference cycle, as the node classes under test have
        del node
        wait_until(lambda: "left_behind" in names(), "the probe to see the node")
        close_context(closing)
        closed = True
        wait_until(lambda: "left_behind" not in names(), "the closed context's node to leave the graph")
    finally:
        if not closed:
            close_context(closing)
        close_context(probing)
