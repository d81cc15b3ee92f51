import importlib.util
import json

import pytest
from conftest import small_scenario

from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.bench import input_size_for, markdown, ratios, run_bench, variants, write_report
from ssp_ros.pipeline import STAGES
from ssp_ros.stabiliser import STAGES as STABILISER_STAGES
from ssp_ros.synthetic.config import SimConfig


def test_input_size_rounds_frames_up_to_the_backbone_multiple() -> None:
    assert input_size_for((368, 640)) == (384, 640) and input_size_for((736, 1280)) == (736, 1280)


def test_bench_reports_every_backend_and_model(tmp_path) -> None:
    cfg = SimConfig(model=ModelConfig(decoder_channels=16), synthetic=small_scenario())
    report = run_bench(cfg, [(120, 200)], ["torch", "onnxruntime", "tensorrt"], frames=3, warmup=1)
    runs = {(r["backend"], r["model"]): r for r in report["runs"]}
    assert set(runs) == {(b, m) for b in ("torch", "onnxruntime") for m in ("image", "ssp")}
    for run in runs.values():
        assert run["input_size"] == [128, 224] and run["frames"] == 3 and run["precision"] == "fp32"
        assert set(STAGES) <= set(run["latency_ms"]) and run["latency_ms"]["total"] > 0 and run["fps"] > 0
        p50, p90, p99 = (run["total_ms"][k] for k in ("p50", "p90", "p99"))
        assert 0 < p50 <= p90 <= p99 and p50 == pytest.approx(run["latency_ms"]["total"], abs=1e-3)
        assert sum(run["stage_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert runs[("onnxruntime", "image")]["stage_share"]["fusion"] == 0 < runs[("onnxruntime", "ssp")][
        "stage_share"]["fusion"]
    assert runs[("torch", "image")]["fused_frames"] == 0 and runs[("torch", "ssp")]["latency_ms"]["fusion"] >= 0
    cost = report["cost"][0]
    assert cost["input_size"] == [128, 224] and cost["params_ssp_m"] > cost["params_image_m"] > 0
    assert cost["gflops_ssp"] == pytest.approx(cost["gflops_image"] + cost["gflops_fusion"], abs=0.02)
    by_backend = {q["backend"]: q for q in report["ratios"]}
    onnx = by_backend["onnxruntime"]
    assert onnx["onnxruntime_over_torch_throughput"] == pytest.approx(
        runs[("torch", "ssp")]["latency_ms"]["total"] / runs[("onnxruntime", "ssp")]["latency_ms"]["total"], rel=1e-2)
    if importlib.util.find_spec("tensorrt") is None:
        assert report["skipped"] == [{"backend": "tensorrt", "precision": "fp16", "size": [120, 200],
                                      "reason": "python module 'tensorrt' not installed"}]
    json_path, md_path, png_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["ratios"] == report["ratios"]
    page = md_path.read_text()
    assert "| onnxruntime | fp32 | ssp | 120x200 |" in page and "ONNX Runtime / torch throughput" in page
    assert "| paper, A100 | 736x1280 | 9.62 (104) | 10.53 (95) | 1.095 |" in page
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000
    (reg,) = report["registration"]
    assert reg["size"] == [120, 200] and reg["pairs"] == 3 and reg["speed_ratio"] > 0
    assert reg["ours"]["median_ms"] > 0 and reg["opencv"]["median_ms"] > 0
    assert "registration 120x200, 3 pairs, ours vs OpenCV" in page
    (stab,) = report["stabiliser"]
    assert stab["size"] == [120, 200] and stab["frames"] == 3 and stab["input_size"] == [384, 640]
    assert stab["latency_ms"]["total"] == pytest.approx(sum(stab["latency_ms"][s] for s in STABILISER_STAGES), rel=0.2)
    assert min(stab["latency_ms"].values()) > 0
    assert stab["over_segmenter"]["onnxruntime fp32"] == pytest.approx(
        stab["latency_ms"]["total"] / runs[("onnxruntime", "image")]["latency_ms"]["segmenter"], rel=1e-2)
    assert "stabiliser 120x200 (similarity at 384x640)" in page and "onnxruntime fp32" in page


def test_ratios_compare_ssp_with_the_image_model_of_the_same_backend_and_size() -> None:
    def run(backend, model, total, precision="fp32", **stages):
        return {"backend": backend, "precision": precision, "model": model, "size": [10, 10], "fps": 1.0,
                "latency_ms": {"total": total, **stages}, "total_ms": {"p50": total, "p90": total, "p99": total},
                "stage_share": dict.fromkeys(STAGES, 0.2), "peak_rss_mb": None}

    runs = [run("torch", "image", 100.0, segmenter=90.0), run("torch", "ssp", 110.0, segmenter=90.0, fusion=6.0,
                                                              registration=3.0),
            run("onnxruntime", "image", 50.0, segmenter=40.0), run("onnxruntime", "ssp", 55.0, segmenter=40.0,
                                                                   fusion=1.0, registration=1.0),
            run("onnxruntime", "image", 30.0, "int8", segmenter=20.0),
            run("onnxruntime", "ssp", 35.0, "int8", segmenter=20.0, fusion=1.0)]
    out = {(q["backend"], q["precision"]): q for q in ratios(runs)}
    assert out[("torch", "fp32")] == {"backend": "torch", "precision": "fp32", "size": [10, 10],
                                      "ssp_over_image_latency": 1.1, "fusion_plus_registration_over_segmenter": 0.1}
    assert out[("onnxruntime", "fp32")]["onnxruntime_over_torch_throughput"] == 2.0
    assert out[("onnxruntime", "fp32")]["fusion_plus_registration_over_segmenter"] == 0.05
    int8 = out[("onnxruntime", "int8")]
    assert int8["int8_over_fp32_segmenter_throughput"] == 2.0 and int8["int8_over_fp32_throughput"] == 1.571
    assert "onnxruntime_over_torch_throughput" not in int8
    page = markdown({"created": "t", "frames": 1, "warmup": 0, "seed": 0, "cost": [], "runs": runs,
                     "paper_a100_fps": {"image": 104.0, "ssp": 95.0},
                     "machine": {"cpu": "x", "cores": 2, "device": "cpu"},
                     "ratios": ratios(runs), "skipped": [], "registration": []})
    assert "torch fp32 10x10: SSP / image model latency 1.100" in page
    assert "INT8 / FP32 throughput: segmenter 2.00x, SSP 1.57x" in page
    assert "| onnxruntime int8 | 10x10 | 30.00 (1.0) | 35.00 (1.0) | 1.167 |" in page


def test_int8_is_measured_on_onnxruntime_only() -> None:
    with pytest.raises(SspError, match="INT8 is measured on ONNX Runtime; add --backend onnxruntime"):
        variants(["torch"], SimConfig(), int8=True)
    assert variants(["torch", "onnxruntime", "tensorrt"], SimConfig(), int8=True) == [
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tensorrt", "fp16")]


@pytest.mark.slow
def test_bench_measures_onnxruntime_int8_beside_fp32() -> None:
    cfg = SimConfig(model=ModelConfig(decoder_channels=16), synthetic=small_scenario())
    report = run_bench(cfg, [(120, 200)], ["onnxruntime"], frames=2, warmup=1, int8=True)
    assert [(r["precision"], r["model"]) for r in report["runs"]] == [
        ("fp32", "image"), ("fp32", "ssp"), ("int8", "image"), ("int8", "ssp")]
    (fp32, int8) = report["ratios"]
    assert int8["precision"] == "int8" and int8["int8_over_fp32_segmenter_throughput"] > 0
    assert "int8_over_fp32_throughput" not in fp32
