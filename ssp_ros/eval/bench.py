"""``ssp bench``: what the image model and SSP cost, per backend and frame size, as JSON + Markdown.

Latency comes from the streaming pipeline's own per-stage timers (median of N frames after a warm-up)
on synthetic drone frames, so it is what the node and replay see. The image model is the same pipeline
with propagation off. Parameters and GFLOPs come from torch (``torch.utils.flop_counter``, which counts a
multiply-add as 2 FLOPs); peak memory is the process's peak resident set during each run (reset between
runs through ``/proc/self/clear_refs``) and, on CUDA, torch's peak allocation.

Speed targets live here and not in timed tests: the report prints the ratios that matter (SSP over
image-model latency, fusion + registration over the segmenter, ONNX Runtime over torch throughput).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import json
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ssp_ros.backends import make_backend
from ssp_ros.classes import load_class_set
from ssp_ros.config import ModelConfig, RuntimeConfig, SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.registration_check import compare, summary
from ssp_ros.pipeline import STAGES, Pipeline
from ssp_ros.synthetic import SyntheticVideo, relative_homography

PAPER_GFLOPS = {"image": 210.6, "ssp": 322.8}  # SSP paper, Hiera-S + UPerNet 256 at 736×1280
PAPER_MODEL = ModelConfig(backbone="sam2_hiera_small", decoder_channels=256, dataset="uavid_vdd",
                          input_size=(736, 1280))


def input_size_for(frame_size: tuple[int, int], multiple: int = 32) -> tuple[int, int]:
    """The model input that holds a frame of ``frame_size`` without scaling (rounded up to ``multiple``)."""
    return tuple(-(-v // multiple) * multiple for v in frame_size)  # type: ignore[return-value]


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MiB since the last reset (Linux ``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def time_pipeline(cfg: SspConfig, backend: Any, frames: list[tuple[np.ndarray, float]], warmup: int,
                  fuse: bool) -> dict[str, Any]:
    """Median per-stage latency (ms) of ``frames`` through a fresh pipeline, after ``warmup`` frames."""
    pipe = Pipeline(dataclasses.replace(cfg, propagation=dataclasses.replace(cfg.propagation, enabled=fuse)), backend)
    for image, stamp in frames[:warmup]:
        pipe.process(image, stamp)
    reset = peak_rss_reset()
    timings: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    fused = 0
    for image, stamp in frames[warmup:]:
        result = pipe.process(image, stamp)
        fused += result.fused
        for stage, ms in timings.items():
            ms.append(result.timings_ms.get(stage, 0.0))  # a stage a frame skipped (fusion after a reset) took 0
    latency = {stage: round(statistics.median(v), 3) for stage, v in timings.items()}
    return {"latency_ms": latency, "fps": round(1000.0 / latency["total"], 2), "frames": len(frames) - warmup,
            "fused_frames": fused, "peak_rss_mb": round(peak_rss_mb(), 1) if reset else None}


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


def _backend_for(name: str, cfg: SspConfig, num_classes: int, scratch: Path) -> tuple[Any, SspConfig]:
    """A backend of ``name`` for ``cfg.model`` (ONNX Runtime gets a fresh export at the model's input size)."""
    if name == "onnxruntime":
        from ssp_ros.deploy.export import export_config  # needs torch: the bench exports what it measures

        folder = export_config(cfg.model, scratch / f"export_{cfg.model.input_size[0]}x{cfg.model.input_size[1]}")
        cfg = dataclasses.replace(cfg, runtime=RuntimeConfig(backend="onnxruntime", export_dir=str(folder),
                                                             threads=cfg.runtime.threads))
    elif name == "torch":
        cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, backend="torch", export_dir=None))
    elif cfg.runtime.backend != name:
        raise SspError(f"runtime.backend: benchmarking {name} needs a config with runtime.backend: {name} and its "
                       "engines in runtime.export_dir")
    return make_backend(cfg, num_classes), cfg


def run_bench(cfg: SspConfig, sizes: list[tuple[int, int]], backends: list[str], frames: int, warmup: int,
              seed: int = 2000, paper: bool = False) -> dict[str, Any]:
    """Benchmark every (size, backend) pair; a backend that cannot run here is listed with the reason."""
    num_classes = load_class_set(cfg.model.dataset).num_classes
    report: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "device": cfg.runtime.device},
        "frames": frames, "warmup": warmup, "seed": seed, "runs": [], "skipped": [], "cost": [], "registration": []}
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
            for name in backends:
                if importlib.util.find_spec(name) is None:  # each backend is named after the module it needs
                    report["skipped"].append({"backend": name, "size": list(size),
                                              "reason": f"python module '{name}' not installed"})
                    continue
                backend, run_cfg = _backend_for(name, sized, num_classes, Path(scratch))
                for model, fuse in (("image", False), ("ssp", True)):
                    run = time_pipeline(run_cfg, backend, clip, warmup, fuse)
                    report["runs"].append({"backend": name, "model": model, "size": list(size),
                                           "input_size": list(model_cfg.input_size), **run})
                _close(backend)
    if paper:
        report["paper_cost"] = {**model_cost(PAPER_MODEL, load_class_set(PAPER_MODEL.dataset).num_classes,
                                             PAPER_MODEL.input_size), "paper_gflops": PAPER_GFLOPS}
    report["ratios"] = ratios(report["runs"])
    return report


def _close(backend: Any) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and backend: SSP / image-model latency and (fusion + registration) / segmenter; per size:
    ONNX Runtime / torch throughput of SSP."""
    index = {(r["backend"], r["model"], tuple(r["size"])): r for r in runs}
    out = []
    for (backend, model, size), run in index.items():
        if model != "ssp" or (backend, "image", size) not in index:
            continue
        image, lat = index[(backend, "image", size)]["latency_ms"], run["latency_ms"]
        entry = {"backend": backend, "size": list(size),
                 "ssp_over_image_latency": round(lat["total"] / image["total"], 3),
                 "fusion_plus_registration_over_segmenter": round(
                     (lat.get("fusion", 0.0) + lat.get("registration", 0.0)) / lat["segmenter"], 4)}
        if backend == "onnxruntime" and ("torch", "ssp", size) in index:
            entry["onnxruntime_over_torch_throughput"] = round(
                index[("torch", "ssp", size)]["latency_ms"]["total"] / lat["total"], 3)
        out.append(entry)
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: cost table, latency table per run, ratios, skipped backends."""
    lines = [f"# ssp bench ({report['created']})", "",
             f"{report['frames']} frames after {report['warmup']} warm-up, synthetic seed {report['seed']}, "
             f"machine: {report['machine']['cpu']}, device {report['machine']['device']}.", ""]
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
    lines += ["| backend | model | frame | " + " | ".join(stages) + " | FPS | peak RSS MiB |",
              "|---" * (len(stages) + 5) + "|"]
    for r in report["runs"]:
        cells = " | ".join(f"{r['latency_ms'].get(s, 0.0):.2f}" for s in stages)
        lines.append(f"| {r['backend']} | {r['model']} | {r['size'][0]}x{r['size'][1]} | {cells} | {r['fps']} | "
                     f"{r['peak_rss_mb']} |")
    lines += ["", "Latency in ms (median per stage; the total is the median of per-frame totals).", ""]
    for q in report["ratios"]:
        text = (f"- {q['backend']} {q['size'][0]}x{q['size'][1]}: SSP / image model latency "
                f"{q['ssp_over_image_latency']:.3f}; (fusion + registration) / segmenter "
                f"{100 * q['fusion_plus_registration_over_segmenter']:.1f} %")
        if "onnxruntime_over_torch_throughput" in q:
            text += f"; ONNX Runtime / torch throughput {q['onnxruntime_over_torch_throughput']:.2f}x"
        lines.append(text)
    lines += [f"- skipped {s['backend']} at {s['size'][0]}x{s['size'][1]}: {s['reason']}" for s in report["skipped"]]
    for r in report["registration"]:
        ours, cv = r["ours"], r["opencv"]
        lines.append(f"- registration {r['size'][0]}x{r['size'][1]}, {r['pairs']} pairs, ours vs OpenCV (BFMatcher + "
                     f"ratio test + findHomography) on the same keypoints: corner error median {ours['median_px']} / "
                     f"{cv['median_px']} px (p95 {ours['p95_px']} / {cv['p95_px']}), failed {ours['failed']} / "
                     f"{cv['failed']}, ours no worse on {100 * r['ours_no_worse_share']:.0f} % of pairs; features -> "
                     f"homography {ours['median_ms']} / {cv['median_ms']} ms (OpenCV / ours {r['speed_ratio']}x)")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``bench.json`` and ``bench.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "bench.json", out / "bench.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path
