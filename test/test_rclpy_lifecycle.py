"""The managed node (``ssp_node --lifecycle``) on the real rclpy: its transitions in-process (what each state
holds, the model freed at cleanup, a failing configure), then as a process driven through its lifecycle
services with a camera and a viewer (outputs only while active, the propagation state dropped at deactivate,
shutdown from a running state, exit on SIGINT)."""

from __future__ import annotations

import gc
import signal
import threading
import time
import weakref

import numpy as np
import pytest
from dds_domains import RCLPY_NODES, private_domain

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed: pip install -e '.[ros]' or source ROS 2")

from conftest import small_scenario  # noqa: E402 - after the skip
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from node_harness import HUNG_S, reference_masks, stop_node, wait_for_start, wait_until  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_rclpy_node import Viewer, node_config, start_node  # noqa: E402

from ssp_ros.propagation import REQUESTED  # noqa: E402
from ssp_ros.ros.lifecycle import LifecycleSegmentationNode  # noqa: E402
from ssp_ros.ros.pairing import CLEARED, IMAGE, UNPAIRED  # noqa: E402
from ssp_ros.ros.stabilise_node import StabilisingNode  # noqa: E402
from ssp_ros.synthetic import SyntheticVideo  # noqa: E402

SUCCESS = TransitionCallbackReturn.SUCCESS


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [f.image for f in SyntheticVideo(small_scenario(), frames=9, seed=2002)]


@pytest.fixture
def domain() -> int:
    return private_domain(RCLPY_NODES)


def state(node: LifecycleSegmentationNode) -> str:
    """The node's state label (in-process; the process test asks the get_state service)."""
    return node._state_machine.current_state[1]


@pytest.fixture
def managed(context, tmp_path):
    node = LifecycleSegmentationNode(context=context,
                                     parameter_overrides=[Parameter("config_file", value=str(node_config(tmp_path)))])
    yield node
    node.close()
    node.destroy_node()


def test_each_transition_holds_what_its_state_promises(managed) -> None:
    assert state(managed) == "unconfigured" and managed.segmenter is None, "nothing is loaded before configure"
    assert managed.trigger_configure() == SUCCESS and state(managed) == "inactive"
    segmenter = managed.segmenter
    assert segmenter is not None and not segmenter.active and not list(managed.subscriptions)
    assert {p.topic_name for p in managed.publishers} >= {"/ssp/mask", "/ssp/overlay", "/ssp/confidence",
                                                           "/diagnostics"}
    assert {s.srv_name for s in managed.services} >= {"~/reset", "/ssp/change_state"}
    assert managed.trigger_activate() == SUCCESS and segmenter.active
    assert [s.topic_name for s in managed.subscriptions] == ["/camera/image_raw"]
    assert all(p.handle.is_activated for p in segmenter.publishers.values()), "lifecycle publishers are enabled"
    assert managed.trigger_deactivate() == SUCCESS and not segmenter.active
    assert not list(managed.subscriptions), "deactivate unsubscribes from the camera"
    assert not any(p.handle.is_activated for p in segmenter.publishers.values())
    assert managed.trigger_cleanup() == SUCCESS and state(managed) == "unconfigured" and managed.segmenter is None
    topics = {p.topic_name for p in managed.publishers}
    assert "/ssp/mask" not in topics and "~/reset" in {s.srv_name for s in managed.services}, "made once"
    assert managed.trigger_configure() == SUCCESS, "configure again after cleanup (QoS override parameters stay)"
    assert managed.trigger_activate() == SUCCESS


def test_the_stabiliser_mode_listens_to_both_inputs_only_while_active(context, tmp_path) -> None:
    """``node.mode: stabilise`` under the lifecycle: camera and mask subscriptions come with activate and go with
    deactivate, and an image waiting for its mask at deactivate is counted as dropped, never paired later."""
    config = node_config(tmp_path, node={"mode": "stabilise", "mask_topic": "/segmenter/mask"})
    node = LifecycleSegmentationNode(context=context, parameter_overrides=[Parameter("config_file", value=str(config))])
    try:
        assert node.trigger_configure() == SUCCESS
        segmenter = node.segmenter
        assert isinstance(segmenter, StabilisingNode) and not list(node.subscriptions)
        topics = {p.topic_name for p in node.publishers}
        assert {"/ssp/mask", "/ssp/overlay"} <= topics and "/ssp/confidence" not in topics, "labels in: no confidence"
        assert node.trigger_activate() == SUCCESS
        assert sorted(s.topic_name for s in node.subscriptions) == ["/camera/image_raw", "/segmenter/mask"]
        image = Image(encoding="rgb8", height=4, width=4, step=12, data=bytes(48))
        image.header.stamp.sec = 7
        segmenter._on_image(image)
        assert segmenter.pairer.waiting(IMAGE) == 1, "the image waits for its mask"
        assert node.trigger_deactivate() == SUCCESS and not list(node.subscriptions)
        assert segmenter.pairer.waiting(IMAGE) == 0
        assert segmenter.monitor.totals[UNPAIRED + CLEARED] == 1, "the waiting image is counted as dropped"
        assert node.trigger_activate() == SUCCESS and len(list(node.subscriptions)) == 2
        assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS
        assert node.segmenter is None and state(node) == "unconfigured"
    finally:
        node.close()
        node.destroy_node()


def test_cleanup_frees_the_model(managed) -> None:
    assert managed.trigger_configure() == SUCCESS
    pipeline = weakref.ref(managed.segmenter.processor.pipeline)
    backend = weakref.ref(managed.segmenter.processor.pipeline.backend)
    closed = []
    backend().close = lambda: closed.append(True)  # the GPU memory and CUDA context of a TensorRT backend
    assert managed.trigger_activate() == SUCCESS and managed.trigger_deactivate() == SUCCESS
    assert managed.trigger_cleanup() == SUCCESS
    assert closed == [True], "cleanup closes the backend"
    gc.collect()
    assert pipeline() is None and backend() is None, "nothing keeps the model alive after cleanup"


@pytest.mark.parametrize("before", ["unconfigured", "inactive", "active"])
def test_shutdown_works_from_every_state(managed, before) -> None:
    if before != "unconfigured":
        assert managed.trigger_configure() == SUCCESS
    if before == "active":
        assert managed.trigger_activate() == SUCCESS
    assert state(managed) == before
    assert managed.trigger_shutdown() == SUCCESS and state(managed) == "finalized"
    assert managed.segmenter is None and not list(managed.subscriptions)


def test_parameters_before_configure_are_validated_and_used(managed) -> None:
    (result,) = managed.set_parameters([Parameter("propagation.max_time_gap_s", value=2.0)])
    assert result.successful
    (result,) = managed.set_parameters([Parameter("propagation.max_time_gap_s", value=100.0)])
    assert not result.successful and "60" in result.reason
    assert managed.trigger_configure() == SUCCESS
    assert managed.segmenter.processor.config.propagation.max_time_gap_s == 2.0


def test_a_failing_configure_is_reported_and_can_be_retried(context, tmp_path, caplog) -> None:
    config = node_config(tmp_path, model={"weights": str(tmp_path / "missing.safetensors")})
    node = LifecycleSegmentationNode(context=context, parameter_overrides=[Parameter("config_file", value=str(config))])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert state(node) == "unconfigured" and node.segmenter is None
        assert node.trigger_shutdown() == SUCCESS
    finally:
        node.close()
        node.destroy_node()


def test_a_bad_camera_qos_override_fails_activate_and_the_node_stays_inactive(context, tmp_path, capfd) -> None:
    config = node_config(tmp_path)
    node = LifecycleSegmentationNode(context=context, parameter_overrides=[
        Parameter("config_file", value=str(config)),
        Parameter("qos_overrides./camera/image_raw.subscription.reliability", value="sometimes")])
    try:
        assert node.trigger_configure() == SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.FAILURE
        assert state(node) == "inactive" and node.segmenter is not None and not node.segmenter.active
        assert not any(p.handle.is_activated for p in node.segmenter.publishers.values())
        assert "activate failed: qos_overrides./camera/image_raw.subscription: Unexpected QoS override" in \
            capfd.readouterr().err
    finally:
        node.close()
        node.destroy_node()


def test_a_configure_that_fails_on_a_publisher_leaves_no_publisher_behind(context, tmp_path) -> None:
    node = LifecycleSegmentationNode(context=context, parameter_overrides=[
        Parameter("config_file", value=str(node_config(tmp_path))),
        Parameter("qos_overrides./ssp/overlay.publisher.reliability", value="sometimes")])
    try:
        before = {p.topic_name for p in node.publishers}
        for _ in range(2):
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert {p.topic_name for p in node.publishers} == before and node.segmenter is None
    finally:
        node.close()
        node.destroy_node()


def test_cleanup_through_the_service_frees_the_model_before_it_answers(context, tmp_path) -> None:
    """As ``ros2 lifecycle set`` does it: the executor spins the node (``spin_once``, as ``main``), a client
    calls change_state. When cleanup answers, nothing the executor holds (services, callbacks) keeps the
    pipeline alive, so the CUDA cache is emptied with the model already gone. ``~/reset`` answers in
    every state."""
    from std_srvs.srv import Trigger

    node = LifecycleSegmentationNode(context=context,
                                     parameter_overrides=[Parameter("config_file", value=str(node_config(tmp_path)))])
    client_node = rclpy.create_node("operator", context=context)
    stop = threading.Event()
    server = SingleThreadedExecutor(context=context)
    server.add_node(node)

    def spin() -> None:
        while not stop.is_set():
            server.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client_node)

    def call(srv_type, name: str, request):  # configure loads the model: nothing to watch, bounded by HUNG_S
        client = client_node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=HUNG_S), name
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=HUNG_S)
        assert future.done(), f"{name} did not answer in {HUNG_S:g} s"
        return future.result()

    def change(transition: int) -> bool:
        return call(ChangeState, "/ssp/change_state", ChangeState.Request(transition=Transition(id=transition))).success

    try:
        reply = call(Trigger, "/ssp/reset", Trigger.Request())
        assert not reply.success and "unconfigured" in reply.message
        assert change(Transition.TRANSITION_CONFIGURE) and change(Transition.TRANSITION_ACTIVATE)
        pipeline = weakref.ref(node.segmenter.processor.pipeline)
        assert call(Trigger, "/ssp/reset", Trigger.Request()).success
        assert change(Transition.TRANSITION_DEACTIVATE) and change(Transition.TRANSITION_CLEANUP)
        assert pipeline() is None, "the model is freed when cleanup answers"
    finally:
        stop.set()
        spinner.join(timeout=HUNG_S)
        server.shutdown()
        executor.shutdown()
        client_node.destroy_node()
        node.close()
        node.destroy_node()


class LifecycleViewer(Viewer):
    """The rclpy test viewer with the node's lifecycle service clients."""

    def __init__(self, domain: int) -> None:
        super().__init__(domain)
        self.change_client = self.node.create_client(ChangeState, "/ssp/change_state")
        self.state_client = self.node.create_client(GetState, "/ssp/get_state")

    def state(self) -> int:
        return self.call(self.state_client, GetState.Request(), "get_state", resend_s=5.0).current_state.id

    def change(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.call(self.change_client, request, "change_state").success

    def wait_for_camera(self, subscribed: bool) -> None:
        wait_until(lambda: bool(self.camera.get_subscription_count()) == subscribed,
                   f"the node to {'subscribe to' if subscribed else 'unsubscribe from'} the camera")


@pytest.mark.slow
def test_the_managed_node_through_its_lifecycle_services(tmp_path, frames, domain) -> None:
    config = node_config(tmp_path)
    log = tmp_path / "node.log"
    viewer = LifecycleViewer(domain)
    node = start_node(config, domain, log, "--", "--lifecycle")
    try:
        wait_for_start(node, log, lambda: viewer.state_client.wait_for_service(timeout_sec=0.1),
                       "the node's get_state service")
        assert viewer.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert viewer.change(Transition.TRANSITION_CONFIGURE) and viewer.state() == State.PRIMARY_STATE_INACTIVE
        assert viewer.camera.get_subscription_count() == 0, "inactive: not subscribed"
        assert viewer.change(Transition.TRANSITION_ACTIVATE)
        viewer.wait_for_camera(subscribed=True)
        viewer.handshake(frames[0])
        last = viewer.send(frames[1])

        assert viewer.change(Transition.TRANSITION_DEACTIVATE)
        viewer.wait_for_camera(subscribed=False)
        before = len(viewer.order)
        for frame in frames[2:6]:
            viewer.publish(frame, viewer.now_ns())
        time.sleep(1.0)
        assert len(viewer.order) == before, "nothing is published while inactive"

        assert viewer.change(Transition.TRANSITION_ACTIVATE)
        viewer.wait_for_camera(subscribed=True)
        sent = viewer.handshake(frames[6], lambda attempt: last + attempt * 1_000_000)  # 1 ms after the last frame:
        stamps = [last + sent * 1_000_000] + [viewer.send(f) for f in frames[7:9]]  # no time gap resets it
        expected = reference_masks(config, frames[6:9], stamps)  # a fresh pipeline: the state went at deactivate
        for stamp, want in zip(stamps, expected):
            got = viewer.outputs["mask"][stamp]
            assert bytes(got.data) == want.tobytes(), f"mask of {stamp} differs from a fresh start's"
        viewer.wait_for(lambda: bool(viewer.diagnostics) and viewer.last_status("propagation").get(
            f"resets: {REQUESTED}") == "1", "the deactivation's reset in /diagnostics")

        assert viewer.change(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert viewer.state() == State.PRIMARY_STATE_FINALIZED
        viewer.wait_for_camera(subscribed=False)
        assert node.poll() is None, "finalized, the process waits to be stopped"
        code = stop_node(node, signal.SIGINT)
        assert code == 0, log.read_text()
    finally:
        stop_node(node)
        viewer.close()
