"""``ssp export --compact``: float16 storage of the weights float16 holds exactly, with the same numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from onnx import TensorProto, helper

from ssp_ros.backends.export_info import load_export_info
from ssp_ros.cli.main import main
from ssp_ros.config import ModelConfig
from ssp_ros.deploy.compact import MIN_ELEMENTS, store_exact_fp16
from ssp_ros.deploy.export import OPSET, export_model
from ssp_ros.errors import SspError
from ssp_ros.models import build_ssp

CLASSES = ("a", "b", "c")


def tiny_model(fp16_values: bool):
    """A small SSP model; with ``fp16_values`` every parameter and BatchNorm statistic is a float16 value (as in
    the shipped weights), and the running statistics are not the trivial 0 and 1."""
    torch.manual_seed(0)
    model = build_ssp(ModelConfig(input_size=(64, 96), decoder_channels=16), 3, with_weights=False).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        if fp16_values:
            for tensor in [*model.parameters(), *model.buffers()]:
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    return model


def segment(folder, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(load_export_info(folder).graph("segmenter").file),
                                   providers=["CPUExecutionProvider"])
    return session.run(["logits", "feats"], {"image": x})


def fp16_initializers(path) -> list[str]:
    return [t.name for t in onnx.load(str(path)).graph.initializer if t.data_type == TensorProto.FLOAT16]


def test_compact_export_is_smaller_and_computes_what_torch_does(tmp_path) -> None:
    model = tiny_model(fp16_values=True)
    plain = export_model(model, (64, 96), tmp_path / "plain", classes=CLASSES)
    compact = export_model(model, (64, 96), tmp_path / "compact", classes=CLASSES, compact=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in model.segmenter(torch.from_numpy(x))]
    for got, want in zip(segment(compact, x), expected):
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    for got, want in zip(segment(compact, x), segment(plain, x)):
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    plain_size, compact_size = ((folder / "segmenter.onnx").stat().st_size for folder in (plain, compact))
    assert compact_size < 0.6 * plain_size, (compact_size, plain_size)
    record = json.loads((compact / "export.json").read_text())["compact"]["segmenter"]
    stored = fp16_initializers(compact / "segmenter.onnx")
    assert record["fp16_initializers"] == len(stored) > 0 and record["bytes"] == compact_size
    graph = onnx.load(str(compact / "segmenter.onnx")).graph
    assert {n.input[0] for n in graph.node if n.op_type == "Cast"} >= set(stored)
    assert any(n.op_type == "BatchNormalization" for n in graph.node), "BatchNorm stays unfolded"
    assert json.loads((plain / "export.json").read_text())["compact"] is None


def test_compact_keeps_in_float32_what_float16_cannot_hold(tmp_path) -> None:
    model = tiny_model(fp16_values=False)
    compact = export_model(model, (64, 96), tmp_path / "compact", classes=CLASSES, compact=True)
    graph = onnx.load(str(compact / "segmenter.onnx")).graph
    kernels = [t for t in graph.initializer if len(t.dims) == 4]
    assert kernels and all(t.data_type == TensorProto.FLOAT for t in kernels)
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in model.segmenter(torch.from_numpy(x))]
    for got, want in zip(segment(compact, x), expected):
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_store_exact_fp16_changes_no_output_bit(tmp_path) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(2)
    exact = rng.normal(size=(64, MIN_ELEMENTS // 64)).astype(np.float16).astype(np.float32)
    inexact = exact + np.float32(1e-6)
    nodes = [helper.make_node("MatMul", ["x", "exact"], ["a"]), helper.make_node("MatMul", ["x", "inexact"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("MatMul", ["c", "small_t"], ["y"])]
    inits = [onnx.numpy_helper.from_array(exact, "exact"), onnx.numpy_helper.from_array(inexact, "inexact"),
             onnx.numpy_helper.from_array(rng.normal(size=(exact.shape[1], 8)).astype(np.float16).astype(np.float32),
                                          "small_t")]  # 16 x 8: exact in float16, below MIN_ELEMENTS
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])], inits)
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), str(path))
    x = {"x": rng.normal(size=(3, 64)).astype(np.float32)}
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    record = store_exact_fp16(path)
    onnx.checker.check_model(str(path), full_check=True)
    after = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert np.array_equal(before, after)
    assert record["fp16_initializers"] == 1 and record["fp32_initializers"] == 2
    assert fp16_initializers(path) == ["exact_fp16"]  # not inexact, nor small_t (exact, below MIN_ELEMENTS)


@pytest.fixture(scope="module")
def compact_export(tmp_path_factory):
    return export_model(tiny_model(fp16_values=True), (64, 96), tmp_path_factory.mktemp("c") / "export",
                        classes=CLASSES, compact=True)


def test_tensorrt_build_refuses_a_compact_export_before_looking_for_tensorrt(compact_export) -> None:
    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    with pytest.raises(SspError, match=r"export.json: a compact export .*builds from a plain export"):
        build_engines(compact_export, BuildOptions(precision="fp16"))


def test_int8_quantization_refuses_a_compact_export(compact_export) -> None:
    from ssp_ros.deploy.quantize import quantize_export

    with pytest.raises(SspError, match=r"segmenter.onnx: a compact export .*quantize a plain FP32 export"):
        quantize_export(compact_export)


def test_export_refuses_compact_with_int8_before_exporting(tmp_path, capsys) -> None:
    assert main(["export", "--out", str(tmp_path / "x"), "--compact", "--int8"]) == 2
    assert "--compact stores the FP32 weights that float16 holds exactly; --int8 quantizes them" in \
        capsys.readouterr().err
    assert not (tmp_path / "x").exists()
