import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import untrained_weights
from onnx_segmenters import conv_segmenter, segmenter_yaml

from ssp_ros.cli.main import main
from ssp_ros.config import ModelConfig, NodeConfig, PropagationConfig, SspConfig, load_config
from ssp_ros.ros.images import UNSUPPORTED_ENCODING, image_pixels, stamp_ns
from ssp_ros.ros.stream import REJECTED, STALE, SUPERSEDED
from ssp_ros.tools.bag import (
    SYNTH_IMAGE_TOPIC,
    SYNTH_START_NS,
    BagWriter,
    open_bag,
    records,
    topic_connections,
    write_synthetic_bag,
)
from ssp_ros.tools.replay import CORRUPT, run_replay

INPUT = (32, 64)  # the smallest model input: these tests check the replay, not the model
OUTPUTS = ("/ssp/mask", "/ssp/overlay", "/ssp/confidence")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return untrained_weights(tmp_path_factory.mktemp("weights"), INPUT)


@pytest.fixture(scope="module")
def cfg(weights: Path) -> SspConfig:
    return SspConfig(model=ModelConfig(input_size=INPUT, weights=str(weights)))


@pytest.fixture(scope="module")
def drone_bag(small_video, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "drone.mcap"
    write_synthetic_bag(small_video[:8], path)
    return path


def topic_records(bag: Path, topic: str) -> list:
    with open_bag(bag) as reader:
        return [(r.time_ns, reader.deserialize(r.raw, r.connection.msgtype))
                for r in records(reader, topic_connections(reader, topic, bag), bag)]


def test_replay_writes_every_frame_on_the_input_stamps(cfg, drone_bag: Path, small_video, tmp_path: Path) -> None:
    out = tmp_path / "seg.mcap"
    report = run_replay(cfg, drone_bag, out, progress=False)
    assert report["messages"] == report["frames_out"] == 8 and report["skipped"] == {}
    assert report["resets"] == {}  # the first frame starts the stream: no reset
    assert report["labels"] == "topic /camera/labels" and report["labelled_frames"] == 8
    assert 0 <= report["miou"] <= 100 and 0 <= report["tc"] <= 100 and len(report["tc_per_pair"]) == 7
    assert report["fps"]["pipeline"] > 0 and {"p50", "p90", "p99", "max"} == set(report["latency_ms"]["total"])
    inputs = topic_records(out, SYNTH_IMAGE_TOPIC)
    assert [t for t, _ in inputs] == [SYNTH_START_NS + round(f.stamp * 1e9) for f in small_video[:8]]
    for topic in OUTPUTS:
        outputs = topic_records(out, topic)
        assert [t for t, _ in outputs] == [t for t, _ in inputs], topic
        assert [stamp_ns(m.header) for _, m in outputs] == [stamp_ns(m.header) for _, m in inputs], topic
    masks = [image_pixels(m) for _, m in topic_records(out, "/ssp/mask")]
    assert masks[0].shape == (120, 200) and max(int(m.max()) for m in masks) < 8
    folder = tmp_path / "seg_report"
    assert json.loads((folder / "report.json").read_text())["frames_out"] == 8
    assert "| 8 | 8 |" in (folder / "report.md").read_text() and (folder / "tc_over_time.png").stat().st_size > 0


def broken_bag(path: Path, frames: list, damage: dict[int, str]) -> list[int]:
    """A camera bag of ``frames``, 33 ms apart, some damaged (index → "corrupt": bytes that do not deserialise,
    "32FC1": an encoding replay does not take, "tiny": 8x8 pixels); returns the stamps of the undamaged ones."""
    good = []
    with BagWriter(path) as bag:
        for i, frame in enumerate(frames):
            stamp = SYNTH_START_NS + i * 33_000_000
            image = np.ascontiguousarray(frame.image[:8, :8]) if damage.get(i) == "tiny" else frame.image
            msg = bag.messages.image(bag.messages.header(_Header(stamp)), image, "rgb8")
            if damage.get(i) == "corrupt":
                bag.write_raw(SYNTH_IMAGE_TOPIC, msg.__msgtype__, stamp, b"\x00\x01\x00\x00garbage")
                continue
            if damage.get(i) == "32FC1":
                msg.encoding = "32FC1"
            good += [] if i in damage else [stamp]
            bag.write(SYNTH_IMAGE_TOPIC, stamp, msg)
    return good


def test_corrupt_and_bad_records_are_counted_and_skipped(cfg, small_video, tmp_path: Path) -> None:
    bag_path = tmp_path / "broken.db3"
    good_stamps = broken_bag(bag_path, small_video[:6], {2: "corrupt", 4: "32FC1"})
    report = run_replay(cfg, bag_path, tmp_path / "out.mcap", progress=False)
    assert report["messages"] == 6 and report["frames_out"] == 4
    assert report["skipped"] == {CORRUPT: 1, UNSUPPORTED_ENCODING: 1}
    assert "record at bag time" in report["last_problem"][CORRUPT]
    assert [t for t, _ in topic_records(tmp_path / "out.mcap", "/ssp/mask")] == good_stamps
    assert len(topic_records(tmp_path / "out.mcap", SYNTH_IMAGE_TOPIC)) == 5, "the corrupt record is not copied"
    assert report["labels"] is None and report["miou"] is None and report["image_model"]["miou"] is None
    assert "No labels: TC and the change rate say how steady" in (tmp_path / "out_report" / "report.md").read_text()


class _Header:
    """A header-like object for ``RosbagsMessages.header``."""

    def __init__(self, stamp: int) -> None:
        self.frame_id = "camera"
        self.stamp = type("Stamp", (), {"sec": stamp // 10**9, "nanosec": stamp % 10**9})()


def test_realtime_mode_drops_what_the_node_would_drop(cfg, small_video, tmp_path: Path) -> None:
    bag_path = tmp_path / "fast.mcap"
    stamps = [SYNTH_START_NS + i * 1_000 for i in range(12)]  # a frame per microsecond: faster than any pipeline
    with BagWriter(bag_path) as bag:
        for stamp, frame in zip(stamps, small_video[:12]):
            bag.write(SYNTH_IMAGE_TOPIC, stamp, bag.messages.image(bag.messages.header(_Header(stamp)),
                                                                   frame.image, "rgb8"))
    keep_all = SspConfig(model=cfg.model, node=NodeConfig(max_age_ms=0.0))
    report = run_replay(keep_all, bag_path, tmp_path / "out.mcap", mode="realtime", progress=False)
    assert 2 <= report["frames_out"] < 12 and report["skipped"] == {SUPERSEDED: 12 - report["frames_out"]}
    done = [t for t, _ in topic_records(tmp_path / "out.mcap", "/ssp/mask")]
    assert done[0] == stamps[0] and done[-1] == stamps[-1], "the first frame and the newest waiting one are processed"
    assert report["end_to_end_ms"]["max"] >= report["latency_ms"]["total"]["p50"]
    impatient = SspConfig(model=cfg.model, node=NodeConfig(max_age_ms=0.001))  # any wait makes a frame stale
    report = run_replay(impatient, bag_path, tmp_path / "stale.mcap", mode="realtime", progress=False)
    assert report["frames_out"] == 1 and report["skipped"] == {SUPERSEDED: 10, STALE: 1}
    deterministic = run_replay(cfg, bag_path, tmp_path / "all.mcap", progress=False)
    assert deterministic["frames_out"] == 12


def test_compressed_topic_and_label_folder(cfg, small_video, tmp_path: Path) -> None:
    bag_path, labels = tmp_path / "jpeg.mcap", tmp_path / "labels"
    labels.mkdir()
    topic = "/camera/image_raw/compressed"
    with BagWriter(bag_path) as bag:
        compressed = bag.store.types["sensor_msgs/msg/CompressedImage"]
        for i, frame in enumerate(small_video[:5]):
            stamp = SYNTH_START_NS + i * 33_000_000
            ok, jpeg = cv2.imencode(".jpg", frame.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            bag.write(topic, stamp, compressed(header=bag.messages.header(_Header(stamp)), format="jpeg",
                                               data=jpeg.reshape(-1)))
            cv2.imwrite(str(labels / f"{stamp}.png"), frame.labels if i < 4 else frame.labels[:60])
    report = run_replay(cfg, bag_path, tmp_path / "out.db3", topic=topic, labels=str(labels), progress=False)
    assert report["frames_out"] == 5 and report["labelled_frames"] == 4 and report["miou"] is not None
    assert report["label_problems"] == {"size differs from the image": 1}
    assert report["labels"] == f"folder {labels}"
    assert list((tmp_path / "out.db3").glob("*.db3")), "a .db3 name gives an SQLite bag"


def test_the_image_model_is_scored_from_the_same_pass(drone_bag: Path, tmp_path: Path) -> None:
    """The report's image-model row (the masks before fusion, kept in the SSP pass) scores what a replay with
    propagation off scores; SSP's own row is the output's. The shipped model, whose fusion changes masks (a random
    tiny model's do not change)."""
    shipped = load_config()
    report = run_replay(shipped, drone_bag, tmp_path / "ssp.mcap", progress=False)
    off = replace(shipped, propagation=PropagationConfig(enabled=False))
    alone = run_replay(off, drone_bag, tmp_path / "image.mcap", progress=False)
    for key in ("miou", "tc", "change_rate", "class_share"):
        assert report["image_model"][key] == alone[key], key
    assert report["tc"] != alone["tc"], "SSP scored the same as the image model: the test shows nothing"
    assert sum(report["class_share"]) == pytest.approx(100.0, abs=0.01)
    assert report["registration_thread_ms"]["p50"] > 0 and alone["registration_thread_ms"] is None
    page = (tmp_path / "ssp_report" / "report.md").read_text()
    assert "| image model |" in page and "| SSP |" in page and "Share of pixels per class" in page
    assert page.count("Trained on: synthetic worlds only") == 1 and "No labels" not in page


def test_similarity_topic_when_configured(cfg, drone_bag: Path, tmp_path: Path) -> None:
    with_similarity = SspConfig(model=cfg.model, node=NodeConfig(publish_similarity=True))
    report = run_replay(with_similarity, drone_bag, tmp_path / "s.mcap", progress=False)
    fused = report["frames_out"] - 1 - sum(report["resets"].values())  # the first frame has nothing to fuse
    assert len(topic_records(tmp_path / "s.mcap", "/ssp/similarity")) == fused


def test_cli_synth_bag_then_replay(weights: Path, tmp_path: Path, capsys) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"height": 64, "width": 96, "world": {"size_m": 120.0, "gsd_m": 0.12},
                                        "camera": {"altitude_m": [25.0, 30.0]}}))
    config = tmp_path / "ssp.yaml"
    config.write_text(yaml.safe_dump({"model": {"input_size": list(INPUT), "weights": str(weights)}}))
    assert main(["synth", "--bag", str(tmp_path / "drone.mcap"), "--frames", "4", "--scenario", str(scenario),
                 "--quiet"]) == 0
    assert main(["replay", str(tmp_path / "drone.mcap"), "--out", str(tmp_path / "seg.mcap"), "--config", str(config),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4 messages on /camera/image_raw (deterministic): 4 frames out, skipped none" in out
    assert "mIoU " in out and "mIoU n/a" not in out and (tmp_path / "seg_report" / "report.md").is_file()
    code = main(["replay", str(tmp_path / "drone.mcap"), "--out", str(tmp_path / "seg.mcap"), "--config", str(config),
                 "--quiet"])
    assert code == 2 and "seg.mcap: exists (pass --overwrite" in capsys.readouterr().err
    code = main(["replay", str(tmp_path / "drone.mcap"), "--out", str(tmp_path / "x.mcap"), "--topic", "/cam",
                 "--config", str(config), "--quiet"])
    assert code == 2 and "no topic '/cam' in this bag (image topics: /camera/image_raw" in capsys.readouterr().err
    assert not (tmp_path / "x.mcap").exists()


def test_unknown_mode_and_replacing_the_input_are_refused(cfg, drone_bag: Path, tmp_path: Path) -> None:
    from ssp_ros.errors import SspError

    with pytest.raises(SspError, match="--mode: expected one of deterministic, realtime"):
        run_replay(cfg, drone_bag, tmp_path / "o.mcap", mode="fast")
    with pytest.raises(SspError, match="would replace the input bag"):
        run_replay(cfg, drone_bag, drone_bag, overwrite=True)
    assert drone_bag.is_dir()


def test_masks_match_a_direct_pipeline_run(cfg, drone_bag: Path, small_video, tmp_path: Path) -> None:
    from ssp_ros.backends import make_backend
    from ssp_ros.pipeline import Pipeline

    run_replay(cfg, drone_bag, tmp_path / "seg.mcap", progress=False)
    pipeline = Pipeline(cfg, make_backend(cfg, 8))
    direct = [pipeline.process(f.image, (SYNTH_START_NS + round(f.stamp * 1e9)) * 1e-9).mask for f in small_video[:8]]
    replayed = [image_pixels(m) for _, m in topic_records(tmp_path / "seg.mcap", "/ssp/mask")]
    assert all(np.array_equal(a, b) for a, b in zip(direct, replayed))


def tiny_segmenter(folder: Path, classes: int = 8) -> Path:
    """The YAML of a one-convolution ONNX segmenter of ``classes`` logits at 48x80, as UAVid's classes."""
    conv_segmenter(folder / "conv.onnx", (48, 80), classes)
    return segmenter_yaml(folder, model="conv.onnx", input_size=[48, 80], output="logits", classes="uavid")


def test_replay_stabilises_your_segmenter_on_the_input_headers(weights: Path, drone_bag: Path, tmp_path: Path,
                                                               capsys) -> None:
    config = tmp_path / "ssp.yaml"
    config.write_text(yaml.safe_dump({"model": {"input_size": list(INPUT), "weights": str(weights)}}))
    spec = tiny_segmenter(tmp_path)
    assert main(["replay", str(drone_bag), "--out", str(tmp_path / "seg.mcap"), "--segmenter", str(spec),
                 "--config", str(config), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "8 messages on /camera/image_raw (deterministic): 8 frames out, skipped none" in printed
    assert "input segmenter: mIoU " in printed
    report = json.loads((tmp_path / "seg_report" / "report.json").read_text())
    assert report["segmenter"] == str(spec) and report["segmenter_output"] == "logits" and "backend" not in report
    assert report["output_topics"] == ["/ssp/mask", "/ssp/overlay"] and report["resets"] == {}
    assert report["labelled_frames"] == 8 and set(report["latency_ms"]) == {"segmenter", "stabiliser", "total"}
    for name, m in (("input segmenter", report["input_segmenter"]), ("stabilised", report)):
        assert 0 <= m["miou"] <= 100 and 0 <= m["tc"] <= 100 and 0 <= m["change_rate"] <= 100, (name, m)
        assert len(m["tc_per_pair"]) == 7, name
    inputs = topic_records(tmp_path / "seg.mcap", SYNTH_IMAGE_TOPIC)
    for topic in ("/ssp/mask", "/ssp/overlay"):
        outputs = topic_records(tmp_path / "seg.mcap", topic)
        assert [t for t, _ in outputs] == [t for t, _ in inputs], topic
        assert [stamp_ns(m.header) for _, m in outputs] == [stamp_ns(m.header) for _, m in inputs], topic
    masks = [image_pixels(m) for _, m in topic_records(tmp_path / "seg.mcap", "/ssp/mask")]
    assert all(m.shape == (120, 200) and m.dtype == np.uint8 and m.max() < 8 for m in masks)
    with open_bag(tmp_path / "seg.mcap") as reader:
        assert "/ssp/confidence" not in {c.topic for c in reader.connections}, "the stabiliser gives no confidence"
    page = (tmp_path / "seg_report" / "report.md").read_text()
    assert "| input segmenter |" in page and "| stabilised |" in page and "| segmenter | stabiliser | total |" in page


def test_replay_with_a_segmenter_counts_and_skips_bad_frames(cfg, small_video, tmp_path: Path) -> None:
    bag_path = tmp_path / "broken.mcap"
    good = broken_bag(bag_path, small_video[:5], {1: "corrupt", 3: "tiny"})  # tiny: too small for the stabiliser
    report = run_replay(cfg, bag_path, tmp_path / "out.mcap", progress=False, segmenter=tiny_segmenter(tmp_path))
    assert report["messages"] == 5 and report["frames_out"] == 3
    assert report["skipped"] == {CORRUPT: 1, REJECTED: 1} and "16" in report["last_problem"][REJECTED]
    assert [t for t, _ in topic_records(tmp_path / "out.mcap", "/ssp/mask")] == good
    assert report["labels"] is None and report["miou"] is None and report["input_segmenter"]["miou"] is None


def test_replay_refuses_a_segmenter_yaml_that_does_not_match_before_writing(cfg, drone_bag: Path, tmp_path: Path,
                                                                           capsys) -> None:
    config = tmp_path / "ssp.yaml"
    config.write_text(yaml.safe_dump({"model": {"input_size": list(INPUT), "weights": cfg.model.weights}}))
    spec = tiny_segmenter(tmp_path, classes=5)
    assert main(["replay", str(drone_bag), "--out", str(tmp_path / "seg.mcap"), "--segmenter", str(spec),
                 "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{spec}: output 'logits' of conv.onnx has 5 classes, the class list 'uavid' 8" in err
    assert len(err.strip().splitlines()) == 1 and sorted(p.name for p in tmp_path.iterdir()) == [
        "conv.onnx", "segmenter.yaml", "ssp.yaml"], "no output bag, no report"
