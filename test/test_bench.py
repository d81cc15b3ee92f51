import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import small_scenario

from ssp_ros.config import ModelConfig, RuntimeConfig, SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.bench import (
    input_size_for,
    markdown,
    pipeline_backends,
    ratios,
    run_bench,
    time_image_and_ssp,
    variants,
    write_report,
)
from ssp_ros.eval.interleave import peak_rss_reset, ratio_spread, time_interleaved
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
        assert len(run["frame_total_ms"]) == 3 and sorted(run["frame_total_ms"])[1] == pytest.approx(
            run["latency_ms"]["total"], abs=1e-3)
        assert run["peak_rss_mb"] > 0 if peak_rss_reset() else run["peak_rss_mb"] is None
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
    assert onnx["ssp_over_image_per_frame"] == ratio_spread(runs[("onnxruntime", "ssp")]["frame_total_ms"],
                                                             runs[("onnxruntime", "image")]["frame_total_ms"])
    assert report["target_ssp_over_image"] == 1.05
    assert onnx["meets_target"] == (onnx["ssp_over_image_per_frame"]["p50"] <= 1.05)
    assert onnx["onnxruntime_over_torch_throughput"] == pytest.approx(
        runs[("torch", "ssp")]["latency_ms"]["total"] / runs[("onnxruntime", "ssp")]["latency_ms"]["total"], rel=1e-2)
    if importlib.util.find_spec("tensorrt") is None:
        assert report["skipped"] == [{"backend": "tensorrt", "precision": "fp16", "size": [120, 200],
                                      "reason": "python module 'tensorrt' not installed"}]
    json_path, md_path, png_path = write_report(report, tmp_path)
    written = json.loads(json_path.read_text())
    assert written["ratios"] == report["ratios"] and written["target_ssp_over_image"] == 1.05
    assert set(written["ratios"][0]["ssp_over_image_per_frame"]) == {"p10", "p50", "p90"}
    page = md_path.read_text()
    assert "| SSP / image model | per frame p10 / p50 / p90 | ≤ 1.05 |" in page
    assert "| onnxruntime | fp32 | ssp | 120x200 |" in page and "ONNX Runtime / torch throughput" in page
    assert "| paper, A100 | 736x1280 | 9.62 (104) | 10.53 (95) | 1.095 | – | – |" in page
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
    def run(backend, model, total, precision="fp32", frames=None, **stages):
        return {"backend": backend, "precision": precision, "model": model, "size": [10, 10], "fps": 1.0,
                "latency_ms": {"total": total, **stages}, "total_ms": {"p50": total, "p90": total, "p99": total},
                "frame_total_ms": frames or [total] * 3, "stage_share": dict.fromkeys(STAGES, 0.2),
                "peak_rss_mb": None}

    runs = [run("torch", "image", 100.0, frames=[100.0, 90.0, 110.0], segmenter=90.0),
            run("torch", "ssp", 110.0, frames=[121.0, 99.0, 110.0], segmenter=90.0, fusion=6.0, registration=3.0),
            run("onnxruntime", "image", 50.0, segmenter=40.0), run("onnxruntime", "ssp", 52.0, segmenter=40.0,
                                                                   fusion=1.0, registration=1.0),
            run("onnxruntime", "image", 30.0, "int8", segmenter=20.0),
            run("onnxruntime", "ssp", 35.0, "int8", segmenter=20.0, fusion=1.0),
            # the load fell between the frames: by medians SSP looks cheaper, frame by frame it costs 10 % more
            run("tensorrt", "image", 100.0, "fp16", frames=[100.0, 50.0, 100.0], segmenter=90.0),
            run("tensorrt", "ssp", 60.0, "fp16", frames=[60.0, 60.0, 110.0], segmenter=50.0)]
    out = {(q["backend"], q["precision"]): q for q in ratios(runs)}
    trt = out[("tensorrt", "fp16")]
    assert trt["ssp_over_image_latency"] == 0.6 and trt["ssp_over_image_per_frame"]["p50"] == 1.1
    assert not trt["meets_target"], "the target is held to the per-frame median"
    # per frame: 121/100 = 1.21, 99/90 = 1.1, 110/110 = 1.0 → p10 1.02, p50 1.1, p90 1.188 (linear percentiles)
    assert out[("torch", "fp32")] == {"backend": "torch", "precision": "fp32", "size": [10, 10],
                                      "ssp_over_image_latency": 1.1,
                                      "ssp_over_image_per_frame": {"p10": 1.02, "p50": 1.1, "p90": 1.188},
                                      "meets_target": False, "fusion_plus_registration_over_segmenter": 0.1}
    onnx = out[("onnxruntime", "fp32")]
    assert onnx["onnxruntime_over_torch_throughput"] == 2.115 and onnx["meets_target"]
    assert onnx["fusion_plus_registration_over_segmenter"] == 0.05
    assert onnx["ssp_over_image_per_frame"] == {"p10": 1.04, "p50": 1.04, "p90": 1.04}
    int8 = out[("onnxruntime", "int8")]
    assert int8["int8_over_fp32_segmenter_throughput"] == 2.0 and int8["int8_over_fp32_throughput"] == 1.486
    assert "onnxruntime_over_torch_throughput" not in int8
    page = markdown({"created": "t", "frames": 1, "warmup": 0, "seed": 0, "cost": [], "runs": runs,
                     "paper_a100_fps": {"image": 104.0, "ssp": 95.0}, "target_ssp_over_image": 1.05,
                     "machine": {"cpu": "x", "cores": 2, "device": "cpu"},
                     "ratios": ratios(runs), "skipped": [], "registration": []})
    assert ("torch fp32 10x10: SSP / image model latency 1.100 (per frame p10 / p50 / p90 1.020 / 1.100 / 1.188; "
            "target ≤ 1.05 missed, by the per-frame median)") in page
    assert "onnxruntime fp32 10x10: SSP / image model latency 1.040 (per frame p10 / p50 / p90 1.040 / 1.040 / " \
           "1.040; target ≤ 1.05 met, by the per-frame median)" in page
    assert "INT8 / FP32 throughput: segmenter 2.00x, SSP 1.49x" in page
    assert "| onnxruntime int8 | 10x10 | 30.00 (1.0) | 35.00 (1.0) | 1.167 | 1.167 / 1.167 / 1.167 | no |" in page


def test_ratio_spread_gives_percentiles_of_the_per_frame_ratio() -> None:
    image = [10.0, 20.0, 10.0, 40.0, 10.0]
    ssp = [10.0, 22.0, 12.0, 52.0, 14.0]  # per frame 1.0, 1.1, 1.2, 1.3, 1.4 (order does not matter)
    assert ratio_spread(ssp, image) == {"p10": 1.04, "p50": 1.2, "p90": 1.36}
    assert ratio_spread([5.0], [4.0]) == {"p10": 1.25, "p50": 1.25, "p90": 1.25}
    with pytest.raises(ValueError, match="equally long, non-empty series, got 2 and 1 frames"):
        ratio_spread([1.0, 2.0], [1.0])


@dataclass
class Recording:
    """A pipeline that records which frames it was given, into a log shared with the others."""

    name: str
    log: list[tuple[str, float, int]]
    fused: bool = False

    def process(self, frame: np.ndarray, stamp: float) -> SimpleNamespace:
        self.log.append((self.name, stamp, id(frame)))
        total = 10.0 + stamp  # a known time per frame, not a clock
        return SimpleNamespace(timings_ms={"segmenter": total, "total": total}, fused=self.fused)


def test_interleaving_turns_the_order_around_each_frame_on_the_same_frames() -> None:
    log: list[tuple[str, float, int]] = []
    frames = [(np.full((4, 4, 3), i, np.uint8), float(i)) for i in range(5)]
    pipelines = {"image": Recording("image", log), "ssp": Recording("ssp", log, fused=True)}
    timed = time_interleaved(pipelines, frames, warmup=2)
    assert [(name, stamp) for name, stamp, _ in log] == [
        ("image", 0.0), ("ssp", 0.0), ("ssp", 1.0), ("image", 1.0), ("image", 2.0), ("ssp", 2.0),
        ("ssp", 3.0), ("image", 3.0), ("image", 4.0), ("ssp", 4.0)]
    assert [frame_id for _, _, frame_id in log[::2]] == [frame_id for _, _, frame_id in log[1::2]]  # same array
    for name, timing in timed.items():  # the warm-up frames are run, not timed
        assert [t["total"] for t in timing.timings_ms] == [12.0, 13.0, 14.0], name
        assert timing.peak_rss_mb > 0 if peak_rss_reset() else timing.peak_rss_mb is None
    assert timed["image"].fused_frames == 0 and timed["ssp"].fused_frames == 3


def test_tensorrt_runs_image_model_and_ssp_on_a_backend_each(monkeypatch, tmp_path: Path, small_video) -> None:
    """Through the tensorrt/pycuda stand-ins: on one shared TensorRT backend the image model's segment() reuses the
    buffers of SSP's previous features, which the backend refuses; the bench gives each pipeline its own."""
    import stand_ins

    from ssp_ros.backends.tensorrt_backend import TensorRTBackend
    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    installed = stand_ins.install(monkeypatch)
    folder = stand_ins.write_export(tmp_path / "export").folder
    build_engines(folder, BuildOptions(precision="fp16"), progress=lambda message: None)
    runtime = RuntimeConfig(backend="tensorrt", export_dir=str(folder), device="cuda", precision="fp16")
    frames = [(f.image, f.stamp) for f in small_video[:6]]
    shared = TensorRTBackend.from_config(runtime)
    try:
        with pytest.raises(SspError, match="its GPU buffer was reused"):
            time_image_and_ssp(SspConfig(), (shared, shared), frames, warmup=1)
    finally:
        shared.close()
    image_backend, ssp_backend = pipeline_backends("tensorrt", lambda: TensorRTBackend.from_config(runtime))
    try:
        assert image_backend is not ssp_backend
        runs = time_image_and_ssp(SspConfig(), (image_backend, ssp_backend), frames, warmup=1)
    finally:
        image_backend.close()
        ssp_backend.close()
    assert runs["image"]["frames"] == runs["ssp"]["frames"] == 5 and runs["ssp"]["fused_frames"] >= 3
    assert installed.gpu.live == [] and installed.gpu.problems == []


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_torch_and_onnxruntime_pipelines_share_one_backend(name: str) -> None:
    """Their calls keep nothing between frames: the state goes back to each pipeline."""
    built = []
    image_backend, ssp_backend = pipeline_backends(name, lambda: built.append(object()) or built[-1])
    assert image_backend is ssp_backend and len(built) == 1


def test_int8_is_measured_on_onnxruntime_only() -> None:
    with pytest.raises(SspError, match="INT8 is measured on ONNX Runtime; add --backend onnxruntime"):
        variants(["torch"], SimConfig(), int8=True)
    assert variants(["torch", "onnxruntime", "tensorrt"], SimConfig(), int8=True) == [
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tensorrt", "fp16")]


@pytest.mark.slow
def test_bench_measures_onnxruntime_int8_beside_fp32(monkeypatch) -> None:
    """The INT8 rows and ratios beside FP32. Calibrated on the first frame of two flights rather than 120 frames of
    twelve: what calibration does is test_quantize's; here it took four fifths of the time."""
    from ssp_ros.deploy import quantize

    calibrated, original = [], quantize.quantize_export
    monkeypatch.setattr(quantize, "quantize_export", lambda folder, **kwargs: calibrated.append(kwargs) or
                        original(folder, calib_frames=2, seeds=quantize.TRAINING_SEEDS[:2], **kwargs))
    cfg = SimConfig(model=ModelConfig(decoder_channels=16), synthetic=small_scenario())
    report = run_bench(cfg, [(120, 200)], ["onnxruntime"], frames=2, warmup=1, int8=True)
    assert [(r["precision"], r["model"]) for r in report["runs"]] == [
        ("fp32", "image"), ("fp32", "ssp"), ("int8", "image"), ("int8", "ssp")]
    (fp32, int8) = report["ratios"]
    assert int8["precision"] == "int8" and int8["int8_over_fp32_segmenter_throughput"] > 0
    assert "int8_over_fp32_throughput" not in fp32
    assert calibrated == [{"scenario": cfg.synthetic}], "the bench calibrates on its own scenario"
