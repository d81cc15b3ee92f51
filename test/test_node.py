
import time

import numpy as np
import pytest
from node_harness import HUNG_S, wait_until

from ssp_ros.ros import main, node, rclpy_transport
from ssp_ros.ros.stream import Skipped


def test_node_without_ros_explains_what_to_source(capsys, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rclpy", None)  # as on a machine without ROS: `import rclpy` fails
    assert main.main([]) == 1
    assert "rclpy is not importable: source a ROS 2 installation" in capsys.readouterr().err


@pytest.mark.parametrize("module", [main, node, rclpy_transport])
def test_node_modules_import_no_ros_at_top_level(module) -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(module.__file__).read_text())
    top = {alias.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for alias in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    ros = {"rclpy", "sensor_msgs", "std_srvs", "rcl_interfaces", "diagnostic_msgs", "std_msgs", "builtin_interfaces",
           "vision_msgs", "cv_bridge", "cyclonedds"}
    assert not top & ros, "ROS packages are imported inside the functions that need them"


class _MemoryTransport:
    """``transport.Transport`` in memory (rosbags messages): what the node publishes, per topic."""

    node_name = "ssp"

    def __init__(self, subscribers: int | dict[str, int] = 1) -> None:
        from rosbags.typesys import Stores, get_typestore

        from ssp_ros.ros.dds_transport import RosbagsBuilder

        self.typestore = get_typestore(Stores.ROS2_HUMBLE)
        self.messages = RosbagsBuilder(self.typestore, self.node_name)
        self.sent: dict[str, list] = {}
        self.subscriptions: dict[str, tuple] = {}
        self.logs: list[tuple[str, str]] = []
        self.subscribers = subscribers  # per topic, or one count for every topic
        self.clock = 0.0
        self.running = True  # ok(): False once "the middleware" is shutting down

    def resolve(self, topic):
        from ssp_ros.ros.transport import resolve_name

        return resolve_name(topic, self.node_name)

    def subscribe(self, topic, msg_type, qos, callback):
        self.subscriptions[self.resolve(topic)] = (msg_type, qos, callback)
        return self.resolve(topic)

    def publisher(self, topic, msg_type, qos):
        resolved = self.resolve(topic)
        sent = self.sent.setdefault(resolved, [])
        transport = self

        class _Pub:
            closed = False

            def publish(self, msg):
                assert not self.closed, "published after destroy"
                sent.append(msg)

            def subscription_count(self):
                count = transport.subscribers
                return count.get(resolved, 0) if isinstance(count, dict) else count

        return _Pub()

    def destroy(self, entity):
        if isinstance(entity, str):
            del self.subscriptions[entity]
        else:
            entity.closed = True

    def ok(self):
        return self.running

    def now(self):
        return self.clock

    def log(self, level, text):
        self.logs.append((level, text))

    def image(self, header, pixels, encoding):
        return self.messages.image(header, pixels, encoding)

    def diagnostics(self, stamp_ns, items, hardware_id):
        return self.messages.diagnostics(stamp_ns, items, hardware_id)


def test_node_logic_on_a_transport_publishes_outputs_and_diagnostics(small_video) -> None:
    from dataclasses import replace

    from test_ros_stream import rgb8

    from ssp_ros.config import ModelConfig, NodeConfig, SspConfig
    from ssp_ros.pipeline import STAGES
    from ssp_ros.ros.transport import SENSOR_DATA

    cfg = SspConfig(model=ModelConfig(input_size=(32, 64)), node=replace(NodeConfig(), image_topic="camera/image",
                                                                            max_age_ms=100.0))
    transport = _MemoryTransport(subscribers={"/ssp/mask": 1})
    segmenter = node.SegmentationNode(transport, cfg)
    try:
        msg_type, qos, callback = transport.subscriptions["/camera/image"]
        assert msg_type == "sensor_msgs/msg/Image" and qos == SENSOR_DATA
        transport.clock = 10.05
        segmenter.process(rgb8(small_video[0].image, 10.0))
        segmenter.process(rgb8(small_video[1].image, 9.0))  # 1.05 s old at 10.05: stale, counted and logged
        segmenter.publish_diagnostics()
    finally:
        segmenter.close()
    assert set(transport.sent) == {"/ssp/mask", "/ssp/overlay", "/ssp/confidence", "/diagnostics"}
    mask = transport.sent["/ssp/mask"][0]
    assert (mask.header.stamp.sec, mask.height, mask.width) == (10, *small_video[0].image.shape[:2])
    assert transport.sent["/ssp/overlay"] == transport.sent["/ssp/confidence"] == [], \
        "no output is built while nobody subscribes to it"
    status = {s.name: s for s in transport.sent["/diagnostics"][-1].status}
    assert set(status) == {"ssp: input", "ssp: processing", "ssp: propagation"}
    assert status["ssp: processing"].hardware_id == "torch"
    latency = [v.key for v in status["ssp: processing"].values if v.key.startswith("latency ")]
    stages = [stage for stage in STAGES if stage != "fusion"]  # one frame, the first: nothing to fuse with
    assert latency == [f"latency {stage} ms (median / max)" for stage in
                       ("transit", "wait", "convert", *stages, "total", "messages", "publish")]
    assert ("warning", "skipped a frame (stale): 1050 ms old > max_age_ms 100") in transport.logs


def _small_node(transport):
    from ssp_ros.config import ModelConfig, SspConfig

    return node.SegmentationNode(transport, SspConfig(model=ModelConfig(input_size=(32, 64))))


def test_undecodable_samples_are_counted_and_their_log_is_throttled() -> None:
    """A transport's undecodable sample is received and skipped on /diagnostics; the log says it once per
    LOG_THROTTLE_S with a count of the lines held back (#24 D7)."""
    from ssp_ros.ros.transport import BadSample

    transport = _MemoryTransport()
    segmenter = _small_node(transport)
    try:
        callback = transport.subscriptions["/image"][2]
        for k in range(30):
            callback(BadSample("/image", f"a 12-byte sample on /image does not decode ({k})"))
        values = dict(segmenter.monitor.items(time.monotonic())[0].values)
    finally:
        segmenter.close()
    assert (values["received"], values["skipped"], values["skipped: undecodable sample"]) == ("30", "30", "30")
    assert values["in flight"] == "0" and values["published"] == "0"
    warnings = [text for level, text in transport.logs if level == "warning"]
    assert warnings == ["skipped a frame (undecodable sample): a 12-byte sample on /image does not decode (0)"]
    throttle = segmenter._throttle
    throttle._last["skipped: undecodable sample"] -= node.LOG_THROTTLE_S  # the period has passed
    segmenter._log_skip(Skipped("undecodable sample", "the next one"))
    assert transport.logs[-1] == ("warning", "skipped a frame (undecodable sample): the next one (and 29 more like "
                                             f"it in the last {node.LOG_THROTTLE_S:g} s)")


def test_each_kind_of_skip_is_logged_on_its_own(small_video) -> None:
    """A flood of one bad kind does not hide another kind: throttled per reason."""
    from test_ros_stream import rgb8

    transport = _MemoryTransport()
    segmenter = _small_node(transport)
    try:
        for k in range(20):
            bad = rgb8(small_video[0].image, 1.0 + k)
            bad.encoding = "32FC1"
            segmenter.process(bad)
        tiny = rgb8(np.zeros((4, 20, 3), np.uint8), 50.0)
        segmenter.process(tiny)
    finally:
        segmenter.close()
    warnings = [text.split(":")[0] for level, text in transport.logs if level == "warning"]
    assert warnings == ["skipped a frame (unsupported encoding)", "skipped a frame (frame rejected)"]


def test_a_publish_that_fails_in_a_shutdown_is_not_an_error(small_video) -> None:
    """#24 D6: SIGINT shuts the middleware down under a frame in flight; its failed publish is not logged as an
    error. The same failure while the middleware runs is one."""
    from test_ros_stream import rgb8

    class Closed(Exception):
        pass

    transport = _MemoryTransport()
    segmenter = _small_node(transport)
    try:
        def refuse(msg):
            raise Closed("publisher's context is invalid")

        for publisher in segmenter.publishers.values():
            publisher.publish = refuse
        transport.running = False
        segmenter.process(rgb8(small_video[0].image, 1.0))
        assert segmenter.publish_errors == 0 and not [log for log in transport.logs if log[0] == "error"]
        transport.running = True
        segmenter.process(rgb8(small_video[1].image, 1.033))
        assert segmenter.publish_errors == 1
        assert [text for level, text in transport.logs if level == "error"] == [
            "publishing the outputs of stamp 1033000000 failed: Closed(\"publisher's context is invalid\")"]
    finally:
        segmenter.close()


def hold_frames(segmenter) -> tuple:
    """Make ``segmenter``'s worker hold each frame until ``release`` is set: the (entered, release) events."""
    import threading

    entered, release = threading.Event(), threading.Event()
    process = segmenter.process

    def held(msg):
        entered.set()
        assert release.wait(HUNG_S)
        process(msg)

    segmenter.process = held
    return entered, release


def test_deactivate_waits_for_the_frame_in_flight_then_publishes_nothing(small_video) -> None:
    """The managed node's deactivate: the frame being processed still comes out, the subscription goes, a frame
    already waiting is dropped, the propagation state is dropped, and nothing is published until activate."""
    import threading

    from test_ros_stream import rgb8

    from ssp_ros.config import ModelConfig, SspConfig

    transport = _MemoryTransport()
    segmenter = node.SegmentationNode(transport, SspConfig(model=ModelConfig(input_size=(32, 64))), active=False)
    entered, release = hold_frames(segmenter)
    try:
        assert transport.subscriptions == {}, "built inactive: not subscribed"
        segmenter.activate()
        callback = transport.subscriptions["/image"][2]
        callback(rgb8(small_video[0].image, 1.0))
        assert entered.wait(HUNG_S), "the worker took the frame"
        callback(rgb8(small_video[1].image, 1.1))  # waits in the slot behind the frame in flight
        done = threading.Event()
        threading.Thread(target=lambda: (segmenter.deactivate(), done.set()), daemon=True).start()
        assert not done.wait(0.3), "deactivate waits for the frame in flight"
        release.set()
        assert done.wait(HUNG_S) and not segmenter.active
        assert [m.header.stamp.sec for m in transport.sent["/ssp/mask"]] == [1], "the frame in flight came out"
        assert transport.subscriptions == {} and segmenter.processor.pipeline.propagator._requested, "state dropped"
        segmenter.slot.put(rgb8(small_video[2].image, 1.2))  # e.g. a callback that raced the unsubscribe
        time.sleep(0.8)  # > the worker's 0.5 s take timeout
        assert len(transport.sent["/ssp/mask"]) == 1, "nothing is processed or published while inactive"
        segmenter.activate()
        transport.subscriptions["/image"][2](rgb8(small_video[3].image, 1.3))
        wait_until(lambda: len(transport.sent["/ssp/mask"]) >= 2, "the frame after activate to come out")
        assert [m.header.stamp.sec for m in transport.sent["/ssp/mask"]] == [1, 1]
        assert transport.sent["/ssp/mask"][1].header.stamp.nanosec == 300_000_000
    finally:
        segmenter.close()
    assert transport.subscriptions == {}, "close unsubscribes"


def _memory_segmenter(**settings):
    """An inactive SegmentationNode (small untrained model) on the memory transport."""
    from dataclasses import replace

    from ssp_ros.config import ModelConfig, NodeConfig, SspConfig

    transport = _MemoryTransport()
    cfg = SspConfig(model=ModelConfig(input_size=(32, 64)), node=replace(NodeConfig(), **settings))
    return transport, node.SegmentationNode(transport, cfg, active=False)


def test_a_frame_taken_before_a_deactivation_is_not_processed_after_it(small_video) -> None:
    """deactivate → activate in quick succession while the worker holds a frame it took before: that frame
    belongs to the dropped state and must not come out."""
    import threading

    from test_ros_stream import rgb8

    transport, segmenter = _memory_segmenter()
    entered, go = threading.Event(), threading.Event()
    held = [rgb8(small_video[0].image, 1.0)]

    def take(timeout=None):
        if threading.current_thread().name != "ssp_worker":
            return None  # deactivate's drain of the slot
        if held:
            entered.set()
            assert go.wait(HUNG_S)
            return held.pop()
        time.sleep(0.05)
        return None

    segmenter.slot.take = take
    try:
        segmenter.activate()
        assert entered.wait(HUNG_S), "the worker is inside take"
        segmenter.deactivate()
        segmenter.activate()
        go.set()
        time.sleep(0.5)
        assert transport.sent["/ssp/mask"] == [], "the frame from before the deactivation was dropped"
    finally:
        go.set()
        segmenter.close()


def test_deactivate_waits_for_a_diagnostics_message_in_flight() -> None:
    import threading

    transport, segmenter = _memory_segmenter(diagnostics_period_s=0.05)
    entered, release = threading.Event(), threading.Event()
    publish = segmenter.publish_diagnostics

    def held() -> None:
        entered.set()
        assert release.wait(HUNG_S)
        publish()

    segmenter.publish_diagnostics = held
    try:
        segmenter.activate()
        assert entered.wait(HUNG_S), "the diagnostics thread is publishing"
        done = threading.Event()
        threading.Thread(target=lambda: (segmenter.deactivate(), done.set()), daemon=True).start()
        assert not done.wait(0.3), "deactivate waits for the diagnostics message in flight"
        release.set()
        assert done.wait(HUNG_S)
        count = len(transport.sent["/diagnostics"])
        time.sleep(0.3)  # six diagnostics periods
        assert len(transport.sent["/diagnostics"]) == count == 1, "none after deactivate returned"
    finally:
        release.set()
        segmenter.close()


def test_close_closes_the_backend_once_its_worker_has_stopped(monkeypatch) -> None:
    """The backend's GPU memory and CUDA context go when the node closes, not at some later collection; closing
    again is harmless."""
    from ssp_ros.backends import make_backend

    closed = []

    def recording_backend(cfg, num_classes):
        backend = make_backend(cfg, num_classes)
        monkeypatch.setattr(backend, "close", lambda: closed.append(segmenter_threads_alive()), raising=False)
        return backend

    monkeypatch.setattr(node, "make_backend", recording_backend)
    transport, segmenter = _memory_segmenter()

    def segmenter_threads_alive() -> bool:
        return any(thread.is_alive() for thread in segmenter._threads)

    segmenter.close()
    segmenter.close()
    assert closed == [False], "closed once, after the worker and diagnostics threads stopped"


def test_close_says_which_thread_did_not_stop(small_video, monkeypatch) -> None:
    """A worker still inside a frame when close() gives up on it is named in the log (not left silently), and the
    backend is closed only once that frame is done."""

    from test_ros_stream import rgb8

    monkeypatch.setattr(node, "THREAD_STOP_WAIT_S", 0.2)
    transport, segmenter = _memory_segmenter()
    entered, release = hold_frames(segmenter)
    log = transport.log

    def log_then_release(level: str, text: str) -> None:  # the frame finishes once close() gave up on the thread
        log(level, text)
        if "did not stop" in text:
            release.set()

    transport.log = log_then_release
    segmenter.activate()
    transport.subscriptions["/image"][2](rgb8(small_video[0].image, 1.0))
    assert entered.wait(HUNG_S), "the worker took the frame"
    segmenter.close()
    assert ("warning", "thread ssp_worker did not stop within 0.2 s") in transport.logs
    assert segmenter._backend is None, "the backend was closed once the frame was done"
