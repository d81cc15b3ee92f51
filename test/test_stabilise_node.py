"""The node's stabiliser mode without ROS: the node logic on an in-memory transport (test_node's), rosbags messages,
and the mask conversions (ssp_ros/ros/masks.py, stabilise_stream.py, stabilise_node.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_node import _MemoryTransport
from test_ros_stream import Image, header, rgb8
from test_stabilise import flicker

from ssp_ros.config import ModelConfig, NodeConfig, SspConfig
from ssp_ros.errors import ConfigError
from ssp_ros.ros.images import UNSUPPORTED_ENCODING, MessageError
from ssp_ros.ros.masks import WRONG_CLASS_COUNT, mask_labels, mask_scores
from ssp_ros.ros.pairing import NO_PARTNER, PARTNER_DROPPED, UNPAIRED
from ssp_ros.ros.stabilise_node import StabilisingNode, make_node
from ssp_ros.ros.stabilise_stream import MASK, MASK_LABELS, MASK_SIZE, class_confidence
from ssp_ros.stabiliser import VOID, VOID_16

K = 8  # uavid's classes


def mask_msg(values: np.ndarray, stamp: float, encoding: str) -> Image:
    """A mask Image of ``values`` (H×W labels, or H×W×K float32 scores), little-endian, unpadded."""
    data = np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<")))
    h, w = values.shape[:2]
    return Image(header=header(stamp), height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=data.nbytes // h, data=data.view(np.uint8).reshape(-1))


def labels_of(frames, seed: int = 0) -> list[np.ndarray]:
    """The synthetic frames' own labels, flickering (test_stabilise's segmenter whose errors come and go)."""
    rng = np.random.default_rng(seed)
    return [flicker(f.labels.astype(np.uint8), rng) for f in frames]


def config(**node) -> SspConfig:
    return SspConfig(model=ModelConfig(input_size=(64, 96)),
                     node=replace(NodeConfig(), mode="stabilise", image_topic="camera/image",
                                  mask_topic="segmenter/mask", max_age_ms=0.0, **node))


@pytest.fixture
def transport() -> _MemoryTransport:
    return _MemoryTransport()


def test_label_images_round_trip_through_the_mask_reader() -> None:
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(mask_labels(mask_msg(labels, 1.0, "mono8")), labels)
    wide = labels.astype(np.uint16) * 1000
    out = mask_labels(mask_msg(wide, 1.0, "mono16"))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, wide)
    with pytest.raises(MessageError, match="mask encoding 'rgb8': class ids come as mono8") as err:
        mask_labels(rgb8(np.zeros((3, 4, 3), np.uint8), 1.0))
    assert err.value.reason == UNSUPPORTED_ENCODING


def test_score_tensors_round_trip_as_k_by_h_by_w() -> None:
    scores = np.random.default_rng(0).random((3, 5, 4), dtype=np.float32)  # h, w, K as the image stores them
    out = mask_scores(mask_msg(scores, 1.0, "32FC4"), 4)
    assert out.shape == (4, 3, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out, scores.transpose(2, 0, 1))
    big = mask_msg(scores.astype(">f4"), 1.0, "32FC4")
    big.is_bigendian, big.data = 1, np.ascontiguousarray(scores.astype(">f4")).view(np.uint8).reshape(-1)
    np.testing.assert_array_equal(mask_scores(big, 4), out)
    with pytest.raises(MessageError, match="4 channels for 8 classes") as err:
        mask_scores(mask_msg(scores, 1.0, "32FC4"), 8)
    assert err.value.reason == WRONG_CLASS_COUNT
    with pytest.raises(MessageError, match="scores come as 32FC<K>"):
        mask_scores(mask_msg(np.zeros((3, 5), np.uint8), 1.0, "mono8"), 4)


def test_confidence_is_the_scores_probability_of_the_published_class() -> None:
    logits = np.log(np.array([[[0.7]], [[0.2]], [[0.1]]], np.float32))  # 3 classes, one cell
    labels = np.array([[0, 1], [2, 0]], np.uint8)
    np.testing.assert_allclose(class_confidence(logits, True, labels), [[179, 51], [26, 179]], atol=1)


def test_the_node_pairs_by_stamp_and_publishes_under_the_camera_header(small_video, transport) -> None:
    """Images and masks arrive in any order; each output carries the camera image's stamp and frame_id, the
    stabilised labels of that stamp's mask; an image whose mask never came and a mask whose image had gone are
    dropped and counted on /diagnostics."""
    frames = small_video[:6]
    labels = labels_of(frames)
    node = make_node(transport, config(pair_wait_ms=1000.0))
    assert isinstance(node, StabilisingNode) and node.hardware_id == "stabiliser"
    try:
        _, _, on_image = transport.subscriptions["/camera/image"]
        _, _, on_mask = transport.subscriptions["/segmenter/mask"]
        stamps = [10.0 + i / 10 for i in range(len(frames))]
        for i in (0, 1, 3, 5):  # frame 2 loses its mask; frame 4's image goes before its mask comes
            if i % 2:
                on_mask(mask_msg(labels[i], stamps[i], "mono8"))
                on_image(rgb8(frames[i].image, stamps[i]))
            else:
                on_image(rgb8(frames[i].image, stamps[i]))
                on_mask(mask_msg(labels[i], stamps[i], "mono8"))
            node.process(node.slot.take(timeout=0))  # the worker's job, here in lock step
            if i == 1:
                on_image(rgb8(frames[2].image, stamps[2]))
                on_image(rgb8(frames[4].image, stamps[4]))
        on_mask(mask_msg(labels[4], stamps[4], "mono8"))  # its image went when the pair of stamp 5 formed
        node.publish_diagnostics()
    finally:
        node.close()
    masks = transport.sent["/ssp/mask"]
    assert [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in masks] == pytest.approx(
        [stamps[i] for i in (0, 1, 3, 5)])
    assert {m.header.frame_id for m in masks} == {"camera"} and {m.encoding for m in masks} == {"mono8"}
    h, w = frames[0].image.shape[:2]
    outs = [np.frombuffer(msg.data, np.uint8).reshape(h, w) for msg in masks]
    np.testing.assert_array_equal(outs[0], labels[0])  # the first frame has nothing to fuse with
    for out, i in zip(outs[1:], (1, 3, 5)):  # later ones drop some of the flicker: closer to the truth
        truth = frames[i].labels
        assert set(np.unique(out)) <= set(range(K)) and (out == truth).mean() > (labels[i] == truth).mean()
    assert len(transport.sent["/ssp/overlay"]) == 4 and "/ssp/confidence" not in transport.sent, \
        "label images carry no probability: no confidence"
    status = {s.name: {kv.key: kv.value for kv in s.values} for s in transport.sent["/diagnostics"][-1].status}
    inputs, masks_status = status["ssp: input"], status["ssp: masks"]
    assert inputs["received"] == "6" and inputs["published"] == "4" and inputs["in flight"] == "0"
    assert inputs[f"skipped: {UNPAIRED}superseded by a newer pair"] == "2", "images 2 and 4"
    assert masks_status["received"] == "5" and masks_status["paired"] == "4"
    assert masks_status[f"dropped: {PARTNER_DROPPED}"] == "1"


def test_an_image_whose_mask_never_comes_is_counted_once_the_wait_is_over(small_video, transport) -> None:
    node = make_node(transport, config(pair_wait_ms=1.0))
    try:
        _, _, on_image = transport.subscriptions["/camera/image"]
        on_image(rgb8(small_video[0].image, 10.0))
        time.sleep(0.01)
        node.publish_diagnostics()  # the diagnostics tick expires it, with both topics silent
    finally:
        node.close()
    status = {s.name: {kv.key: kv.value for kv in s.values} for s in transport.sent["/diagnostics"][-1].status}
    assert status["ssp: input"][f"skipped: {UNPAIRED}{NO_PARTNER}"] == "1"
    assert ("warning", f"dropped the image of stamp 10.000000000 s on /camera/image ({NO_PARTNER}): no mask of its "
                       "stamp within 1 ms") in transport.logs


@pytest.mark.parametrize(("mask", "reason"), [
    (lambda labels: mask_msg(labels, 10.0, "bgr8"), MASK + UNSUPPORTED_ENCODING),
    (lambda labels: mask_msg(labels[:-4], 10.0, "mono8"), MASK_SIZE),
    (lambda labels: mask_msg(np.where(labels == 1, K, labels).astype(np.uint8), 10.0, "mono8"), MASK_LABELS),
])
def test_a_bad_mask_is_counted_skipped_and_logged_by_topic(small_video, transport, mask, reason) -> None:
    labels = labels_of(small_video[:1])[0]
    node = make_node(transport, config())
    try:
        _, _, on_image = transport.subscriptions["/camera/image"]
        _, _, on_mask = transport.subscriptions["/segmenter/mask"]
        on_image(rgb8(small_video[0].image, 10.0))
        on_mask(mask(labels))
        node.process(node.slot.take(timeout=0))
        on_image(rgb8(small_video[1].image, 10.1))  # still running: the next good pair comes out
        on_mask(mask_msg(labels_of(small_video[1:2])[0], 10.1, "mono8"))
        node.process(node.slot.take(timeout=0))
    finally:
        node.close()
    assert node.processor.skipped == {reason: 1} and len(transport.sent["/ssp/mask"]) == 1
    assert any(level == "warning" and f"({reason})" in text for level, text in transport.logs), transport.logs


def test_sixteen_bit_labels_come_back_sixteen_bit_and_unknown_stays_unknown(small_video, transport) -> None:
    labels = labels_of(small_video[:1])[0].astype(np.uint16)
    labels[:10] = VOID
    labels[10:20] = VOID_16  # vision_msgs' unlabelled id of 16-bit class ids: unknown too
    node = make_node(transport, config())
    try:
        _, _, on_image = transport.subscriptions["/camera/image"]
        _, _, on_mask = transport.subscriptions["/segmenter/mask"]
        on_mask(mask_msg(labels, 10.0, "mono16"))
        on_image(rgb8(small_video[0].image, 10.0))
        node.process(node.slot.take(timeout=0))
    finally:
        node.close()
    (msg,) = transport.sent["/ssp/mask"]
    assert msg.encoding == "mono16" and msg.step == 2 * msg.width
    out = np.frombuffer(msg.data, "<u2").reshape(msg.height, msg.width)
    assert (out[:10] == VOID).all() and (out[10:20] == VOID_16).all() and out[20:].max() < K


def test_probabilities_give_a_confidence_under_the_camera_header(small_video, transport) -> None:
    """A 32FC8 probability tensor at half the frame's size: stabilised mask, overlay and confidence come out."""
    labels = labels_of(small_video[:1])[0][::2, ::2]
    scores = np.full((*labels.shape, K), 0.02, np.float32)
    np.put_along_axis(scores, labels[..., None].astype(np.intp), 0.86, axis=2)
    node = make_node(transport, config(mask_input="probabilities"))
    try:
        _, _, on_image = transport.subscriptions["/camera/image"]
        _, _, on_mask = transport.subscriptions["/segmenter/mask"]
        on_image(rgb8(small_video[0].image, 10.0))
        on_mask(mask_msg(scores, 10.0, "32FC8"))
        node.process(node.slot.take(timeout=0))
    finally:
        node.close()
    (confidence,) = transport.sent["/ssp/confidence"]
    assert confidence.encoding == "mono8" and confidence.header.frame_id == "camera"
    values = np.frombuffer(confidence.data, np.uint8)
    assert set(np.unique(values)) <= {5, 219}, "the scores' probability of the class published at each pixel"


def test_propagation_settings_are_refused_in_flight_in_stabilise_mode(transport) -> None:
    node = make_node(transport, config())
    try:
        assert node.processor.reconfigure({"node.max_age_ms": 250.0}).node.max_age_ms == 250.0
        with pytest.raises(ConfigError, match="propagation.max_time_gap_s: cannot change in flight in stabilise"):
            node.processor.reconfigure({"propagation.max_time_gap_s": 1.0})
    finally:
        node.close()


def test_a_classes_file_sets_k_and_the_default_is_the_model_dataset(transport, tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("classes:\n  - {id: 0, name: ground, color: [0, 0, 0]}\n"
                    "  - {id: 1, name: thing, color: [255, 0, 0]}\n")
    node = make_node(transport, config(classes=str(path)))
    try:
        assert node.classes.num_classes == 2 and node.classes.names == ("ground", "thing")
    finally:
        node.close()


def segmenter_config(frames: list, folder: Path) -> tuple[SspConfig, Path]:
    """A node config that runs a one-convolution ONNX segmenter of the frames' size (``node.segmenter``), and the
    segmenter's YAML."""
    from onnx_segmenters import conv_segmenter, segmenter_yaml

    h, w = frames[0].image.shape[:2]
    conv_segmenter(folder / "conv.onnx", (h, w), K)
    spec = segmenter_yaml(folder, model="conv.onnx", input_size=[h, w], mean=[0.5] * 3, std=[0.25] * 3,
                          output="logits", classes="uavid")
    return SspConfig(node=replace(NodeConfig(), image_topic="camera/image", max_age_ms=0.0, segmenter=str(spec))), spec


def test_the_node_runs_and_stabilises_a_segmenter_of_its_own(small_video, transport, tmp_path) -> None:
    """``node.segmenter``: the user's ONNX segmenter runs in the node on each camera image, and the stabiliser over
    it; no mask topic, and mask and overlay only (the stabiliser gives no confidence)."""
    from ssp_ros.segmenter_pipeline import SegmenterPipeline

    cfg, spec = segmenter_config(small_video, tmp_path)
    h, w = small_video[0].image.shape[:2]
    node = make_node(transport, cfg)
    try:
        assert sorted(node.publishers) == ["mask", "overlay"] and list(transport.subscriptions) == ["/camera/image"]
        assert node.hardware_id == "onnxruntime (conv.onnx) + stabiliser"
        _, _, on_image = transport.subscriptions["/camera/image"]
        for i, frame in enumerate(small_video[:4]):
            on_image(rgb8(frame.image, 10.0 + 0.1 * i))
            node.process(node.slot.take(timeout=0))
    finally:
        node.close()
    masks = transport.sent["/ssp/mask"]
    assert len(masks) == 4 and len(transport.sent["/ssp/overlay"]) == 4
    assert [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in masks] == pytest.approx([10.0, 10.1, 10.2,
                                                                                                   10.3])
    same = SegmenterPipeline(cfg, spec)  # the node's masks are exactly what the pipeline gives in process
    for msg, i in zip(masks, range(4)):
        want = same.process(small_video[i].image, 10.0 + 0.1 * i).mask
        np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(h, w), want)


def test_a_segmenter_yaml_is_refused_in_stabilise_mode() -> None:
    with pytest.raises(ConfigError, match="segmenter: stabilise mode takes the masks of mask_topic"):
        NodeConfig(mode="stabilise", segmenter="seg.yaml")


def test_reset_and_parameter_changes_reach_a_segmenter_of_its_own(small_video, transport, tmp_path) -> None:
    """With ``node.segmenter``, ~/reset starts the stabiliser over, a node.* parameter changes in flight, a
    propagation setting is refused by name (the stabiliser reads it at start), and the node deactivates cleanly."""
    cfg, _ = segmenter_config(small_video, tmp_path)
    node = make_node(transport, cfg)
    try:
        _, _, on_image = transport.subscriptions["/camera/image"]
        on_image(rgb8(small_video[0].image, 10.0))
        node.process(node.slot.take(timeout=0))
        node.processor.reset()
        assert node.processor.reconfigure({"node.max_age_ms": 250.0}).node.max_age_ms == 250.0
        with pytest.raises(ConfigError, match="propagation settings cannot change in flight with node.segmenter"):
            node.processor.reconfigure({"propagation.max_time_gap_s": 2.0})
        on_image(rgb8(small_video[1].image, 10.1))
        node.process(node.slot.take(timeout=0))
        node.deactivate()
    finally:
        node.close()
    resets = node.processor.pipeline.propagator.resets
    assert resets.get("reset requested") == 1, resets  # the second frame started over, as asked


def test_a_label_info_topic_gives_the_class_list_and_pairs_wait_for_it(small_video, transport) -> None:
    """``node.label_info_topic``: pairs before the first usable LabelInfo are skipped (counted), an unusable one is
    logged, counted and ignored, a usable one builds the stabiliser (the outputs are an in-process stabiliser's over
    the same pairs), the same list again changes nothing, and another list rebuilds it for its K."""
    from test_label_info import label_info

    from ssp_ros.classes import load_class_set
    from ssp_ros.ros.label_info import LABEL_INFO
    from ssp_ros.ros.stabilise_stream import WAITING_FOR_CLASSES
    from ssp_ros.ros.transport import LATCHED
    from ssp_ros.stabiliser import make_stabiliser

    frames = small_video[:7]
    labels = labels_of(frames)
    stamps = [20.0 + i / 10 for i in range(len(frames))]
    cfg = config(label_info_topic="segmenter/label_info", pair_wait_ms=1000.0)
    node = make_node(transport, cfg)
    uavid = list(enumerate(load_class_set("uavid").names))
    try:
        msg_type, qos, on_label_info = transport.subscriptions["/segmenter/label_info"]
        assert (msg_type, qos) == (LABEL_INFO, LATCHED) and node.classes is None
        assert "classes from the LabelInfo on /segmenter/label_info" in transport.logs[-1][1]
        _, _, on_image = transport.subscriptions["/camera/image"]
        _, _, on_mask = transport.subscriptions["/segmenter/mask"]

        def pair(i: int, values: np.ndarray) -> None:
            on_image(rgb8(frames[i].image, stamps[i]))
            on_mask(mask_msg(values, stamps[i], "mono8"))
            node.process(node.slot.take(timeout=0))

        pair(0, labels[0])  # no class list yet
        on_label_info(label_info([(0, "a"), (1, "b"), (1, "c")]))
        assert node.classes is None and "class_id 1 appears twice" in transport.logs[-1][1]
        on_label_info(label_info(uavid))
        assert node.classes.names == load_class_set("uavid").names
        assert transport.logs[-1] == ("info", "class list from /segmenter/label_info: 8 classes (clutter, building, "
                                              "road, tree, low_vegetation, moving_car, static_car, human)")
        for i in (1, 2, 3):
            pair(i, labels[i])
        on_label_info(label_info(uavid))  # the same list again: the stream goes on
        pair(4, labels[4])
        on_label_info(label_info([(0, "ground"), (1, "building"), (2, "vegetation"), (3, "object")]))
        assert node.classes.num_classes == 4 and "the stream starts over" in transport.logs[-1][1]
        pair(5, labels[5])  # classes 4..7 are not classes any more
        pair(6, labels[6] % 4)
        node.publish_diagnostics()
    finally:
        node.close()
    h, w = frames[0].image.shape[:2]
    outs = [np.frombuffer(m.data, np.uint8).reshape(h, w) for m in transport.sent["/ssp/mask"]]
    assert len(outs) == 5
    reference = make_stabiliser(cfg, K)
    for out, i in zip(outs[:4], (1, 2, 3, 4)):
        np.testing.assert_array_equal(out, reference.process(frames[i].image, labels[i], stamps[i]).labels)
    np.testing.assert_array_equal(outs[4], labels[6] % 4)  # a new stream: its first frame is the input
    status = {s.name: {kv.key: kv.value for kv in s.values} for s in transport.sent["/diagnostics"][-1].status}
    inputs, classes = status["ssp: input"], status["ssp: classes"]
    assert inputs[f"skipped: {WAITING_FOR_CLASSES}"] == "1" and inputs[f"skipped: {MASK_LABELS}"] == "1"
    assert inputs["published"] == "5"
    assert (classes["classes"], classes["received"], classes["lists taken"], classes["refused"]) == ("4", "4", "2", "1")
    assert "appears twice" in classes["last refusal"]


def test_the_class_list_comes_from_one_place() -> None:
    with pytest.raises(ConfigError, match="label_info_topic: the class list comes from one place"):
        config(label_info_topic="segmenter/label_info", classes="uavid")
    with pytest.raises(ConfigError, match="label_info_topic: is read in stabilise mode only"):
        replace(NodeConfig(), label_info_topic="segmenter/label_info")


def test_a_pair_of_the_old_class_list_is_skipped_and_an_unusable_list_leaves_the_node_running(small_video,
                                                                                            transport) -> None:
    """A pair that formed before the first class list waits for it, one that formed before a new list came is
    skipped (its mask numbers the old list's classes), what waits for a partner is dropped, all counted; a list the
    stabiliser cannot take (here K = 2 with ``stabiliser.confidence`` 0.4, not above 1/K) is refused, counted and
    logged, and the node goes on."""
    from test_label_info import label_info

    from ssp_ros.classes import load_class_set
    from ssp_ros.ros.pairing import CLEARED
    from ssp_ros.ros.stabilise_stream import CLASSES_CHANGED, WAITING_FOR_CLASSES

    frames = small_video[:4]
    stamps = [30.0 + i / 10 for i in range(len(frames))]
    cfg = config(label_info_topic="segmenter/label_info", pair_wait_ms=1000.0)
    cfg = replace(cfg, stabiliser=replace(cfg.stabiliser, confidence=0.4))
    node = make_node(transport, cfg)
    try:
        _, _, on_label_info = transport.subscriptions["/segmenter/label_info"]
        _, _, on_image = transport.subscriptions["/camera/image"]
        _, _, on_mask = transport.subscriptions["/segmenter/mask"]
        # the worker's job, here in lock step: each pair is taken as it forms (before the worker can), processed later
        on_image(rgb8(frames[0].image, stamps[0]))
        on_mask(mask_msg(frames[0].labels.astype(np.uint8), stamps[0], "mono8"))
        before_any_list = node.slot.take(timeout=0)
        on_label_info(label_info(list(enumerate(load_class_set("uavid").names))))
        node.process(before_any_list)
        on_image(rgb8(frames[1].image, stamps[1]))
        on_mask(mask_msg(frames[1].labels.astype(np.uint8), stamps[1], "mono8"))
        under_the_old_list = node.slot.take(timeout=0)
        on_image(rgb8(frames[2].image, stamps[2]))  # waits for its mask
        on_label_info(label_info([(0, "ground"), (1, "building"), (2, "vegetation"), (3, "object")]))
        node.process(under_the_old_list)
        on_label_info(label_info([(0, "ground"), (1, "sky")]))
        assert node.classes.num_classes == 4
        refusal = "ignored a LabelInfo on /segmenter/label_info: confidence 0.4: must be above 1/K"
        assert refusal in transport.logs[-1][1]
        on_image(rgb8(frames[3].image, stamps[3]))
        on_mask(mask_msg(frames[3].labels.astype(np.uint8) % 4, stamps[3], "mono8"))
        node.process(node.slot.take(timeout=0))
        node.publish_diagnostics()
    finally:
        node.close()
    assert len(transport.sent["/ssp/mask"]) == 1
    status = {s.name: {kv.key: kv.value for kv in s.values} for s in transport.sent["/diagnostics"][-1].status}
    inputs, classes = status["ssp: input"], status["ssp: classes"]
    assert inputs[f"skipped: {CLASSES_CHANGED}"] == "1" and inputs[f"skipped: {UNPAIRED}{CLEARED}"] == "1"
    assert inputs[f"skipped: {WAITING_FOR_CLASSES}"] == "1", "the pair formed before the first list"
    assert inputs["published"] == "1" and inputs["in flight"] == "0"
    assert (classes["classes"], classes["received"], classes["lists taken"], classes["refused"]) == ("4", "3", "2", "1")
    assert transport.sent["/diagnostics"][-1].status[-1].level == 1, "the newest LabelInfo was refused: WARN"
