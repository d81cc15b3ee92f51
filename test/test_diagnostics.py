import numpy as np

from ssp_ros.pipeline import FrameResult
from ssp_ros.propagation import DISABLED, FIRST_FRAME, REGISTRATION_FAILED
from ssp_ros.registration import Registration
from ssp_ros.ros.diagnostics import ERROR, NAMES, OK, STALE_LEVEL, WARN, StreamMonitor
from ssp_ros.ros.images import UNSUPPORTED_ENCODING
from ssp_ros.ros.stream import STALE, Skipped, StreamOutput


def output(fused: bool, reason: str = "", inliers: int = 80, total_ms: float = 20.0) -> StreamOutput:
    result = FrameResult(stamp=0.0, mask=np.zeros((2, 2), np.uint8), confidence=np.zeros((2, 2), np.uint8),
                         similarity=None, fused=fused, reset_reason=reason,
                         registration=Registration(np.eye(3), inliers, 100, inliers / 100, True),
                         timings_ms={"segmenter": total_ms - 5, "registration": 5.0, "total": total_ms},
                         registration_ms=None if not fused else 9.0)
    return StreamOutput(header=None, stamp_ns=0, frame=np.zeros((2, 2, 3), np.uint8), result=result, mask=None,
                        confidence=None, overlay=None, similarity=None,
                        timings_ms={"transit": 4.0, "convert": 1.0, "messages": 2.0, "wait": 3.0, "publish": 0.5})


def by_name(monitor: StreamMonitor, now: float) -> dict:
    items = monitor.items(now)
    assert [i.name for i in items] == list(NAMES)
    return {i.name: i for i in items}


def test_healthy_stream_reports_rates_latency_and_inliers() -> None:
    monitor = StreamMonitor("torch", "/camera/image_raw", window_s=2.0)
    for k in range(60):  # 30 fps for 2 s
        t = (k + 1) / 30
        monitor.received(t)
        monitor.outcome(t, output(k > 0, "" if k else FIRST_FRAME, inliers=60 + k % 3, total_ms=10.0 + k % 5))
    items = by_name(monitor, 2.01)
    assert items["input"].level == OK and items["input"].message == "30.0 fps in"
    processing = dict(items["processing"].values)
    assert items["processing"].level == OK and processing["output fps"] == "30.0" and processing["backend"] == "torch"
    assert processing["latency total ms (median / max)"] == "12.0 / 14.0"
    assert processing["latency wait ms (median / max)"] == "3.0 / 3.0"
    assert processing["latency transit ms (median / max)"] == "4.0 / 4.0"
    assert processing["latency publish ms (median / max)"] == "0.5 / 0.5"
    assert processing["latency registration ms (median / max)"] == "5.0 / 5.0", "the wait for the thread"
    assert processing["registration in its thread ms (median / max)"] == "9.0 / 9.0"
    propagation = dict(items["propagation"].values)
    assert items["propagation"].level == OK and propagation["registration inliers (median / min)"] == "61 / 60"
    assert propagation["resets: first frame"] == "1"


def test_silence_bad_input_and_drops_raise_the_level() -> None:
    monitor = StreamMonitor("torch", "/cam", window_s=1.0)
    assert by_name(monitor, 10.0)["input"].level == STALE_LEVEL
    for k in range(10):
        t = 10 + k / 10
        monitor.received(t)
        monitor.outcome(t, Skipped(UNSUPPORTED_ENCODING, "Image encoding '32FC1' is not supported"))
    items = by_name(monitor, 10.95)
    assert items["input"].level == WARN and "10 bad messages skipped" in items["input"].message
    assert dict(items["input"].values)["last problem: unsupported encoding"].startswith("Image encoding '32FC1'")
    assert items["processing"].level == ERROR, "messages in and nothing out"
    for k in range(10):
        t = 12 + k / 10
        monitor.received(t)
        monitor.outcome(t, Skipped(STALE, "900 ms old") if k % 3 else output(True))
        monitor.superseded(t)
    items = by_name(monitor, 12.95)
    assert items["processing"].level == WARN and "dropping" in items["processing"].message
    assert dict(items["input"].values)["dropped (stale)"] == "6"


def test_propagation_warns_when_it_keeps_starting_over() -> None:
    monitor = StreamMonitor("onnxruntime", "/cam", window_s=1.0)
    for k in range(10):
        monitor.received(k / 10)
        monitor.outcome(k / 10, output(k % 4 == 0, "" if k % 4 == 0 else REGISTRATION_FAILED))
    item = by_name(monitor, 0.95)["propagation"]
    assert item.level == WARN and "mostly registration failed" in item.message
    disabled = StreamMonitor("torch", "/cam", window_s=1.0)
    for k in range(10):
        disabled.outcome(k / 10, output(False, DISABLED))
    assert by_name(disabled, 0.95)["propagation"].level == OK


def test_cumulative_counters_account_for_every_message() -> None:
    """received = published + skipped + in flight, from the counters alone (#24): no arithmetic on rates."""
    monitor = StreamMonitor("torch", "/cam", window_s=1.0)
    for k in range(7):
        monitor.received(k / 10)
    monitor.superseded(0.1)  # the slot replaced one unprocessed frame
    for k in range(3):
        monitor.outcome(0.2 + k / 10, output(k > 0))
    monitor.outcome(0.6, Skipped(STALE, "900 ms old"))
    monitor.outcome(0.6, Skipped(UNSUPPORTED_ENCODING, "32FC1"))
    values = dict(by_name(monitor, 0.7)["input"].values)
    assert (values["received"], values["published"], values["skipped"], values["in flight"]) == ("7", "3", "3", "1")
    assert values["dropped (newer frame waiting)"] == "1" and values["skipped: unsupported encoding"] == "1"
    later = dict(by_name(monitor, 60.0)["input"].values)  # long after the window: the totals stay
    assert later["received"] == "7" and later["published"] == "3"
