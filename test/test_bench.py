import importlib.util
import json

import pytest
from conftest import small_scenario

from ssp_ros.config import ModelConfig, SspConfig
from ssp_ros.eval.bench import input_size_for, markdown, ratios, run_bench, write_report
from ssp_ros.pipeline import STAGES


def test_input_size_rounds_frames_up_to_the_backbone_multiple() -> None:
    assert input_size_for((368, 640)) == (384, 640) and input_size_for((736, 1280)) == (736, 1280)


def test_bench_reports_every_backend_and_model(tmp_path) -> None:
    cfg = SspConfig(model=ModelConfig(decoder_channels=16), synthetic=small_scenario())
    report = run_bench(cfg, [(120, 200)], ["torch", "onnxruntime", "tensorrt"], frames=3, warmup=1)
    runs = {(r["backend"], r["model"]): r for r in report["runs"]}
    assert set(runs) == {(b, m) for b in ("torch", "onnxruntime") for m in ("image", "ssp")}
    for run in runs.values():
        assert run["input_size"] == [128, 224] and run["frames"] == 3
        assert set(STAGES) <= set(run["latency_ms"]) and run["latency_ms"]["total"] > 0 and run["fps"] > 0
    assert runs[("torch", "image")]["fused_frames"] == 0 and runs[("torch", "ssp")]["latency_ms"]["fusion"] >= 0
    cost = report["cost"][0]
    assert cost["input_size"] == [128, 224] and cost["params_ssp_m"] > cost["params_image_m"] > 0
    assert cost["gflops_ssp"] == pytest.approx(cost["gflops_image"] + cost["gflops_fusion"], abs=0.02)
    by_backend = {q["backend"]: q for q in report["ratios"]}
    onnx = by_backend["onnxruntime"]
    assert onnx["onnxruntime_over_torch_throughput"] == pytest.approx(
        runs[("torch", "ssp")]["latency_ms"]["total"] / runs[("onnxruntime", "ssp")]["latency_ms"]["total"], rel=1e-2)
    if importlib.util.find_spec("tensorrt") is None:
        assert report["skipped"] == [{"backend": "tensorrt", "size": [120, 200],
                                      "reason": "python module 'tensorrt' not installed"}]
    json_path, md_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["ratios"] == report["ratios"]
    page = md_path.read_text()
    assert "| onnxruntime | ssp | 120x200 |" in page and "ONNX Runtime / torch throughput" in page
    (reg,) = report["registration"]
    assert reg["size"] == [120, 200] and reg["pairs"] == 3 and reg["speed_ratio"] > 0
    assert reg["ours"]["median_ms"] > 0 and reg["opencv"]["median_ms"] > 0
    assert "registration 120x200, 3 pairs, ours vs OpenCV" in page


def test_ratios_compare_ssp_with_the_image_model_of_the_same_backend_and_size() -> None:
    def run(backend, model, total, **stages):
        return {"backend": backend, "model": model, "size": [10, 10], "latency_ms": {"total": total, **stages}}

    runs = [run("torch", "image", 100.0, segmenter=90.0), run("torch", "ssp", 110.0, segmenter=90.0, fusion=6.0,
                                                              registration=3.0),
            run("onnxruntime", "image", 50.0, segmenter=40.0), run("onnxruntime", "ssp", 55.0, segmenter=40.0,
                                                                   fusion=1.0, registration=1.0)]
    out = {q["backend"]: q for q in ratios(runs)}
    assert out["torch"] == {"backend": "torch", "size": [10, 10], "ssp_over_image_latency": 1.1,
                            "fusion_plus_registration_over_segmenter": 0.1}
    assert out["onnxruntime"]["onnxruntime_over_torch_throughput"] == 2.0
    assert out["onnxruntime"]["fusion_plus_registration_over_segmenter"] == 0.05
    assert "SSP / image model latency 1.100" in markdown(
        {"created": "t", "frames": 1, "warmup": 0, "seed": 0, "machine": {"cpu": "x", "device": "cpu"}, "cost": [],
         "runs": [], "ratios": ratios(runs), "skipped": [], "registration": []})
