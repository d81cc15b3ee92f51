"""``ssp bench``: what the image model, SSP and the stabiliser cost, per backend and frame size, as JSON + Markdown.

Latency comes from the streaming pipeline's own per-stage timers (median of N frames after a warm-up)
on synthetic drone frames, so it is what the node and replay see; the per-frame total also gets its
p50 / p90 / p99, and each stage its share of the total. The image model is the same pipeline with
propagation off. The two run interleaved, frame by frame on the same frames, the order turning around each frame
(``interleave.py``), so that both see the same load: SSP / image model is the ratio of their median totals, and the
spread of the per-frame ratio (p10 / p50 / p90) says how steady it was. The two pipelines share one backend
object on torch and ONNX Runtime, whose calls keep nothing between frames (the state is handed back to each
pipeline); TensorRT gets one backend per pipeline, because its outputs live in a ring of two buffer sets per method
and the other pipeline's calls would reuse the set that holds SSP's previous frame. Each backend runs at its
precision (torch and ONNX Runtime FP32; ``int8`` adds ONNX Runtime on a statically quantized segmenter; TensorRT at
``runtime.precision``). Parameters and GFLOPs come from torch (``torch.utils.flop_counter``, which counts a
multiply-add as 2 FLOPs); peak memory is the process's peak resident set while each pipeline ran its frames (the
counter is reset before each pipeline's frame through ``/proc/self/clear_refs``, so it includes what both
pipelines keep resident: the shared backend and the other's state).

Speed targets live here and not in timed tests: the report prints the ratios that matter (SSP over
image-model latency against ``TARGET_SSP_OVER_IMAGE``, fusion + registration over the segmenter, ONNX Runtime over
torch throughput, INT8 over FP32) and plots the stages of image model and SSP next to the paper's A100 figures.

The stabiliser (SSP over another segmenter, ``ssp_ros.stabiliser``) runs on the same frames with their true
labels as the other segmenter's output; its cost is registration + its own similarity model + fusion, reported
per stage and as a share of our image model's segmenter time on each backend (the issue's goal: ≤ 15 % on ONNX
Runtime).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.util
import json
import os
import platform
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ssp_ros.backends import make_backend
from ssp_ros.backends.export_info import SIDECAR
from ssp_ros.classes import load_class_set
from ssp_ros.config import ModelConfig, RuntimeConfig, SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.interleave import RATIO_PERCENTILES, PipelineTiming, ratio_spread, time_interleaved
from ssp_ros.eval.registration_check import compare, summary
from ssp_ros.pipeline import STAGES, Pipeline
from ssp_ros.stabiliser import STAGES as STABILISER_STAGES
from ssp_ros.stabiliser import make_stabiliser
from ssp_ros.synthetic import SyntheticVideo, relative_homography
from ssp_ros.synthetic.config import SimConfig

PAPER_GFLOPS = {"image": 210.6, "ssp": 322.8}  # SSP paper, Hiera-S + UPerNet 256 at 736×1280
PAPER_FPS_A100 = {"image": 104.0, "ssp": 95.0}  # the same models on an A100 (the paper's table)
PERCENTILES = (50, 90, 99)
TARGET_SSP_OVER_IMAGE = 1.05  # the product's target for SSP / image model latency (a benchmark, not a test)
PAPER_MODEL = ModelConfig(backbone="sam2_hiera_small", decoder_channels=256, dataset="uavid_vdd",
                          input_size=(736, 1280))


def input_size_for(frame_size: tuple[int, int], multiple: int = 32) -> tuple[int, int]:
    """The model input that holds a frame of ``frame_size`` without scaling (rounded up to ``multiple``)."""
    return tuple(-(-v // multiple) * multiple for v in frame_size)  # type: ignore[return-value]


# Backends that keep per-stream state on the device: TensorRT hands out its outputs from a ring of two buffer sets
# per method, so the image model's segment() would reuse the set that holds SSP's previous features (BufferRing).
OWN_BACKEND_PER_PIPELINE = frozenset({"tensorrt"})


def pipeline_backends(name: str, build: Callable[[], Any]) -> tuple[Any, Any]:
    """The backends of the image-model and the SSP pipeline: one object built by ``build`` for both, or one each
    for a backend in ``OWN_BACKEND_PER_PIPELINE``."""
    shared = build()
    return shared, (build() if name in OWN_BACKEND_PER_PIPELINE else shared)


def summarise(timing: PipelineTiming) -> dict[str, Any]:
    """One pipeline's timed frames as a run of the report: median per-stage latency (ms), the total's percentiles and
    each frame's total (in frame order, to pair with the other pipeline's), stage shares, fused frames, peak RSS."""
    # a stage a frame skipped (fusion after a reset) took 0
    timings = {stage: [t.get(stage, 0.0) for t in timing.timings_ms] for stage in (*STAGES, "total")}
    latency = {stage: round(statistics.median(v), 3) for stage, v in timings.items()}
    stage_sum = sum(latency[stage] for stage in STAGES) or 1.0
    peak = timing.peak_rss_mb
    return {"latency_ms": latency, "fps": round(1000.0 / latency["total"], 2), "frames": len(timing.timings_ms),
            "total_ms": {f"p{q}": round(float(np.percentile(timings["total"], q)), 3) for q in PERCENTILES},
            "frame_total_ms": [round(ms, 3) for ms in timings["total"]],
            "stage_share": {stage: round(latency[stage] / stage_sum, 4) for stage in STAGES},
            "fused_frames": timing.fused_frames, "peak_rss_mb": None if peak is None else round(peak, 1)}


def time_image_and_ssp(cfg: SspConfig, backends: tuple[Any, Any], frames: list[tuple[np.ndarray, float]],
                       warmup: int) -> dict[str, dict[str, Any]]:
    """The image model (propagation off, on ``backends[0]``) and SSP (on, ``backends[1]``) timed interleaved frame by
    frame over ``frames`` after ``warmup`` frames: "image" / "ssp" → its run (``summarise``)."""
    pipelines = {model: Pipeline(dataclasses.replace(cfg, propagation=dataclasses.replace(cfg.propagation,
                                                                                          enabled=fuse)), backend)
                 for (model, fuse), backend in zip((("image", False), ("ssp", True)), backends)}
    return {model: summarise(timing) for model, timing in time_interleaved(pipelines, frames, warmup).items()}


def time_stabiliser(cfg: SspConfig, frames: list[tuple[np.ndarray, float, np.ndarray]], warmup: int,
                    num_classes: int) -> dict[str, Any]:
    """Median per-stage latency (ms) of the stabiliser over (frame, stamp, labels), after ``warmup`` frames."""
    stabiliser = make_stabiliser(cfg, num_classes)
    timings: dict[str, list[float]] = {stage: [] for stage in (*STABILISER_STAGES, "total")}
    for i, (image, stamp, labels) in enumerate(frames):
        result = stabiliser.process(image, labels, stamp)
        if i >= warmup:
            for stage, ms in timings.items():
                ms.append(result.timings_ms[stage])
    return {"latency_ms": {stage: round(statistics.median(v), 3) for stage, v in timings.items()},
            "total_ms": {f"p{q}": round(float(np.percentile(timings["total"], q)), 3) for q in PERCENTILES},
            "frames": len(frames) - warmup, "input_size": list(cfg.stabiliser.input_size)}


def model_cost(model_cfg: ModelConfig, num_classes: int, input_size: tuple[int, int]) -> dict[str, Any]:
    """Parameters and GFLOPs of the image model and of SSP (image model + fusion step) at ``input_size``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ssp_ros.models import build_ssp

    model = build_ssp(dataclasses.replace(model_cfg, weights=None, backbone_weights=None), num_classes,
                      with_weights=False).eval()
    h, w = input_size
    with torch.no_grad(), FlopCounterMode(display=False) as seg_count:
        logits, feats = model.segmenter(torch.rand(1, 3, h, w) * 255.0)
    with torch.no_grad(), FlopCounterMode(display=False) as fusion_count:
        model.warp_fusion_step()(logits, feats, logits, feats, torch.eye(3)[None])
    seg, fusion = seg_count.get_total_flops() / 1e9, fusion_count.get_total_flops() / 1e9
    params_image = sum(p.numel() for p in model.segmenter.parameters())
    return {"backbone": model_cfg.backbone, "decoder_channels": model_cfg.decoder_channels,
            "input_size": [h, w], "params_image_m": round(params_image / 1e6, 3),
            "params_ssp_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "gflops_image": round(seg, 2), "gflops_fusion": round(fusion, 2), "gflops_ssp": round(seg + fusion, 2)}


def variants(backends: list[str], cfg: SspConfig, int8: bool) -> list[tuple[str, str]]:
    """The (backend, precision) pairs to measure: torch and ONNX Runtime in FP32, ONNX Runtime also in INT8 when
    asked, TensorRT at ``runtime.precision``."""
    if int8 and "onnxruntime" not in backends:
        raise SspError("int8: INT8 is measured on ONNX Runtime; add --backend onnxruntime")
    pairs = []
    for name in backends:
        pairs.append((name, cfg.runtime.precision if name == "tensorrt" else "fp32"))
        if name == "onnxruntime" and int8:
            pairs.append((name, "int8"))
    return pairs


def _backend_config(name: str, precision: str, cfg: SimConfig, scratch: Path) -> SimConfig:
    """``cfg`` with its runtime set to run ``cfg.model`` on backend ``name`` (ONNX Runtime gets a fresh export at the
    model's input size, and in INT8 a quantized copy of it, calibrated on synthetic training flights)."""
    if name == "onnxruntime":
        from ssp_ros.deploy.export import export_config  # needs torch: the bench exports what it measures

        h, w = cfg.model.input_size
        folder = scratch / f"export_{h}x{w}"
        if not (folder / SIDECAR).is_file():
            export_config(cfg.model, folder)
        if precision == "int8":
            from ssp_ros.deploy.quantize import quantize_export

            quantized = scratch / f"export_{h}x{w}_int8"
            if not quantized.is_dir():
                shutil.copytree(folder, quantized)
                quantize_export(quantized, scenario=cfg.synthetic)
            folder = quantized
        cfg = dataclasses.replace(cfg, runtime=RuntimeConfig(backend="onnxruntime", export_dir=str(folder),
                                                             threads=cfg.runtime.threads))
    elif name == "torch":
        cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, backend="torch", export_dir=None))
    elif cfg.runtime.backend != name:
        raise SspError(f"runtime.backend: benchmarking {name} needs a config with runtime.backend: {name} and its "
                       "engines in runtime.export_dir")
    return cfg


def run_bench(cfg: SimConfig, sizes: list[tuple[int, int]], backends: list[str], frames: int, warmup: int,
              seed: int = 2000, paper: bool = False, int8: bool = False) -> dict[str, Any]:
    """Benchmark every (size, backend, precision); a backend that cannot run here is listed with the reason."""
    num_classes = load_class_set(cfg.model.dataset).num_classes
    measured = variants(backends, cfg, int8)
    report: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "cores": os.cpu_count(), "device": cfg.runtime.device},
        "frames": frames, "warmup": warmup, "seed": seed, "runs": [], "skipped": [], "cost": [], "registration": [],
        "stabiliser": [], "paper_a100_fps": PAPER_FPS_A100, "target_ssp_over_image": TARGET_SSP_OVER_IMAGE}
    with tempfile.TemporaryDirectory(prefix="ssp-bench-") as scratch:
        for size in sizes:
            model_cfg = dataclasses.replace(cfg.model, input_size=input_size_for(size))
            sized = dataclasses.replace(cfg, model=model_cfg)
            if importlib.util.find_spec("torch") is not None:
                report["cost"].append(model_cost(model_cfg, num_classes, model_cfg.input_size))
            scenario = dataclasses.replace(cfg.synthetic, height=size[0], width=size[1])
            video = list(SyntheticVideo(scenario, frames + warmup, seed))
            clip = [(f.image, f.stamp) for f in video]
            pairs = [(a.image, b.image, relative_homography(a, b)) for a, b in zip(video[:-1], video[1:])]
            report["registration"].append({"size": list(size), **summary(compare(pairs, cfg.registration))})
            labelled = [(f.image, f.stamp, f.labels) for f in video]
            report["stabiliser"].append({"size": list(size), **time_stabiliser(sized, labelled, warmup, num_classes)})
            for name, precision in measured:
                if importlib.util.find_spec(name) is None:  # each backend is named after the module it needs
                    report["skipped"].append({"backend": name, "precision": precision, "size": list(size),
                                              "reason": f"python module '{name}' not installed"})
                    continue
                run_cfg = _backend_config(name, precision, sized, Path(scratch))
                backends = pipeline_backends(name, functools.partial(make_backend, run_cfg, num_classes))
                try:
                    runs = time_image_and_ssp(run_cfg, backends, clip, warmup)
                finally:
                    for backend in backends:  # close() is idempotent: a shared backend may be closed twice
                        _close(backend)
                for model, run in runs.items():
                    report["runs"].append({"backend": name, "precision": precision, "model": model,
                                           "size": list(size), "input_size": list(backends[0].input_size), **run})
    if paper:
        report["paper_cost"] = {**model_cost(PAPER_MODEL, load_class_set(PAPER_MODEL.dataset).num_classes,
                                             PAPER_MODEL.input_size), "paper_gflops": PAPER_GFLOPS}
    report["ratios"] = ratios(report["runs"])
    for entry in report["stabiliser"]:
        entry["over_segmenter"] = {f"{r['backend']} {r['precision']}": round(
            entry["latency_ms"]["total"] / r["latency_ms"]["segmenter"], 4)
            for r in report["runs"] if r["model"] == "image" and r["size"] == entry["size"]}
    return report


def _close(backend: Any) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size, backend and precision: SSP / image-model latency (the ratio of the median totals, the spread of the
    per-frame ratio, and whether its median meets ``TARGET_SSP_OVER_IMAGE``: the per-frame ratio pairs two timings
    taken back to back, so a change of load between frames cancels out, while the ratio of medians moved by up to
    0.21 between runs on 2 loaded cores against 0.07 for the per-frame median) and (fusion + registration) /
    segmenter; ONNX
    Runtime FP32 / torch throughput of SSP; INT8 / FP32 throughput of the segmenter and of SSP."""
    index = {(r["backend"], r.get("precision", "fp32"), r["model"], tuple(r["size"])): r for r in runs}
    out = []
    for (backend, precision, model, size), run in index.items():
        if model != "ssp" or (backend, precision, "image", size) not in index:
            continue
        image_run = index[(backend, precision, "image", size)]
        image, lat = image_run["latency_ms"], run["latency_ms"]
        per_frame = ratio_spread(run["frame_total_ms"], image_run["frame_total_ms"])
        entry = {"backend": backend, "precision": precision, "size": list(size),
                 "ssp_over_image_latency": round(lat["total"] / image["total"], 3),
                 "ssp_over_image_per_frame": per_frame, "meets_target": per_frame["p50"] <= TARGET_SSP_OVER_IMAGE,
                 "fusion_plus_registration_over_segmenter": round(
                     (lat.get("fusion", 0.0) + lat.get("registration", 0.0)) / lat["segmenter"], 4)}
        if backend == "onnxruntime" and precision == "fp32" and ("torch", "fp32", "ssp", size) in index:
            entry["onnxruntime_over_torch_throughput"] = round(
                index[("torch", "fp32", "ssp", size)]["latency_ms"]["total"] / lat["total"], 3)
        if precision == "int8" and (backend, "fp32", "ssp", size) in index:
            fp32 = index[(backend, "fp32", "ssp", size)]["latency_ms"]
            entry["int8_over_fp32_segmenter_throughput"] = round(fp32["segmenter"] / lat["segmenter"], 3)
            entry["int8_over_fp32_throughput"] = round(fp32["total"] / lat["total"], 3)
        out.append(entry)
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: cost table, latency table per run, ratios, skipped backends."""
    lines = [f"# ssp bench ({report['created']})", "",
             f"{report['frames']} frames after {report['warmup']} warm-up, synthetic seed {report['seed']}, "
             f"machine: {report['machine']['cpu']} ({report['machine']['cores']} cores), device "
             f"{report['machine']['device']}.", ""]
    if report["cost"] or report.get("paper_cost"):
        lines += ["| model | input | params image / SSP (M) | GFLOPs image / fusion / SSP |", "|---|---|---|---|"]
        for c in report["cost"] + ([report["paper_cost"]] if report.get("paper_cost") else []):
            lines.append(f"| {c['backbone']} + UPerNet {c['decoder_channels']} | {c['input_size'][0]}x"
                         f"{c['input_size'][1]} | {c['params_image_m']} / {c['params_ssp_m']} | "
                         f"{c['gflops_image']} / {c['gflops_fusion']} / {c['gflops_ssp']} |")
        if report.get("paper_cost"):
            p = report["paper_cost"]["paper_gflops"]
            lines.append(f"\nThe paper reports {p['image']} / {p['ssp']} GFLOPs for the image model / SSP at 736x1280; "
                         "torch's counter counts a multiply-add as 2 FLOPs.")
        lines.append("")
    stages = (*STAGES, "total")
    lines += ["| backend | precision | model | frame | " + " | ".join(stages) + " | total p90 | total p99 | FPS | "
              "peak RSS MiB |", "|---" * (len(stages) + 8) + "|"]
    for r in report["runs"]:
        cells = " | ".join(f"{r['latency_ms'].get(s, 0.0):.2f}" for s in stages)
        lines.append(f"| {r['backend']} | {r['precision']} | {r['model']} | {_size(r)} | {cells} | "
                     f"{r['total_ms']['p90']:.2f} | {r['total_ms']['p99']:.2f} | {r['fps']} | {r['peak_rss_mb']} |")
    lines += ["", "Latency in ms: the median of each stage, and of the per-frame totals with their p90 and p99 "
              f"({report['frames']} frames, so p99 is close to the slowest frame). Image model and SSP ran "
              "interleaved, frame by frame on the same frames, the order turning around each frame; peak RSS is the "
              "process's peak while that pipeline ran a frame (both pipelines' memory stays resident).", "",
              "Share of each stage in the sum of the stage medians, percent:", "",
              "| backend | precision | model | frame | " + " | ".join(STAGES) + " |", "|---" * (len(STAGES) + 4) + "|"]
    for r in report["runs"]:
        cells = " | ".join(f"{100 * r['stage_share'][s]:.1f}" for s in STAGES)
        lines.append(f"| {r['backend']} | {r['precision']} | {r['model']} | {_size(r)} | {cells} |")
    paper, target = report["paper_a100_fps"], report["target_ssp_over_image"]
    lines += ["", "Image model vs SSP, next to the paper's table (Hiera-S + UPerNet at 736x1280 on an A100):", "",
              "| where | frame | image model ms (FPS) | SSP ms (FPS) | SSP / image model | per frame p10 / p50 / p90 | "
              f"≤ {target} |", "|---|---|---|---|---|---|---|",
              f"| paper, A100 | 736x1280 | {1000 / paper['image']:.2f} ({paper['image']:g}) | "
              f"{1000 / paper['ssp']:.2f} ({paper['ssp']:g}) | {paper['image'] / paper['ssp']:.3f} | – | – |"]
    index = {(r["backend"], r["precision"], r["model"], tuple(r["size"])): r for r in report["runs"]}
    for q in report["ratios"]:
        image, ssp = (index[(q["backend"], q["precision"], m, tuple(q["size"]))] for m in ("image", "ssp"))
        lines.append(f"| {q['backend']} {q['precision']} | {_size(q)} | {image['latency_ms']['total']:.2f} "
                     f"({image['fps']}) | {ssp['latency_ms']['total']:.2f} ({ssp['fps']}) | "
                     f"{q['ssp_over_image_latency']:.3f} | {_spread(q)} | {'yes' if q['meets_target'] else 'no'} |")
    lines += ["", "SSP / image model is the ratio of the median totals; the per-frame ratio (SSP's total over the "
              f"image model's on the same frame) gives its spread, and its median is what is held to ≤ {target}: "
              "it pairs timings taken back to back, so it moves less with the machine's load.", ""]
    for q in report["ratios"]:
        text = (f"- {q['backend']} {q['precision']} {_size(q)}: SSP / image model latency "
                f"{q['ssp_over_image_latency']:.3f} (per frame p10 / p50 / p90 {_spread(q)}; target ≤ {target} "
                f"{'met' if q['meets_target'] else 'missed'}, by the per-frame median); (fusion + registration) / "
                "segmenter "
                f"{100 * q['fusion_plus_registration_over_segmenter']:.1f} %")
        if "onnxruntime_over_torch_throughput" in q:
            text += f"; ONNX Runtime / torch throughput {q['onnxruntime_over_torch_throughput']:.2f}x"
        if "int8_over_fp32_throughput" in q:
            text += (f"; INT8 / FP32 throughput: segmenter {q['int8_over_fp32_segmenter_throughput']:.2f}x, "
                     f"SSP {q['int8_over_fp32_throughput']:.2f}x")
        lines.append(text)
    lines += [f"- skipped {s['backend']} {s['precision']} at {_size(s)}: {s['reason']}" for s in report["skipped"]]
    for st in report.get("stabiliser", []):  # reports written before the stabiliser was benched have none
        stages = ", ".join(f"{stage} {st['latency_ms'][stage]:.2f}" for stage in STABILISER_STAGES)
        shares = ", ".join(f"{name} {100 * share:.1f} %" for name, share in st["over_segmenter"].items())
        lines.append(f"- stabiliser {_size(st)} (similarity at {st['input_size'][0]}x{st['input_size'][1]}): "
                     f"{st['latency_ms']['total']:.2f} ms per frame ({stages}; p90 {st['total_ms']['p90']:.2f}); "
                     f"of our image model's segmenter time: {shares or 'no image-model run'}")
    for r in report["registration"]:
        ours, cv = r["ours"], r["opencv"]
        lines.append(f"- registration {r['size'][0]}x{r['size'][1]}, {r['pairs']} pairs, ours vs OpenCV (BFMatcher + "
                     f"ratio test + findHomography) on the same keypoints: corner error median {ours['median_px']} / "
                     f"{cv['median_px']} px (p95 {ours['p95_px']} / {cv['p95_px']}), failed {ours['failed']} / "
                     f"{cv['failed']}, ours no worse on {100 * r['ours_no_worse_share']:.0f} % of pairs; features -> "
                     f"homography {ours['median_ms']} / {cv['median_ms']} ms (OpenCV / ours {r['speed_ratio']}x)")
    return "\n".join(lines) + "\n"


def _size(entry: dict[str, Any]) -> str:
    return f"{entry['size'][0]}x{entry['size'][1]}"


def _spread(ratio: dict[str, Any]) -> str:
    return " / ".join(f"{ratio['ssp_over_image_per_frame'][f'p{q}']:.3f}" for q in RATIO_PERCENTILES)


def plot(report: dict[str, Any], path: Path) -> None:
    """One figure: per backend, precision and frame size, the image model's and SSP's latency stacked by stage
    (left), and SSP / image model (bar), its per-frame p10–p90 (line) and p50 (tick) next to the paper's A100 ratio
    and the target (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    labels = [f"{r['backend']} {r['precision']} {_size(r)} {r['model']}" for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 1.2 + 0.45 * max(len(runs), 4)),
                                      gridspec_kw={"width_ratios": [2.2, 1]})
    start = np.zeros(len(runs))
    for stage in STAGES:
        widths = np.array([r["latency_ms"].get(stage, 0.0) for r in runs])
        left.barh(labels, widths, left=start, label=stage)
        start += widths
    left.invert_yaxis()
    left.set_xlabel("median latency per stage, ms")
    left.legend(loc="lower right", fontsize="small")
    names = [f"{q['backend']} {q['precision']} {_size(q)}" for q in report["ratios"]]
    paper = report["paper_a100_fps"]
    right.barh(["paper, A100, 736x1280", *names],
               [paper["image"] / paper["ssp"], *(q["ssp_over_image_latency"] for q in report["ratios"])],
               color=["grey"] + ["tab:blue"] * len(names))
    spreads = [q["ssp_over_image_per_frame"] for q in report["ratios"]]
    rows = np.arange(1, len(names) + 1)  # the bars' rows below the paper's
    right.hlines(rows, [q["p10"] for q in spreads], [q["p90"] for q in spreads], color="black", linewidth=1.2,
                 label="per frame p10–p90")
    right.plot([q["p50"] for q in spreads], rows, "k|", markersize=12)
    right.axvline(1.0, color="black", linewidth=0.8)
    right.axvline(TARGET_SSP_OVER_IMAGE, color="tab:red", linestyle="--", linewidth=0.8,
                  label=f"target {TARGET_SSP_OVER_IMAGE}")
    right.legend(loc="lower right", fontsize="small")
    right.invert_yaxis()
    right.set_xlabel("SSP / image model latency")
    highs = [max(q["ssp_over_image_latency"], q["ssp_over_image_per_frame"]["p90"]) for q in report["ratios"]]
    right.set_xlim(min([0.9, *(q["p10"] - 0.05 for q in spreads)]), max([1.3, *(h + 0.05 for h in highs)]))
    fig.suptitle(f"ssp bench {report['created']}: image model vs SSP")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = out / "bench.json", out / "bench.md", out / "bench.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    plot(report, png_path)
    return json_path, md_path, png_path
