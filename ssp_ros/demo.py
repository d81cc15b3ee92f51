"""``ssp demo``: run the image model and SSP over one video and show the difference.

With no input it generates a held-aside synthetic drone sequence (labels and exact flow, so mIoU, TC,
flicker and VC are all measured); with a video file, an image folder or an ``ssp synth`` folder it runs
on that (unlabelled input: TC with DIS flow, no mIoU). Writes an overlay video (image model | SSP),
mask PNGs, ``report.json``, ``report.md`` and ``tc_over_time.png`` into the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ssp_ros.backends import make_backend
from ssp_ros.classes import ClassSet, load_class_set, overlay
from ssp_ros.config import SspConfig, SyntheticConfig
from ssp_ros.errors import SspError
from ssp_ros.flow import DISFlow
from ssp_ros.io import LabelledSequence, VideoWriter, iter_video, write_png
from ssp_ros.metrics import SequenceMetrics
from ssp_ros.pipeline import STAGES, Pipeline
from ssp_ros.report import cell, plot_tc_over_time
from ssp_ros.synthetic import SyntheticVideo

MODELS = {"image": "image model", "ssp": "SSP"}  # the per-frame image model, and the same model with SSP


@dataclass
class Clip:
    """The frames a demo runs on, with whatever ground truth the source has."""

    source: str
    images: list[np.ndarray]
    stamps: list[float]
    labels: list[np.ndarray] | None  # per frame, or None for unlabelled video
    flows: list[tuple[np.ndarray, np.ndarray] | None]  # forward flow + validity per frame (None on the last)
    fps: float


def synthetic_clip(scenario: SyntheticConfig, frames: int, seed: int) -> Clip:
    frames_ = list(tqdm(SyntheticVideo(scenario, frames, seed), total=frames, desc="synthesise", unit="frame"))
    return Clip(source=f"synthetic seed {seed}", images=[f.image for f in frames_], stamps=[f.stamp for f in frames_],
                labels=[f.labels for f in frames_],
                flows=[None if f.flow is None else (f.flow, f.valid) for f in frames_], fps=scenario.fps)


def file_clip(path: Path, frames: int | None) -> Clip:
    """A clip from an ``ssp synth`` folder (with its labels and flow) or a video / image folder (DIS flow)."""
    if (path / "sequence.yaml").is_file():
        seq = LabelledSequence(path)
        items = [seq[i] for i in range(min(len(seq), frames or len(seq)))]
        flows = [None if f.flow is None else (f.flow, f.valid) for f in items]
        flows[-1] = None
        return Clip(source=str(path), images=[f.image for f in items], stamps=[f.stamp for f in items],
                    labels=[f.labels for f in items], flows=flows, fps=float(seq.header.get("fps", 30.0)))
    images, stamps = [], []
    for image, stamp in iter_video(path):
        images.append(image)
        stamps.append(stamp)
        if frames is not None and len(images) == frames:
            break
    dis = DISFlow()
    flows = [dis(a, b) for a, b in tqdm(zip(images[:-1], images[1:]), total=len(images) - 1, desc="DIS flow")]
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 30.0
    return Clip(source=str(path), images=images, stamps=stamps, labels=None, flows=[*flows, None], fps=fps)


def run_clip(cfg: SspConfig, backend, clip: Clip, enabled: bool, num_classes: int, desc: str) -> dict:
    """One pass over the clip with propagation on (SSP) or off (image model): masks, metrics, median latency
    per stage (also what `ssp eval` runs)."""
    pipeline = Pipeline(replace(cfg, propagation=replace(cfg.propagation, enabled=enabled)), backend)
    metrics = SequenceMetrics(num_classes)
    masks, timings, resets = [], {stage: [] for stage in (*STAGES, "total")}, 0
    for i in tqdm(range(len(clip.images)), desc=desc, unit="frame"):
        result = pipeline.process(clip.images[i], clip.stamps[i])
        if result is None:
            raise SspError(f"frame {i}: dropped (stamp {clip.stamps[i]} not newer than the previous one)")
        masks.append(result.mask)
        resets += not result.fused
        if i > 0:  # the first call includes one-off warm-up costs
            for stage in timings:
                timings[stage].append(result.timings_ms.get(stage, 0.0))
        flow = clip.flows[i]
        metrics.add(result.mask, clip.labels[i] if clip.labels else None,
                    None if flow is None else flow[0], None if flow is None else flow[1])
    report = metrics.report()
    latency = {stage: round(float(np.median(v)), 2) for stage, v in timings.items() if v}
    total = latency.get("total")
    return {"miou": report["miou"], "tc": report["tc"], "fps": round(1000.0 / total, 2) if total else None,
            "latency_ms": latency, "flicker": report["flicker"], "vc8": report["vc8"], "vc16": report["vc16"],
            "resets": resets, "iou_per_class": report["iou_per_class"], "tc_per_pair": report["tc_per_pair"],
            "masks": masks}


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


def _titled(frame: np.ndarray, titles: tuple[str, ...]) -> np.ndarray:
    w = frame.shape[1] // 2
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
        *rows, "", "Median latency per stage (ms):", "", *lat, "",
    ])


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
