"""The supported TensorRT range (one constant, ``tensorrt_common.SUPPORTED_TENSORRT``) as the runtime, the engine
build, ``ssp export --trt-version`` and the README state it, and the per-version ONNX operator checks of the export
(``export.OPERATOR_MATRICES``) on the shipped model and the paper's model."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ssp_ros.backends.tensorrt_common import (
    SUPPORTED_TENSORRT,
    TENSORRT_PIN,
    check_tensorrt_version,
    parse_tensorrt_version,
    unsupported_reason,
)
from ssp_ros.cli.main import build_parser
from ssp_ros.config import RuntimeConfig
from ssp_ros.deploy.export import (
    OPSET,
    TENSORRT_OPS,
    check_graph,
    export_model,
    supported_matrices,
    tensorrt_ops,
    tensorrt_problems,
)
from ssp_ros.errors import SspError

ROOT = Path(__file__).resolve().parents[1]
SUPPORTED = ("8.6.2.3", "10.0.1.6", "10.3.0.30", "10.16.0.72")
REFUSED = ("8.5.2.2", "8.4.1.5", "11.0.0.1", "12.1")


# ---- one range, stated once ---------------------------------------------------------------------------------

def test_the_range_is_8_6_through_10_x_and_the_pin_says_so() -> None:
    assert SUPPORTED_TENSORRT == ((8, 6), (11, 0)) and TENSORRT_PIN == "tensorrt>=8.6,<11"
    assert parse_tensorrt_version("10.3.0.30") == (10, 3) and parse_tensorrt_version("10") == (10, 0)
    for version in SUPPORTED:
        assert unsupported_reason(version) is None
        check_tensorrt_version(version)
    for version in REFUSED:
        reason = unsupported_reason(version)
        sentence = reason.split(". (")[0]
        assert f"TensorRT {version} is not supported" in sentence and "TensorRT 8.6 through 10.x" in sentence
        assert f"pip install '{TENSORRT_PIN}'" in sentence and "JetPack 6.0 ships 8.6" in sentence
    assert "LayerNormalization" in unsupported_reason("8.5.2.2") and "strongly typed" in unsupported_reason("11.0")
    with pytest.raises(SspError, match="TensorRT version 'ten': expected MAJOR.MINOR"):
        parse_tensorrt_version("ten")


@pytest.mark.parametrize("version", ["11.0.0.1", "8.5.2.2"])
def test_build_and_runtime_refuse_a_tensorrt_outside_the_range(monkeypatch, tmp_path: Path, version: str) -> None:
    """TensorRT 11 (PyPI's today) used to end `ssp build-engine --fp16` in an AttributeError on BuilderFlag.FP16."""
    import stand_ins

    from ssp_ros.backends.tensorrt_backend import TensorRTBackend
    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    installed = stand_ins.install(monkeypatch, version)
    export = stand_ins.write_export(tmp_path / "export")
    expected = re.escape(f"TensorRT {version} is not supported: ssp_ros supports TensorRT 8.6 through 10.x")
    with pytest.raises(SspError, match=expected) as err:
        build_engines(export.folder, BuildOptions(precision="fp16"), progress=lambda message: None)
    assert f"pip install '{TENSORRT_PIN}'" in str(err.value)
    assert list(export.folder.glob("*.engine")) == [] and installed.gpu.live == []
    runtime = RuntimeConfig(backend="tensorrt", device="cuda:0", export_dir=str(export.folder), precision="fp16")
    with pytest.raises(SspError, match=expected):
        TensorRTBackend.from_config(runtime)


@pytest.mark.parametrize("version", ["8.6.2.3", "10.3.0.30"])
def test_every_supported_version_builds_with_the_fusion_graph_in_fp32(monkeypatch, tmp_path: Path,
                                                                       version: str) -> None:
    """--fp16: the segmenter gets the FP16 flag, the fusion graph (warp + recursive state) none, so it is FP32."""
    import stand_ins

    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    trt = stand_ins.install(monkeypatch, version).trt
    export = stand_ins.write_export(tmp_path / "export")
    written = build_engines(export.folder, BuildOptions(precision="fp16"), progress=lambda message: None)
    assert [p.name for p in written] == ["segmenter.fp16.engine", "fusion.fp16.engine"]
    flags = {p.name: json.loads(p.read_bytes()[len(trt.ENGINE_MAGIC):])["flags"] for p in written}
    assert flags == {"segmenter.fp16.engine": ["FP16"], "fusion.fp16.engine": []}


def test_readme_and_metadata_cite_the_range() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"pip install '{TENSORRT_PIN}'" in readme
    for fact in ("JetPack 6.0", "TensorRT 8.6", "Python 3.10", "JetPack 6.1", "10.3", "TensorRT 11"):
        assert fact in readme, fact
    assert 'python_requires=">=3.10"' in (ROOT / "setup.py").read_text()
    wrong = re.compile(r"8\.6[^.\n]{0,20}JetPack 5|JetPack 5[^.\n]{0,30}8\.6|10\.x \(JetPack 6\)")
    for path in [*(ROOT / "ssp_ros").rglob("*.py"), ROOT / "README.md"]:
        assert not wrong.search(path.read_text()), f"{path}: TensorRT 8.6 is JetPack 6.0; 6.1/6.2 ship 10.3"


# ---- operators per TensorRT version --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper's model (sam2_hiera_small + UPerNet-256, random weights) exported at 128x224."""
    from ssp_ros.classes import load_class_set
    from ssp_ros.eval.bench import PAPER_MODEL
    from ssp_ros.models import build_ssp

    cfg = dataclasses.replace(PAPER_MODEL, input_size=(128, 224))
    classes = load_class_set(cfg.dataset)
    torch.manual_seed(0)
    model = build_ssp(cfg, classes.num_classes, with_weights=False).eval()
    return export_model(model, cfg.input_size, tmp_path_factory.mktemp("paper") / "export", classes=classes.names)


def _graphs(folder: Path) -> dict[str, onnx.ModelProto]:
    return {name: onnx.load(str(folder / f"{name}.onnx")) for name in ("segmenter", "fusion", "blend")}


def test_every_supported_tensorrt_parses_both_models(shipped_export, paper_export) -> None:
    assert supported_matrices() == [(8, 6), (10, 0)] and TENSORRT_OPS == tensorrt_ops((8, 6))
    for folder in (shipped_export, paper_export):
        for version in (*supported_matrices(), (10, 3), (10, 16)):
            for name, model in _graphs(folder).items():
                assert tensorrt_problems(model, version) == [], (folder, name, version)
    assert "LayerNormalization" in {n.op_type for n in _graphs(paper_export)["segmenter"].graph.node}


def test_tensorrt_8_5_would_reject_the_papers_model_which_is_why_it_is_outside_the_range(shipped_export,
                                                                                     paper_export) -> None:
    """8.5's matrix (release/8.5-GA) marks LayerNormalization N: the paper's Hiera-S exports 32 of them at opset 17.
    The shipped MobileNetV3 would parse (timm writes hard-swish as HardSigmoid × x, not 8.5's missing HardSwish)."""
    paper = _graphs(paper_export)
    assert sum(n.op_type == "LayerNormalization" for n in paper["segmenter"].graph.node) == 32
    (problem,) = tensorrt_problems(paper["segmenter"], (8, 5))
    assert "operators outside the TensorRT-supported list: LayerNormalization" in problem and "8.5-GA" in problem
    assert "HardSwish" not in tensorrt_ops((8, 5)) and "HardSwish" in tensorrt_ops((8, 6))
    for name, graph in _graphs(shipped_export).items():
        assert tensorrt_problems(graph, (8, 5)) == [], name
    assert tensorrt_problems(paper["fusion"], (8, 5)) == tensorrt_problems(paper["blend"], (8, 5)) == []


def _save(tmp_path: Path, name: str, nodes: list, inputs: list, outputs: list, initializers=(), opset=OPSET) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _float(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_resize_and_grid_sample_attributes_are_checked(tmp_path: Path) -> None:
    roi, scales = numpy_helper.from_array(np.zeros(0, np.float32), "roi"), \
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    for mode, ok in (("half_pixel", True), ("tf_crop_and_resize", False)):
        node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear",
                                coordinate_transformation_mode=mode)
        path = _save(tmp_path, f"resize_{mode}", [node], [_float("x", [1, 2, 4, 4])], [_float("y", [1, 2, 8, 8])],
                     [roi, scales])
        if ok:
            check_graph(path)
            continue
        with pytest.raises(SspError, match="coordinate_transformation_mode='tf_crop_and_resize'; TensorRT 8.6"):
            check_graph(path)
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode="bilinear", padding_mode="zeros",
                            align_corners=0)
    model = helper.make_model(helper.make_graph([node], "g", [_float("x", [1, 2, 4, 4]), _float("grid", [1, 4, 4, 2])],
                                                [_float("y", [1, 2, 4, 4])]),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    assert tensorrt_problems(model, (8, 6)) == []
    next(a for a in model.graph.node[0].attribute if a.name == "padding_mode").s = b"mirror"
    (problem,) = tensorrt_problems(model, (10, 3))
    assert "padding_mode='mirror'" in problem and "TensorRT 10.3 (release/10.0-GA" in problem


def test_a_newer_opset_than_the_version_parses_is_refused(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    model = helper.make_model(helper.make_graph([node], "g", [_float("x", [2])], [_float("y", [2])]),
                              opset_imports=[helper.make_opsetid("", 18)])
    assert tensorrt_problems(model, (10, 0)) == []
    (problem,) = tensorrt_problems(model, (8, 6))
    assert problem.startswith("opset 18: TensorRT 8.6 (release/8.6-GA) parses up to opset 17")


def _qdq_graph(tmp_path: Path, name: str, zero: np.ndarray, scale: np.ndarray, weight: bool) -> Path:
    """QuantizeLinear → DequantizeLinear on an activation input or on a weight initializer (the QAT form; ONNX
    Runtime's quantizer stores weights already quantized, DequantizeLinear of an initializer, also accepted)."""
    source = "w" if weight else "x"
    inits = [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(zero, "zero")]
    if weight:
        inits.append(numpy_helper.from_array(np.ones((2, 3), np.float32), "w"))
    nodes = [helper.make_node("QuantizeLinear", [source, "scale", "zero"], ["q"], axis=0),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"], axis=0),
             helper.make_node("Add", ["dq", "x"], ["y"])]
    return _save(tmp_path, name, nodes, [_float("x", [2, 3])], [_float("y", [2, 3])], inits)


def test_quantization_scheme_is_checked_against_a_named_version(tmp_path: Path) -> None:
    """s8s8 (zero point 0, per-channel on weights) parses; u8s8's zero point 128 and per-channel activation
    scales do not, but the default export check lets an ONNX-Runtime-only u8s8 graph through."""
    s8s8 = _qdq_graph(tmp_path, "s8s8", np.zeros(2, np.int8), np.full(2, 0.1, np.float32), weight=True)
    for version in (None, "8.6", "10.3"):
        check_graph(s8s8, version)
    u8 = _qdq_graph(tmp_path, "u8", np.full(2, 128, np.uint8), np.full(2, 0.1, np.float32), weight=True)
    check_graph(u8)  # the export's own check: u8s8 is for ONNX Runtime
    stored = helper.make_node("DequantizeLinear", ["wq", "scale", "zero"], ["y"], axis=0)
    inits = [numpy_helper.from_array(np.ones((2, 3), np.int8), "wq"),
             numpy_helper.from_array(np.zeros(2, np.int8), "zero"),
             numpy_helper.from_array(np.full(2, 0.1, np.float32), "scale")]
    check_graph(_save(tmp_path, "stored", [stored], [], [_float("y", [2, 3])], inits), "8.6")
    with pytest.raises(SspError, match="zero point of type UINT8, not INT8; TensorRT takes INT8 Q/DQ"):
        check_graph(u8, "8.6")
    per_channel = _qdq_graph(tmp_path, "act", np.zeros(2, np.int8), np.full(2, 0.1, np.float32), weight=False)
    with pytest.raises(SspError, match="per-channel scales on an activation"):
        check_graph(per_channel, "10.3")
    nonzero = _qdq_graph(tmp_path, "nonzero", np.full(1, 3, np.int8), np.full(1, 0.1, np.float32), weight=False)
    with pytest.raises(SspError, match="a zero point other than 0"):
        check_graph(nonzero, "10.3")
    implicit = helper.make_node("DequantizeLinear", ["wq", "scale"], ["y"], axis=0)  # no zero point: uint8
    with pytest.raises(SspError, match="no zero point"):
        check_graph(_save(tmp_path, "implicit", [implicit], [], [_float("y", [2, 3])], inits[::2]), "8.6")


def test_export_trt_version_option(tmp_path: Path) -> None:
    parser = build_parser()
    assert parser.parse_args(["export", "--out", "d"]).trt_version is None
    args = parser.parse_args(["export", "--out", str(tmp_path / "x"), "--trt-version", "11.0"])
    with pytest.raises(SspError, match=re.escape("TensorRT 11.0 is not supported") + ".*" +
                       re.escape(f"pip install '{TENSORRT_PIN}'")):
        args.func(args)
    args = parser.parse_args(["export", "--out", str(tmp_path / "x"), "--trt-version", "10.3", "--int8"])
    with pytest.raises(SspError, match="--int8-scheme u8s8 is for ONNX Runtime only.*--int8-scheme s8s8"):
        args.func(args)
    assert not (tmp_path / "x").exists()


def test_export_model_checks_the_named_version(tmp_path: Path) -> None:
    from ssp_ros.config import ModelConfig
    from ssp_ros.models import build_ssp

    torch.manual_seed(0)
    model = build_ssp(ModelConfig(input_size=(64, 96), decoder_channels=16), 3, with_weights=False).eval()
    out = export_model(model, (64, 96), tmp_path / "ok", classes=("a", "b", "c"), trt_version="10.3")
    assert (out / "fusion.onnx").is_file()
    with pytest.raises(SspError, match="TensorRT 8.5 is not supported"):
        export_model(model, (64, 96), tmp_path / "old", classes=("a", "b", "c"), trt_version="8.5")
    assert not (tmp_path / "old").exists()
