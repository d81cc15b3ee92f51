"""``ssp demo``: run the image model and SSP over one video and show the difference.

With no input it generates a held-aside synthetic drone sequence (labels and exact flow, so mIoU, TC,
flicker and VC are all measured); with a video file, an image folder or an ``ssp synth`` folder it runs
on that (unlabelled input: TC and the change rate with DIS flow, no mIoU). Writes an overlay video (image model |
SSP), mask PNGs, ``report.json``, ``report.md`` (with how registration went over the frame pairs: inlier ratio,
corner motion, failures and resets by reason, and its time in its own thread), ``tc_over_time.png`` and
``strip.png`` (frame | ground truth when there is one | image model | SSP at a few points of the clip with a colour
key, for a look without a video player) into the output folder.

On unlabelled video TC and the change rate (label-free flicker) say how steady the masks are, never whether they
are right, and SSP steadies a wrong class as readily as a right one. So the report also gives each model's share of
pixels per class and says what the weights were trained on (``provenance.py``): our shipped model has seen
synthetic worlds only.

With ``--segmenter`` (a YAML of the user's ONNX segmenter, ``backends/external.py``) it runs that segmenter and the
stabiliser over it instead (``run_segmenter_demo``) and writes what ``ssp stabilise`` writes: the input segmenter |
the stabilised labels as ``overlay.mp4``, the stabilised ``masks/``, ``report.json`` and ``report.md`` (TC, change
rate and, where the clip's labels use the segmenter's classes, mIoU, before and after).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ssp_ros.backends import make_backend
from ssp_ros.classes import ClassSet, load_class_set, overlay
from ssp_ros.config import SspConfig
from ssp_ros.eval.clips import Clip, run_clip
from ssp_ros.eval.provenance import trained_on, trained_on_line
from ssp_ros.eval.report import cell, class_share_table, plot_tc_over_time
from ssp_ros.eval.stabilise import clip_truth, segmenter_source, write_stabilised
from ssp_ros.eval.strip import titled, write_strip
from ssp_ros.io import VideoWriter, write_png
from ssp_ros.pipeline import STAGES
from ssp_ros.stabiliser import make_stabiliser

MODELS = {"image": "image model", "ssp": "SSP"}  # the per-frame image model, and the same model with SSP


def _write_outputs(out: Path, clip: Clip, runs: dict, classes: ClassSet) -> None:
    for name in MODELS:
        folder = out / "masks" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, mask in enumerate(runs[name]["masks"]):
            write_png(folder / f"{i:06d}.png", mask)
    h, w = clip.images[0].shape[:2]
    video = VideoWriter(out / "overlay.mp4", clip.fps, (h, 2 * w))
    try:
        for i, image in enumerate(clip.images):
            if image.shape[:2] != (h, w):
                continue  # a resolution change mid-clip: the side-by-side video keeps the first size
            panels = [overlay(image, runs[name]["masks"][i], classes) for name in MODELS]
            video.write(titled(np.concatenate(panels, axis=1), tuple(MODELS.values())))
    finally:
        video.close()
    write_strip(out / "strip.png", clip.images, clip.labels,
                {label: runs[name]["masks"] for name, label in MODELS.items()}, classes)


def _markdown(report: dict) -> str:
    rows = ["| model | mIoU | TC | flicker | change rate | VC8 | VC16 | FPS | resets |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, label in MODELS.items():
        m = report["models"][name]
        rows.append(f"| {label} | {cell(m['miou'])} | {cell(m['tc'])} | {cell(m['flicker'])} | "
                    f"{cell(m['change_rate'])} | {cell(m['vc8'])} | {cell(m['vc16'])} | {cell(m['fps'])} | "
                    f"{'–' if m['resets'] is None else m['resets']} |")
    stages = [s for s in (*STAGES, "total") if s in report["models"]["ssp"]["latency_ms"]]
    lat = ["| model | " + " | ".join(stages) + " | registration, in its own thread |",
           "|---" * (len(stages) + 2) + "|"]
    for name, label in MODELS.items():
        m = report["models"][name]
        lat.append(f"| {label} | " + " | ".join(cell(m["latency_ms"].get(s)) for s in stages)
                   + f" | {cell(m['registration_ms'])} |")
    strip = ("frame | ground truth (unlabelled pixels untinted) | image model | SSP" if report["labelled"]
             else "frame | image model | SSP")
    unlabelled = [] if report["labelled"] else [
        "No labels: mIoU and flicker cannot be measured here. TC and the change rate say how steady the masks are, "
        "not whether they are right: a steady wrong class scores as well as a right one. Judge the classes by the "
        "class shares below and by `overlay.mp4`.", ""]
    return "\n".join([
        f"# ssp demo: {report['source']}", "",
        f"{report['frames']} frames of {report['size'][0]}×{report['size'][1]}, backend {report['backend']}, "
        f"weights {report['weights']}.", "", report["trained_on_line"], "", *unlabelled,
        "Percent: mIoU, TC, flicker (share of stable-truth pixels whose prediction changes; lower is better), the "
        "change rate (label-free flicker: share of flow-tracked pixels whose class changes between frames; lower is "
        "steadier) and VC_n. TC alone rewards over-smoothing: read it next to mIoU and flicker. Resets: frames where "
        "SSP started over after the first (the image model never fuses).", "",
        *rows, "", "Share of pixels per class (percent):", "",
        *class_share_table(report["classes"], {label: report["models"][name]["class_share"]
                                               for name, label in MODELS.items()}), "",
        "Median latency per stage (ms; the registration stage is the wait for registration after the segmenter, "
        "which runs beside it in its own thread):", "", *lat, "", *_registration_lines(report["models"]["ssp"]),
        f"`strip.png`: {strip} at a few points of the clip, under a colour key of the classes.", "",
    ])


def _registration_lines(ssp: dict) -> list[str]:
    """The SSP pass's registration health as Markdown (see ``registration_health.py``)."""
    reg = ssp["registration"]

    def spread(stats: dict | None) -> str:
        return "n/a" if stats is None else (f"median {stats['median']}, p10 {stats['p10']}, p90 {stats['p90']}, "
                                            f"min {stats['min']}, max {stats['max']}")

    def reasons(counts: dict) -> str:
        return ", ".join(f"{reason} {n}" for reason, n in counts.items()) or "none"

    return ["Registration (SSP pass):", "",
            f"- registered {reg['registered']} of {reg['pairs']} frame pairs, failed {reg['failed']}"
            + (f" ({reasons(reg['failures'])})" if reg["failed"] else ""),
            f"- inlier ratio: {spread(reg['inlier_ratio'])}",
            f"- inliers: {spread(reg['inliers'])}",
            f"- corner motion per frame (px, farthest corner): {spread(reg['corner_motion_px'])}",
            f"- resets by reason (the first frame starts the stream and is none): {reasons(reg['resets'])}", ""]


def run_demo(cfg: SspConfig, out: Path, make_clip: Callable[[], Clip]) -> dict:
    """Run both models over the clip, write everything into ``out`` and return the report.

    The backend is built before ``make_clip()`` runs, so a bad model fails before minutes of decoding.
    """
    classes = load_class_set(cfg.model.dataset)
    backend = make_backend(cfg, classes.num_classes)
    clip = make_clip()
    runs = {name: run_clip(cfg, backend, clip, name == "ssp", classes.num_classes, name) for name in MODELS}
    out.mkdir(parents=True, exist_ok=True)
    _write_outputs(out, clip, runs, classes)
    plot_tc_over_time(out / "tc_over_time.png", {f"{label} (TC {runs[name]['tc']:.1f})": runs[name]["tc_per_pair"]
                                                 for name, label in MODELS.items()})
    report = {
        "frames": len(clip.images), "size": list(clip.images[0].shape[:2]), "source": clip.source,
        "labelled": clip.labels is not None,
        "backend": backend.name, "weights": cfg.model.weights,
        "trained_on": trained_on(cfg.model.weights, cfg.runtime.export_dir), "classes": list(classes.names),
        "models": {name: {k: v for k, v in run.items() if k not in ("masks", "tc_per_pair", "confusion")}
                   for name, run in runs.items()},
        "tc_per_pair": {name: runs[name]["tc_per_pair"] for name in MODELS},
    }
    report["trained_on_line"] = trained_on_line(report["trained_on"], untrained=cfg.model.weights is None)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_markdown(report))
    return report


def run_segmenter_demo(cfg: SspConfig, out: Path, make_clip: Callable[[], Clip], spec: Path) -> dict:
    """The ONNX segmenter of the YAML ``spec`` and the stabiliser over it on the clip, written into ``out`` as
    ``ssp stabilise`` writes its output; returns the report.

    The segmenter (checked against its YAML) and the stabiliser are built before ``make_clip()`` runs, so a bad
    YAML or model fails before anything is decoded or written.
    """
    from ssp_ros.backends.external import OnnxSegmenter

    segmenter = OnnxSegmenter(spec, cfg.runtime.device)
    stabiliser = make_stabiliser(cfg, segmenter.num_classes)
    clip = make_clip()
    truth, no_miou = clip_truth(clip.labels, segmenter.num_classes)
    out.mkdir(parents=True, exist_ok=True)
    return write_stabilised(out, stabiliser, clip, segmenter_source(segmenter, len(clip.images)), truth, {
        "command": "ssp demo", "frames_input": clip.source, "masks_input": str(spec), "miou_missing": no_miou})
