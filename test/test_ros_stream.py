import random
import threading
import time
from collections import Counter

import cv2
import numpy as np
import pytest
import torch
from hostile import DAMAGE, damage_image
from node_harness import HUNG_S, wait_for_progress
from rosbags.typesys import Stores, get_typestore

from ssp_ros.backends.torch_backend import TorchBackend
from ssp_ros.classes import load_class_set
from ssp_ros.config import ModelConfig, NodeConfig, PropagationConfig, SspConfig
from ssp_ros.errors import ConfigError
from ssp_ros.models import build_ssp
from ssp_ros.pipeline import Pipeline
from ssp_ros.propagation import BACKWARDS_TIME, FIRST_FRAME, REQUESTED
from ssp_ros.ros.images import (
    BAD_STAMP,
    BAD_STEP,
    EMPTY_IMAGE,
    SHORT_DATA,
    TOO_LARGE,
    TRUNCATED_JPEG,
    UNDECODABLE,
    UNSUPPORTED_ENCODING,
    RosbagsMessages,
    message_to_rgb,
)
from ssp_ros.ros.stream import (
    DUPLICATE,
    FUTURE,
    NOT_NEWER,
    REJECTED,
    STALE,
    FrameSlot,
    Skipped,
    StreamOutput,
    StreamProcessor,
    is_stale,
)

INPUT = (32, 64)  # the smallest model input: this file tests the stream logic, not the model
TS = get_typestore(Stores.ROS2_HUMBLE)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    torch.manual_seed(0)
    return TorchBackend(build_ssp(ModelConfig(input_size=INPUT), 8), INPUT)


def processor(backend, node: NodeConfig | None = None, **propagation) -> StreamProcessor:
    cfg = SspConfig(propagation=PropagationConfig(**propagation))
    return StreamProcessor(Pipeline(cfg, backend), load_class_set("uavid"), RosbagsMessages(TS), node or NodeConfig())


def header(stamp: float, nanosec: int | None = None) -> Header:
    ns = round(stamp * 1e9)
    return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000 if nanosec is None else nanosec),
                  frame_id="camera")


def rgb8(frame: np.ndarray, stamp: float) -> Image:
    h, w = frame.shape[:2]
    return Image(header=header(stamp), height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                 data=np.ascontiguousarray(frame).reshape(-1))


def test_slot_keeps_the_newest_and_counts_what_it_drops() -> None:
    slot: FrameSlot[int] = FrameSlot()
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.take(0) == 3 and slot.dropped == 2
    assert slot.take(0.01) is None


def test_slot_between_threads_loses_nothing_uncounted() -> None:
    slot: FrameSlot[int] = FrameSlot()
    taken: list[int] = []

    def consume() -> None:
        while (item := slot.take()) is not None:  # no timeout: only close() ends the wait for the next item
            taken.append(item)
            time.sleep(0.0005)

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    for i in range(2000):
        slot.put(i)
    wait_for_progress(lambda: bool(taken) and taken[-1] == 1999, lambda: len(taken), "the worker to take item 1999")
    slot.close()
    worker.join(HUNG_S)
    assert not worker.is_alive(), "close() wakes the worker"
    assert taken == sorted(taken) and taken[-1] == 1999, "always the newest, never an older one after a newer one"
    assert len(taken) + slot.dropped == 2000 and slot.dropped > 0


def test_stale_policy() -> None:
    assert is_stale(10.0, 10.6, 500.0) and not is_stale(10.0, 10.4, 500.0)
    assert not is_stale(10.0, 1000.0, 0.0), "0 keeps every frame"
    assert not is_stale(12.0, 10.0, 500.0), "a stamp from the future is not stale"


def test_outputs_carry_the_input_header(backend, small_video) -> None:
    proc = processor(backend, NodeConfig(publish_similarity=True))
    first = proc.process(rgb8(small_video[0].image, 5.0))
    second = proc.process(rgb8(small_video[1].image, 5.033))
    assert isinstance(first, StreamOutput) and isinstance(second, StreamOutput)
    assert first.result.reset_reason == FIRST_FRAME and first.similarity is None
    assert second.result.fused and second.similarity.encoding == "mono8"
    for msg, encoding in ((second.mask, "mono8"), (second.confidence, "mono8"), (second.overlay, "bgr8")):
        assert msg.encoding == encoding and (msg.height, msg.width) == (120, 200)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (5, 33_000_000)
        assert msg.header.frame_id == "camera"
    np.testing.assert_array_equal(second.mask.data.reshape(120, 200), second.result.mask)
    np.testing.assert_array_equal(message_to_rgb(second.overlay), second.frame * 0 + message_to_rgb(second.overlay))
    assert not np.array_equal(message_to_rgb(second.overlay), second.frame), "the overlay is coloured"
    assert set(second.timings_ms) == {"convert", "messages"} and min(second.timings_ms.values()) > 0
    third = proc.process(rgb8(small_video[2].image, 5.066), outputs=frozenset({"mask", "similarity"}))
    assert third.overlay is None and third.confidence is None
    assert third.mask.encoding == third.similarity.encoding == "mono8"
    aged = proc.process(rgb8(small_video[3].image, 5.1), now=5.125)
    assert aged.timings_ms["age"] == pytest.approx(25.0)
    quiet = processor(backend, NodeConfig())  # publish_similarity off: never built, even when named
    quiet.process(rgb8(small_video[0].image, 5.0))
    assert quiet.process(rgb8(small_video[1].image, 5.033), outputs=frozenset({"similarity"})).similarity is None
    assert quiet.pipeline.process(small_video[2].image, 5.066).similarity is None


def test_stale_duplicate_and_backwards_frames(backend, small_video) -> None:
    proc = processor(backend, NodeConfig(max_age_ms=200.0), reset_on_backwards_time=False)
    image = small_video[0].image
    assert isinstance(proc.process(rgb8(image, 1.0), now=1.05), StreamOutput)
    stale = proc.process(rgb8(image, 1.1), now=1.5)
    assert isinstance(stale, Skipped) and stale.reason == STALE and "400 ms old > max_age_ms 200" in stale.detail
    assert proc.process(rgb8(image, 1.0), now=1.05).reason == DUPLICATE
    assert proc.process(rgb8(image, 0.99), now=1.05).reason == NOT_NEWER
    assert proc.skipped == Counter({STALE: 1, DUPLICATE: 1, NOT_NEWER: 1}) and proc.outputs == 1


@pytest.mark.parametrize("reset_on_backwards_time", [False, True])
def test_a_frame_stamped_far_in_the_future_is_refused_and_blocks_nothing(backend, small_video,
                                                                          reset_on_backwards_time: bool) -> None:
    """#24 D1: sec = 2^31 - 1 is refused against the node's clock, and the frames after it go on as before."""
    proc = processor(backend, NodeConfig(max_age_ms=0.0), reset_on_backwards_time=reset_on_backwards_time)
    assert isinstance(proc.process(rgb8(small_video[0].image, 100.0), now=100.01), StreamOutput)
    future = proc.process(rgb8(small_video[1].image, 2**31 - 1), now=100.04)
    assert isinstance(future, Skipped) and future.reason == FUTURE
    assert "ahead of the node's clock (100.040 s) > max_future_ms 1000" in future.detail
    later = [proc.process(rgb8(small_video[k].image, 100.0 + 0.033 * k), now=100.05 + 0.033 * k) for k in (2, 3)]
    assert all(isinstance(out, StreamOutput) for out in later)
    assert later[1].result.fused, "the stream fuses on as if the bad frame had never come"
    assert proc.skipped == Counter({FUTURE: 1})


def test_the_future_bound_is_a_setting_and_a_stopped_clock_checks_nothing(backend, small_video) -> None:
    proc = processor(backend, NodeConfig(max_age_ms=0.0, max_future_ms=5000.0))
    assert isinstance(proc.process(rgb8(small_video[0].image, 104.0), now=100.0), StreamOutput)
    assert proc.process(rgb8(small_video[1].image, 106.0), now=100.0).reason == FUTURE
    assert isinstance(proc.process(rgb8(small_video[2].image, 107.0), now=0.0), StreamOutput), \
        "sim time before the first /clock message reads 0: no stamp is in its future"


def test_an_oversized_frame_is_a_counted_skip(backend, small_video) -> None:
    proc = processor(backend, NodeConfig(max_pixels=100))
    out = proc.process(rgb8(small_video[0].image, 1.0))
    assert isinstance(out, Skipped) and out.reason == TOO_LARGE and "node.max_pixels 100" in out.detail
    assert proc.skipped == Counter({TOO_LARGE: 1})


def test_backwards_time_resets_when_configured(backend, small_video) -> None:
    proc = processor(backend)
    proc.process(rgb8(small_video[0].image, 2.0))
    out = proc.process(rgb8(small_video[1].image, 1.0))
    assert isinstance(out, StreamOutput) and out.result.reset_reason == BACKWARDS_TIME


def test_reset_request_starts_over(backend, small_video) -> None:
    proc = processor(backend)
    proc.process(rgb8(small_video[0].image, 0.0))
    proc.reset()
    assert proc.process(rgb8(small_video[1].image, 0.033)).result.reset_reason == REQUESTED


def test_fallback_converts_unknown_encodings(backend, small_video) -> None:
    proc = processor(backend)
    proc.fallback = lambda msg: small_video[0].image
    msg = rgb8(small_video[0].image, 0.0)
    msg.encoding = "32FC1"
    assert isinstance(proc.process(msg), StreamOutput)


def test_reconfigure_in_flight(backend) -> None:
    proc = processor(backend)
    cfg = proc.reconfigure({"registration.min_inliers": 40, "propagation.max_time_gap_s": 2, "node.max_age_ms": 0})
    assert proc.pipeline.cfg.registration.min_inliers == 40 and cfg.registration.min_inliers == 40
    assert proc.pipeline.cfg.propagation.max_time_gap_s == 2.0 and proc.node.max_age_ms == 0.0
    with pytest.raises(ConfigError, match=r"min_inlier_ratio: must be in \[0.0, 1.0\], got 1.5"):
        proc.reconfigure({"registration.min_inlier_ratio": 1.5, "registration.min_inliers": 10})
    assert proc.pipeline.cfg.registration.min_inliers == 40, "nothing applied from a rejected change"
    with pytest.raises(ConfigError, match="node.image_topic: cannot change while the node runs"):
        proc.reconfigure({"node.image_topic": "other"})


def _hostile_stream(frames: list[np.ndarray], count: int, seed: int) -> list[tuple[object, float, tuple]]:
    """(message, now, expected) triples: expected is ("out", stamp_ns) or ("skip", reason)."""
    rng = random.Random(seed)
    clock, last_out = 100.0, None
    stream = []

    def good_image(frame: np.ndarray, stamp: float) -> object:
        kind = rng.choice(["rgb8", "bgr8", "mono8", "bayer", "mono16", "rgba8-padded", "jpeg", "png"])
        h, w = frame.shape[:2]
        if kind in ("jpeg", "png"):
            ok, data = cv2.imencode("." + ("jpg" if kind == "jpeg" else "png"), frame[..., ::-1])
            return CompressedImage(header=header(stamp), format=kind, data=data.reshape(-1))
        if kind == "rgb8":
            return rgb8(frame, stamp)
        pixels, encoding = {
            "bgr8": (frame[..., ::-1], "bgr8"),
            "mono8": (frame[..., 1], "mono8"),
            "bayer": (frame[..., 1], "bayer_rggb8"),
            "mono16": (frame[..., 1].astype(">u2") * 200, "mono16"),
            "rgba8-padded": (np.dstack([frame, frame[..., :1]]), "rgba8"),
        }[kind]
        rows = np.ascontiguousarray(pixels).reshape(h, -1).view(np.uint8)
        pad = 4 if kind == "rgba8-padded" else 0
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
        return Image(header=header(stamp), height=h, width=w, encoding=encoding, is_bigendian=int(kind == "mono16"),
                     step=rows.shape[1], data=rows.reshape(-1))

    for _ in range(count):
        clock += 1 / 30
        now = clock + 0.01
        frame = rng.choice(frames)
        if rng.random() < 0.1:  # resolution flip: still a good frame
            frame = cv2.resize(frame, (160, 96))
        case = rng.choice(["good"] * 12 + ["encoding", "zero", "step", "short", "huge", "truncated", "garbage",
                                           "tiny", "nanosec", "duplicate", "backwards", "stale"])
        if case == "duplicate" and last_out is None:
            case = "good"
        if case == "good":
            stream.append((good_image(frame, clock), now, ("out", round(clock * 1e9))))
            last_out = clock
            continue
        msg = rgb8(frame, clock)
        if case in DAMAGE:
            stream.append((msg, now, ("skip", damage_image(msg, case, rng))))
            continue
        expected = {"truncated": TRUNCATED_JPEG, "garbage": UNDECODABLE, "tiny": REJECTED, "nanosec": BAD_STAMP,
                    "duplicate": DUPLICATE, "backwards": NOT_NEWER, "stale": STALE}[case]
        if case == "truncated":
            ok, data = cv2.imencode(".jpg", frame)
            msg = CompressedImage(header=header(clock), format="jpeg", data=data.reshape(-1)[: rng.randrange(2, 300)])
        elif case == "garbage":
            noise = np.frombuffer(rng.randbytes(rng.randrange(1, 500)), np.uint8)
            msg = CompressedImage(header=header(clock), format=rng.choice(["jpeg", "png", ""]), data=noise)
        elif case == "tiny":
            msg = rgb8(np.zeros((rng.randrange(1, 16), 20, 3), np.uint8), clock)
        elif case == "nanosec":
            msg.header = header(clock, nanosec=rng.choice([1_000_000_000, -1, 2**31]))
        elif case == "duplicate":
            msg = good_image(frame, last_out)
        elif case == "backwards":
            msg = good_image(frame, last_out - rng.uniform(0.001, 0.3))
        elif case == "stale":
            msg = good_image(frame, clock - rng.uniform(0.6, 100.0))
        stream.append((msg, now, ("skip", expected)))
    return stream


@pytest.mark.slow
def test_a_thousand_hostile_messages(backend, small_video) -> None:
    """Bad and hostile messages interleaved with good ones: nothing escapes, every good frame yields one
    output with its stamp, every bad one is counted under its reason."""
    frames = [f.image for f in small_video[:10]]
    stream = _hostile_stream(frames, 1000, seed=7)
    proc = processor(backend, NodeConfig(max_age_ms=500.0), reset_on_backwards_time=False)
    outcomes = [proc.process(msg, now=now) for msg, now, _ in stream]
    expected_skips = Counter(exp[1] for _, _, exp in stream if exp[0] == "skip")
    for i, ((_, _, expected), outcome) in enumerate(zip(stream, outcomes)):
        if expected[0] == "out":
            assert isinstance(outcome, StreamOutput), (i, outcome)
            assert outcome.stamp_ns == expected[1]
            stamp = outcome.mask.header.stamp
            assert stamp.sec * 10**9 + stamp.nanosec == expected[1]
        else:
            assert isinstance(outcome, Skipped) and outcome.reason == expected[1], (i, expected, outcome)
    good = sum(exp[0] == "out" for _, _, exp in stream)
    assert proc.outputs == good and sum(proc.skipped.values()) == len(stream) - good
    assert proc.skipped == expected_skips
    kinds = {UNSUPPORTED_ENCODING, EMPTY_IMAGE, BAD_STEP, SHORT_DATA, TOO_LARGE, TRUNCATED_JPEG, UNDECODABLE,
             REJECTED, BAD_STAMP, DUPLICATE, NOT_NEWER, STALE}
    assert set(expected_skips) == kinds, "every kind of bad message occurred"
    assert set(proc.last_problem) == set(expected_skips)


def test_disabling_propagation_in_flight(backend, small_video) -> None:
    proc = processor(backend)
    proc.process(rgb8(small_video[0].image, 0.0))
    proc.reconfigure({"propagation.enabled": False})
    out = proc.process(rgb8(small_video[1].image, 0.033))
    assert not out.result.fused and out.result.registration is None
