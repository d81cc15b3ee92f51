"""``ssp demo``: run the image model and SSP over one video and show the difference.

With no input it generates a held-aside synthetic drone sequence (labels and exact flow, so mIoU, TC,
flicker and VC are all measured); with a video file, an image folder or an ``ssp synth`` folder it runs
on that (unlabelled input: TC with DIS flow, no mIoU). Writes an overlay video (image model | SSP),
mask PNGs, ``report.json``, ``report.md`` (with how registration went: inlier ratio, corner motion, failures
and resets by reason), ``tc_over_time.png`` and ``strip.png`` (frame | image model | SSP at a few points of
the clip, for a look without a video player) into the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ssp_ros.backends import make_backend
from ssp_ros.classes import ClassSet, load_class_set, overlay
from ssp_ros.config import SspConfig
from ssp_ros.eval.clips import Clip, run_clip
from ssp_ros.eval.report import cell, plot_tc_over_time
from ssp_ros.io import VideoWriter, write_png
from ssp_ros.pipeline import STAGES

MODELS = {"image": "image model", "ssp": "SSP"}  # the per-frame image model, and the same model with SSP
STRIP_ROWS = 4  # frames shown in strip.png, evenly spaced over the clip
STRIP_PANEL_WIDTH = 480  # px per panel in strip.png


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
            video.write(_titled(np.concatenate(panels, axis=1), tuple(MODELS.values())))
    finally:
        video.close()
    _write_strip(out / "strip.png", clip, runs, classes)


def _write_strip(path: Path, clip: Clip, runs: dict, classes: ClassSet) -> None:
    """``STRIP_ROWS`` rows of frame | image model | SSP, evenly spaced over the clip, each row titled."""
    picks = np.linspace(0, len(clip.images) - 1, min(STRIP_ROWS, len(clip.images))).round().astype(int)
    rows = []
    for i in picks:
        image = clip.images[i]
        panels = [image, *(overlay(image, runs[name]["masks"][i], classes) for name in MODELS)]
        h, w = image.shape[:2]
        size = (STRIP_PANEL_WIDTH, max(1, round(h * STRIP_PANEL_WIDTH / w)))
        row = np.concatenate([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in panels], axis=1)
        rows.append(_titled(row, (f"frame {i}", *MODELS.values())))
    write_png(path, np.concatenate(rows, axis=0))


def _titled(frame: np.ndarray, titles: tuple[str, ...]) -> np.ndarray:
    w = frame.shape[1] // len(titles)
    for k, title in enumerate(titles):
        for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
            cv2.putText(frame, title, (k * w + 10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, thickness, cv2.LINE_AA)
    return frame


def _markdown(report: dict) -> str:
    rows = ["| model | mIoU | TC | flicker | VC8 | VC16 | FPS | resets |", "|---|---|---|---|---|---|---|---|"]
    for name, label in MODELS.items():
        m = report["models"][name]
        rows.append(f"| {label} | {cell(m['miou'])} | {cell(m['tc'])} | {cell(m['flicker'])} | {cell(m['vc8'])} | "
                    f"{cell(m['vc16'])} | {cell(m['fps'])} | {m['resets']} |")
    stages = [s for s in (*STAGES, "total") if s in report["models"]["ssp"]["latency_ms"]]
    lat = ["| model | " + " | ".join(stages) + " |", "|---" * (len(stages) + 1) + "|"]
    for name, label in MODELS.items():
        values = report["models"][name]["latency_ms"]
        lat.append(f"| {label} | " + " | ".join(cell(values.get(s)) for s in stages) + " |")
    return "\n".join([
        f"# ssp demo: {report['source']}", "",
        f"{report['frames']} frames of {report['size'][0]}×{report['size'][1]}, backend {report['backend']}, "
        f"weights {report['weights']}.", "",
        "mIoU, TC, flicker (share of stable-truth pixels whose prediction changes; lower is better) and VC_n in "
        "percent. TC alone rewards over-smoothing: read it next to mIoU and flicker.", "",
        *rows, "", "Median latency per stage (ms):", "", *lat, "", *_registration_lines(report["models"]["ssp"]),
        "`strip.png`: frame | image model | SSP at a few points of the clip.", "",
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
            f"- registered {reg['registered']} frames, failed {reg['failed']} ({reasons(reg['failures'])})",
            f"- inlier ratio: {spread(reg['inlier_ratio'])}",
            f"- inliers: {spread(reg['inliers'])}",
            f"- corner motion per frame (px, farthest corner): {spread(reg['corner_motion_px'])}",
            f"- resets by reason: {reasons(reg['resets'])}", ""]


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
        "backend": backend.name, "weights": cfg.model.weights, "classes": list(classes.names),
        "models": {name: {k: v for k, v in run.items() if k not in ("masks", "tc_per_pair")}
                   for name, run in runs.items()},
        "tc_per_pair": {name: runs[name]["tc_per_pair"] for name in MODELS},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_markdown(report))
    return report
