import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import untrained_weights
from onnx_segmenters import conv_segmenter, segmenter_yaml

from ssp_ros.classes import load_class_set
from ssp_ros.cli.main import main
from ssp_ros.config import ModelConfig, SspConfig
from ssp_ros.eval.clips import Clip, file_clip
from ssp_ros.eval.demo import run_demo
from ssp_ros.eval.strip import KEY_LINE, KEY_SWATCH, colour_key
from ssp_ros.io import VideoWriter

INPUT = (96, 160)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return untrained_weights(tmp_path_factory.mktemp("weights"), INPUT)


def clip_of(frames) -> Clip:
    flows = [None if f.flow is None else (f.flow, f.valid) for f in frames]
    return Clip(source="test", images=[f.image for f in frames], stamps=[f.stamp for f in frames],
                labels=[f.labels for f in frames], flows=flows, fps=30.0)


def assert_strip(path: Path, panels: int) -> None:
    """strip.png: a colour key with every class's colour above 4 rows of ``panels`` panels (120x200 -> 480x288)."""
    strip = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    key = strip.shape[0] - 4 * 288
    assert strip.shape[1:] == (panels * 480, 3) and key > 0 and key % KEY_LINE == 0
    assert_key_shows_every_class(strip[:key])


def assert_key_shows_every_class(band: np.ndarray) -> None:
    for colour in load_class_set("uavid").colors:
        square = (band == colour).all(axis=-1)
        assert square.sum() >= KEY_SWATCH * KEY_SWATCH, f"no swatch of {colour} in the colour key"


def test_report_has_the_promised_shape(weights: Path, small_video, tmp_path: Path) -> None:
    cfg = SspConfig(model=ModelConfig(input_size=INPUT, weights=str(weights)))
    frames = small_video[:10]
    run_demo(cfg, tmp_path, lambda: clip_of(frames))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"] == 10 and report["size"] == [120, 200]
    for name in ("image", "ssp"):
        model = report["models"][name]
        assert 0 <= model["miou"] <= 100 and 0 <= model["tc"] <= 100 and model["fps"] > 0
        assert {"preprocess", "segmenter", "postprocess", "total"} <= set(model["latency_ms"])
        assert len(report["tc_per_pair"][name]) == 9
    assert "registration" in report["models"]["ssp"]["latency_ms"]
    assert not {"registration", "fusion"} & set(report["models"]["image"]["latency_ms"])  # SSP's stages alone
    assert report["models"]["ssp"]["registration_ms"] > 0 and report["models"]["image"]["registration_ms"] is None
    # the first frame starts the stream: no reset; the image model never fuses, so it has no resets to count
    assert report["models"]["ssp"]["resets"] == 0 and report["models"]["image"]["resets"] is None
    for name in ("image", "ssp"):
        shares = report["models"][name]["class_share"]
        assert len(shares) == 8 and sum(shares) == pytest.approx(100.0, abs=0.01)
        assert 0 <= report["models"][name]["change_rate"] <= 100
    assert len(list((tmp_path / "masks" / "ssp").glob("*.png"))) == 10
    assert (tmp_path / "tc_over_time.png").stat().st_size > 0 and "| SSP |" in (tmp_path / "report.md").read_text()
    reg = report["models"]["ssp"]["registration"]
    assert report["models"]["image"]["registration"] is None
    # frame 0 has no previous frame: neither a failed registration nor a reset; 9 pairs, all registered
    assert reg["pairs"] == 9 and reg["registered"] == 9 and reg["failed"] == 0 and reg["failures"] == {}
    assert reg["resets"] == {}
    assert 0.0 < reg["inlier_ratio"]["min"] <= reg["inlier_ratio"]["median"] <= 1.0
    assert 0.0 < reg["corner_motion_px"]["median"] < 50.0  # a drone drifting a few pixels a frame
    page = (tmp_path / "report.md").read_text()
    assert "- registered 9 of 9 frame pairs, failed 0\n" in page and "is none): none\n" in page
    assert "Trained on: not recorded in the weights" in page and "No labels" not in page
    assert report["labelled"] and "frame | ground truth (unlabelled pixels untinted) | image model | SSP" in page
    assert_strip(tmp_path / "strip.png", panels=4)  # frame | ground truth | image model | SSP
    av = pytest.importorskip("av", reason="PyAV is not installed: pip install av")
    with av.open(str(tmp_path / "overlay.mp4")) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.frames == 10
        assert (stream.height, stream.width) == (120, 400)  # image model | SSP


def test_colour_key_wraps_to_fit_a_narrow_strip() -> None:
    wide, narrow = colour_key(load_class_set("uavid"), 1920), colour_key(load_class_set("uavid"), 480)
    assert wide.shape == (KEY_LINE, 1920, 3) and narrow.shape[0] > 2 * KEY_LINE and narrow.shape[1] == 480
    assert_key_shows_every_class(narrow)


def test_unlabelled_video_reports_tc_without_miou(weights: Path, small_video, tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "drone.mp4", 30.0, (120, 200))
    for frame in small_video[:6]:
        writer.write(frame.image)
    writer.close()
    clip = file_clip(writer.output, frames=None)
    assert len(clip.images) == 6 and clip.labels is None and clip.flows[-1] is None
    # what `ssp train` writes of weights trained on our worlds
    synthetic = untrained_weights(tmp_path, INPUT, {"trained_on": "ssp_ros.synthetic"})
    cfg = SspConfig(model=ModelConfig(input_size=INPUT, weights=str(synthetic)))
    report = run_demo(cfg, tmp_path / "out", lambda: clip)
    assert report["models"]["ssp"]["miou"] is None and report["models"]["ssp"]["tc"] is not None
    page = (tmp_path / "out" / "report.md").read_text()
    assert not report["labelled"] and "`strip.png`: frame | image model | SSP at" in page
    # what a user needs when nothing can say whether the classes are right: the honest lines and the class shares
    assert report["trained_on"] == "ssp_ros.synthetic" and "synthetic worlds only" in report["trained_on_line"]
    assert "Trained on: synthetic worlds only" in page and "No labels: mIoU and flicker cannot be measured" in page
    for name in ("image", "ssp"):
        shares = report["models"][name]["class_share"]
        assert sum(shares) == pytest.approx(100.0, abs=0.01)
        assert report["models"][name]["change_rate"] is not None  # label-free flicker, from DIS flow
    table = page[page.index("| class | image model | SSP |"):].splitlines()
    assert [row.split(" | ")[0].strip("| ") for row in table[2:10]] == list(load_class_set("uavid").names)
    assert_strip(tmp_path / "out" / "strip.png", panels=3)  # no ground truth to show


def test_cli_demo_without_weights_is_one_clear_error(tmp_path: Path, capsys) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"model": {"weights": None}}))
    assert main(["demo", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "model.weights is not set" in capsys.readouterr().err


def test_cli_demo_missing_weights_file_is_named(tmp_path: Path, capsys) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"model": {"weights": "nowhere.safetensors"}}))
    code = main(["demo", "--config", str(config), "--frames", "2", "--out", str(tmp_path / "out"),
                 "--size", "64x96"])
    assert code == 2 and "nowhere.safetensors: model weights file not found" in capsys.readouterr().err


def test_missing_input_is_named(tmp_path: Path) -> None:
    from ssp_ros.errors import SspError

    with pytest.raises(SspError, match=r"nope\.mp4: no such video file"):
        file_clip(tmp_path / "nope.mp4", frames=None)


SEGMENTER_INPUT = (48, 80)


def tiny_config(tmp_path: Path, weights: Path) -> Path:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"model": {"input_size": list(INPUT), "weights": str(weights)}}))
    return config


def test_demo_runs_your_segmenter_and_stabilises_it(weights: Path, tmp_path: Path, capsys) -> None:
    """``ssp demo --segmenter``: a tiny ONNX segmenter of UAVid's 8 classes over four synthetic frames."""
    conv_segmenter(tmp_path / "conv.onnx", SEGMENTER_INPUT, 8)
    spec = segmenter_yaml(tmp_path, model="conv.onnx", input_size=list(SEGMENTER_INPUT), classes="uavid")
    out = tmp_path / "out"
    assert main(["demo", "--segmenter", str(spec), "--frames", "4", "--size", "64x96", "--config",
                 str(tiny_config(tmp_path, weights)), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["command"] == "ssp demo" and report["masks_input"] == str(spec)
    assert report["frames"] == 4 and report["size"] == [64, 96] and report["frames_input"] == "synthetic seed 2000"
    assert report["input"] == "logits" and report["num_classes"] == 8 and report["classes"][1] == "building"
    assert report["miou_missing"] == "", "the synthetic world's classes are the segmenter's: mIoU is measured"
    for name in ("before", "after"):
        m = report[name]
        assert 0 <= m["miou"] <= 100 and 0 <= m["tc"] <= 100 and 0 <= m["change_rate"] <= 100, (name, m)
    assert report["ms_per_frame"] > 0 and report["registration"]["pairs"] == 3
    masks = sorted((out / "masks").iterdir())
    assert [p.name for p in masks] == [f"{i:06d}.png" for i in range(4)]
    for path in masks:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (64, 96) and mask.dtype == np.uint8 and mask.max() < 8
    page = (out / "report.md").read_text()
    assert page.startswith(f"# ssp demo: {spec}") and "| before |" in page and "| after |" in page
    printed = capsys.readouterr().out
    assert "4 frames, 8 classes: TC " in printed and "mIoU " in printed and "no mIoU" not in printed
    av = pytest.importorskip("av", reason="PyAV is not installed: pip install av")
    with av.open(str(out / "overlay.mp4")) as video:
        assert video.streams.video[0].frames == 4 and video.streams.video[0].height == 64
        assert video.streams.video[0].width == 192  # input segmenter | stabilised


@pytest.mark.parametrize(("classes", "output", "says"), [
    (4, "logits", "output 'logits' of conv.onnx has 4 classes, the class list 'uavid' 8"),
    (8, "labels", "on a blank input, "),  # logits where the YAML says labels: only its output tells
])
def test_demo_refuses_a_segmenter_yaml_that_does_not_match_before_writing(weights: Path, tmp_path: Path, capsys,
                                                                          classes: int, output: str, says: str) -> None:
    conv_segmenter(tmp_path / "conv.onnx", SEGMENTER_INPUT, classes)
    spec = segmenter_yaml(tmp_path, model="conv.onnx", input_size=list(SEGMENTER_INPUT), output=output,
                          classes="uavid")
    out = tmp_path / "out"
    assert main(["demo", "--segmenter", str(spec), "--frames", "2", "--size", "64x96", "--config",
                 str(tiny_config(tmp_path, weights)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}: " in err and says in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
