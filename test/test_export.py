import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ssp_ros.backends.export_info import BLEND_INPUTS, FUSION_INPUTS, FUSION_OUTPUTS, load_export_info
from ssp_ros.classes import load_class_set
from ssp_ros.config import ModelConfig
from ssp_ros.deploy.export import OPSET, TENSORRT_OPS, check_graph, export_model, operator_counts
from ssp_ros.errors import SspError
from ssp_ros.models import build_ssp
from ssp_ros.models.warp import warp


def test_export_writes_three_checked_graphs_and_a_sidecar(shipped_export) -> None:
    info = load_export_info(shipped_export)
    assert info.input_size == (384, 640) and info.stride_size == (96, 160)
    assert info.classes == load_class_set("uavid").names and info.num_classes == 8
    segmenter, fusion = info.graph("segmenter"), info.graph("fusion")
    assert segmenter.inputs == {"image": [1, 3, 384, 640]}
    assert segmenter.outputs == {"logits": [1, 8, 96, 160], "feats": [1, info.feature_channels, 96, 160]}
    assert set(fusion.inputs) == set(FUSION_INPUTS) and fusion.inputs["to_previous"] == [1, 3, 3]
    assert set(fusion.outputs) == set(FUSION_OUTPUTS) and fusion.outputs["similarity"] == [1, 1, 96, 160]
    blend = info.graph("blend")
    assert set(blend.inputs) == set(BLEND_INPUTS) and blend.inputs["valid"] == [1, 1, 96, 160]
    assert blend.outputs == fusion.outputs
    raw = info.raw
    assert raw["opset"] == OPSET >= 16 and raw["weights"]["file"] == "ssp_default.safetensors"
    assert len(raw["weights"]["sha256"]) == 64 and raw["model"]["backbone"] == "mobilenetv3_large_100"
    assert raw["trained_on"] == "ssp_ros.synthetic"  # copied from the weights, for reports run on the export alone


def test_graphs_use_only_tensorrt_operators_and_warp_in_graph(shipped_export) -> None:
    info = load_export_info(shipped_export)
    for name in ("segmenter", "fusion", "blend"):
        model = onnx.load(str(info.graph(name).file))
        counts = operator_counts(model)
        assert set(counts) <= TENSORRT_OPS, set(counts) - TENSORRT_OPS
        assert not {"Shape", "Gather", "Constant"} & set(counts), "static shape arithmetic is folded into constants"
        assert all(op.domain in ("", "ai.onnx") for op in model.opset_import)
        assert model.opset_import[0].version == OPSET
    assert operator_counts(onnx.load(str(info.graph("fusion").file)))["GridSample"] == 2  # logits and features
    assert operator_counts(onnx.load(str(info.graph("blend").file)))["GridSample"] == 0  # warped on the CPU


def test_check_graph_refuses_an_operator_tensorrt_lacks(tmp_path) -> None:
    node = helper.make_node("Mod", ["a", "b"], ["c"], fmod=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])])
    path = tmp_path / "mod.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), str(path))
    with pytest.raises(SspError, match="mod.onnx: operators outside the TensorRT-supported list: Mod"):
        check_graph(path)


def tiny_model():
    torch.manual_seed(0)
    return build_ssp(ModelConfig(input_size=(64, 96), decoder_channels=16), 3, with_weights=False).eval()


def test_dynamic_batch_export_runs_a_batch_of_two(tmp_path) -> None:
    import onnxruntime as ort

    model = tiny_model()
    out = export_model(model, (64, 96), tmp_path / "dyn", classes=("a", "b", "c"), dynamic_batch=True)
    info = load_export_info(out)
    assert info.graph("segmenter").inputs["image"] == ["batch", 3, 64, 96]
    session = ort.InferenceSession(str(info.graph("segmenter").file), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 96)).astype(np.float32)
    logits, feats = session.run(None, {"image": x})
    with torch.no_grad():
        expected, _ = model.segmenter(torch.from_numpy(x))
    assert logits.shape == (2, 3, 16, 24) and feats.shape[0] == 2
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-3)


@pytest.mark.parametrize(("kind", "inputs"), [("cosine", ()), ("learned", ("entropy", "validity"))])
def test_ablation_similarity_modules_export_and_match_torch(tmp_path, kind, inputs) -> None:
    import onnxruntime as ort

    from ssp_ros.models import SSP, build_similarity

    torch.manual_seed(0)
    model = tiny_model()
    model = SSP(model.segmenter, build_similarity(kind, model.segmenter.feature_channels, inputs)).eval()
    info = load_export_info(export_model(model, (64, 96), tmp_path / kind, classes=("a", "b", "c")))
    session = ort.InferenceSession(str(info.graph("fusion").file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    shift = np.array([[1.0, 0.0, 1.5], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]], np.float32)[None]  # partly out of view
    c = model.segmenter.feature_channels
    args = [rng.normal(size=(1, 3, 16, 24)).astype(np.float32), rng.normal(size=(1, c, 16, 24)).astype(np.float32),
            rng.normal(size=(1, 3, 16, 24)).astype(np.float32), rng.normal(size=(1, c, 16, 24)).astype(np.float32),
            shift]
    names = [i.name for i in session.get_inputs()]
    fused, s = session.run(["fused", "similarity"], dict(zip(names, args)))
    with torch.no_grad():
        expected_fused, expected_s, _ = model.warp_fusion_step()(*map(torch.from_numpy, args))
    np.testing.assert_allclose(fused, expected_fused.numpy(), atol=1e-4)
    np.testing.assert_allclose(s, expected_s.numpy(), atol=1e-4)
    blend = ort.InferenceSession(str(info.graph("blend").file), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        warped_logits, valid = warp(torch.from_numpy(args[2]), torch.from_numpy(shift))
        warped_feats, _ = warp(torch.from_numpy(args[3]), torch.from_numpy(shift))
    feeds = dict(zip(BLEND_INPUTS, (args[0], args[1], warped_logits.numpy(), warped_feats.numpy(), valid.numpy())))
    fused, s = blend.run(["fused", "similarity"], feeds)
    np.testing.assert_allclose(fused, expected_fused.numpy(), atol=1e-4)
    np.testing.assert_allclose(s, expected_s.numpy(), atol=1e-4)


def test_a_model_that_ignores_an_input_is_refused_before_writing(tmp_path) -> None:
    from ssp_ros.models import SSP, build_similarity

    model = tiny_model()
    fixed = SSP(model.segmenter, build_similarity("fixed", model.segmenter.feature_channels)).eval()
    with pytest.raises(SspError, match=r"fusion graph: the model does not use input\(s\) \['cur_feats', "
                                       r"'prev_feats'\].*fixed similarity"):
        export_model(fixed, (64, 96), tmp_path / "fixed", classes=("a", "b", "c"))
    assert not (tmp_path / "fixed").exists() or not any((tmp_path / "fixed").glob("*.onnx"))


def test_bad_input_size_is_refused_before_writing(tmp_path) -> None:
    with pytest.raises(SspError, match="input size 60x96: height and width must be multiples of 32"):
        export_model(tiny_model(), (60, 96), tmp_path / "bad", classes=("a", "b", "c"))
    assert not any((tmp_path / "bad").glob("*.onnx"))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return export_model(tiny_model(), (64, 96), tmp_path_factory.mktemp("tiny") / "export", classes=("a", "b", "c"))


def test_sidecar_errors_name_the_file_and_the_problem(tiny_export, tmp_path) -> None:
    import shutil

    with pytest.raises(SspError, match="nowhere: exported model folder not found"):
        load_export_info(tmp_path / "nowhere")
    with pytest.raises(SspError, match="export.json: missing"):
        load_export_info(tmp_path)
    copy = shutil.copytree(tiny_export, tmp_path / "copy")
    sidecar = copy / "export.json"
    data = json.loads(sidecar.read_text())
    (copy / "fusion.onnx").write_bytes((copy / "fusion.onnx").read_bytes() + b"\0")
    with pytest.raises(SspError, match=r"fusion.onnx: contents do not match the SHA-256 .*graphs.fusion.sha256"):
        load_export_info(copy)
    sidecar.write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(SspError, match="export format 99"):
        load_export_info(copy)
    sidecar.write_text(json.dumps({k: v for k, v in data.items() if k != "classes"}))
    with pytest.raises(SspError, match="missing field 'classes'"):
        load_export_info(copy)
    sidecar.write_text("{not json")
    with pytest.raises(SspError, match="export.json: not valid JSON"):
        load_export_info(copy)
