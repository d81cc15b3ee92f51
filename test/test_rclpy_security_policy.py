"""Each enclave of config/security/policy.xml against the real node's graph: what the policy grants is exactly what
the node makes.

``ssp_node`` runs as a process, started as ssp.launch.py starts it (its name, remapping, ``--enclave`` and
``--lifecycle``; security off: the PyPI Fast DDS has no DDS-Security) with the shipped model at a small size; a
second node reads every publisher, subscription, service and client of /ssp through rclpy's graph introspection.
Each grant of the node's enclave must be on the graph and each endpoint on the graph must be granted, except the
grants that exist only sometimes: ``sometimes`` says when, and the runs see both sides of each (~/similarity with
node.publish_similarity, /clock with use_sim_time, ~/label_info where vision_msgs has LabelInfo,
~/get_type_description with rclpy from Jazzy on, and what the managed node makes at configure and activate), except
``masks``, the stabiliser mode's input: these runs segment, so only its absence is seen."""

from __future__ import annotations

import importlib
import importlib.util
import signal

import pytest
from dds_domains import RCLPY_NODES, private_domain

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")

from lifecycle_msgs.msg import Transition  # noqa: E402 - after the skip
from node_harness import stop_node, wait_for_start, wait_until  # noqa: E402
from test_launch import _launch_nodes  # noqa: E402
from test_rclpy_lifecycle import LifecycleViewer  # noqa: E402
from test_rclpy_node import node_config, start_node  # noqa: E402
from test_security_policy import ENCLAVES, grants  # noqa: E402

PERMISSIONS = ("publish", "subscribe", "reply", "request")  # of publishers, subscriptions, services, clients
CONFIGURED = ("/ssp/mask", "/ssp/overlay", "/ssp/confidence", "/ssp/similarity", "/ssp/label_info", "/diagnostics")


def sometimes(*, similarity: bool, sim_time: bool, configured: bool = True, active: bool = True) -> set[str]:
    """The granted names a run must not have: each optional interface whose condition is off."""
    absent = {"/masks"}  # the other segmenter's masks: stabiliser mode only, and these runs segment
    if not similarity:
        absent.add("/ssp/similarity")
    if not sim_time:
        absent.add("/clock")
    if importlib.util.find_spec("vision_msgs") is None or not hasattr(importlib.import_module("vision_msgs.msg"),
                                                                       "LabelInfo"):
        absent.add("/ssp/label_info")  # rclpy_transport.publish_label_info makes nothing without it
    if importlib.util.find_spec("rclpy.type_description_service") is None:
        absent.add("/ssp/get_type_description")  # Humble's rclpy has no type description service
    if not configured:
        absent |= set(CONFIGURED)  # the managed node makes its publishers at configure
    if not active:
        absent.add("/camera/image_raw")  # ... and subscribes to the camera at activate
    return absent


def expected(mode: str, **conditions: bool) -> dict[str, set[str]]:
    """What the node must have on the graph in ``mode``: its enclave's grants less the ``sometimes`` that are off."""
    absent, allowed = sometimes(**conditions), grants(ENCLAVES[mode])
    return {permission: allowed.get(permission, set()) - absent for permission in PERMISSIONS}


def graph(viewer: LifecycleViewer, name: str = "ssp", namespace: str = "/") -> dict[str, set[str]] | None:
    """The endpoints of node ``namespace``/``name`` on the viewer's graph, by the permission each needs; None while
    the node is not on it."""
    node = viewer.node
    if (name, namespace) not in node.get_node_names_and_namespaces():
        return None
    queries = (node.get_publisher_names_and_types_by_node, node.get_subscriber_names_and_types_by_node,
               node.get_service_names_and_types_by_node, node.get_client_names_and_types_by_node)
    return {permission: {topic for topic, _ in query(name, namespace)}
            for permission, query in zip(PERMISSIONS, queries)}


def difference(viewer: LifecycleViewer, want: dict[str, set[str]]) -> str:
    """What the graph has that ``want`` lacks and the reverse, by permission; "" when they are equal."""
    seen = graph(viewer)
    if seen is None:
        return "the node is not on the graph"
    return "; ".join(f"{permission}: not granted {sorted(seen[permission] - want[permission])}, granted but absent "
                     f"{sorted(want[permission] - seen[permission])}" for permission in PERMISSIONS
                     if seen[permission] != want[permission])


def started(viewer: LifecycleViewer) -> bool:
    """Whether the node's ~/reset service is on the graph: the plain node makes it once the model is loaded, after
    all but ~/label_info; the managed node makes it last in its constructor."""
    seen = graph(viewer)
    return seen is not None and "/ssp/reset" in seen["reply"]


def assert_graph(viewer: LifecycleViewer, want: dict[str, set[str]], what: str) -> None:
    """Once the graph shows everything ``want`` has (discovery: bounded by ``HUNG_S``), it must have nothing else.
    Called once the node has made all it makes at start or in a transition (``started``, a transition's answer),
    whose endpoints discovery brings in one go."""
    def shown() -> bool:
        seen = graph(viewer)
        return seen is not None and all(want[permission] <= seen[permission] for permission in PERMISSIONS)

    try:
        wait_until(shown, f"the endpoints of {what} on the graph")
    except AssertionError as err:
        raise AssertionError(f"{err}: {difference(viewer, want)}") from None
    assert not difference(viewer, want), f"{what}: {difference(viewer, want)}"


def launched(monkeypatch, **launch_args: str) -> list[str]:
    """The ROS arguments (then ``--lifecycle``) ssp.launch.py gives the node for ``launch_args``, to follow
    start_node's ``--ros-args -p config_file:=...``: its name, remapping, enclave and use_sim_time."""
    (action,) = _launch_nodes(monkeypatch, **launch_args)
    ros_args = ["-r", f"__node:={action['name']}"]
    ros_args += [arg for source, target in action["remappings"] for arg in ("-r", f"{source}:={target}")]
    ros_args += action.get("ros_arguments", [])
    ros_args += ["-p", f"use_sim_time:={str(action['parameters'][0]['use_sim_time']).lower()}"]
    return [*ros_args, "--", *action.get("arguments", [])]


@pytest.fixture
def domain() -> int:
    return private_domain(RCLPY_NODES)


@pytest.mark.slow
@pytest.mark.parametrize("options", [False, True], ids=["defaults", "similarity-and-sim-time"])
def test_the_plain_node_has_exactly_what_its_enclave_grants(monkeypatch, tmp_path, domain, options) -> None:
    config = node_config(tmp_path, node={"publish_similarity": options})
    log = tmp_path / "node.log"
    args = launched(monkeypatch, enclave=ENCLAVES["plain"], use_sim_time=str(options).lower())
    assert args[args.index("--enclave") + 1] == "/ssp"
    viewer = LifecycleViewer(domain)
    node = start_node(config, domain, log, *args)
    try:
        wait_for_start(node, log, lambda: started(viewer), "the node's ~/reset service on the graph")
        assert_graph(viewer, expected("plain", similarity=options, sim_time=options),
                     f"ssp_node, {'with' if options else 'without'} similarity and sim time")
        assert stop_node(node, signal.SIGINT) == 0, log.read_text()
    finally:
        stop_node(node)
        viewer.close()


@pytest.mark.slow
def test_the_managed_node_has_exactly_what_its_enclave_grants_in_each_state(monkeypatch, tmp_path, domain) -> None:
    config = node_config(tmp_path, node={"publish_similarity": True})
    log = tmp_path / "node.log"
    args = launched(monkeypatch, enclave=ENCLAVES["lifecycle"], lifecycle="true", use_sim_time="true")
    assert args[-1] == "--lifecycle" and args[args.index("--enclave") + 1] == "/ssp_lifecycle"
    viewer = LifecycleViewer(domain)
    node = start_node(config, domain, log, *args)
    try:
        wait_for_start(node, log, lambda: started(viewer), "the managed node's ~/reset service on the graph")
        assert_graph(viewer, expected("lifecycle", similarity=True, sim_time=True, configured=False, active=False),
                     "ssp_node --lifecycle, unconfigured")
        for state, transition, active in (("inactive", Transition.TRANSITION_CONFIGURE, False),
                                          ("active", Transition.TRANSITION_ACTIVATE, True)):
            assert viewer.change(transition), f"{state}: {log.read_text()}"
            assert_graph(viewer, expected("lifecycle", similarity=True, sim_time=True, active=active),
                         f"ssp_node --lifecycle, {state}")
        assert stop_node(node, signal.SIGINT) == 0, log.read_text()
    finally:
        stop_node(node)
        viewer.close()
