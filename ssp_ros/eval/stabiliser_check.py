"""``ssp stabilise-check``: does the stabiliser help segmenters it has never seen, on flights it has never seen?

Held-aside synthetic flights (a nadir-like one and an oblique one, seeds outside the training range), each with
exact flow and labels, go through three input segmenters that the stabiliser's training never simulated
(``ssp_train.input_segmenters`` draws blobs and half-plane confusions on the true labels):

- ``image_model``: hard labels of our shipped image model, run frame by frame (no propagation);
- ``noisy_tiles``: the true labels with errors of another shape: each frame, one tile in twelve of a 32-px grid
  takes a random class, and one random class grows by 3 px over its neighbours;
- ``merged_4``: our image model's labels merged into 4 classes (ground, building, vegetation, object), the truth
  merged likewise: a coarser segmenter with another class list.

For each (segmenter, flight) it reports TC, mIoU and the GT-conditioned flicker before and after stabilisation,
and checks the issue's targets: TC gain ≥ +10 points on average and ≥ +8 on each flight, mIoU never worse by more
than 0.5. It also reports the TC of the truth itself in the segmenter's classes (``truth_tc``: below 100 where the
flow-warped labels of consecutive frames disagree: occlusions, parallax, moving objects) and the headroom, truth TC
− TC before. A gain beyond the headroom makes the output steadier than the truth, which only over-smoothing does:
a per-flight target above the headroom cannot be met without losing accuracy. The report is written as
``report.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ssp_ros.backends import make_backend
from ssp_ros.classes import load_class_set
from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.clips import Clip, run_clip, synthetic_clip
from ssp_ros.eval.metrics import SequenceMetrics
from ssp_ros.eval.report import cell
from ssp_ros.resources import resolve_resource
from ssp_ros.schema import load_section
from ssp_ros.stabiliser import VOID, make_stabiliser
from ssp_ros.synthetic.config import SyntheticConfig

# (name, scenario, seed): seeds far from the training flights (1000 + n) and the validation flight (999)
FLIGHTS = (("nadir", "default", 3001), ("oblique", "oblique", 3002))
FRAME_SIZE = (368, 640)
# UAVid classes (config/datasets/uavid.yaml) → ground, building, vegetation, object
MERGE_4 = np.array([0, 1, 0, 2, 2, 3, 3, 3], np.uint8)
MERGED_NAMES = ("ground", "building", "vegetation", "object")
TARGET_MEAN_TC_GAIN, TARGET_EACH_TC_GAIN, TARGET_MIOU_LOSS = 10.0, 8.0, 0.5
TILE, TILE_SHARE, GROWTH_PX = 32, 1 / 12, 3


def noisy_tiles(labels: np.ndarray, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """The true labels with this frame's errors: random tiles of a random class, one class grown by a few px."""
    out = labels.copy()
    grown = rng.integers(num_classes)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROWTH_PX + 1, 2 * GROWTH_PX + 1))
    out[cv2.dilate((labels == grown).astype(np.uint8), kernel).astype(bool)] = grown
    h, w = labels.shape
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            if rng.random() < TILE_SHARE:
                out[y:y + TILE, x:x + TILE] = rng.integers(num_classes)
    out[labels == VOID] = VOID
    return out


def merge(labels: np.ndarray) -> np.ndarray:
    """UAVid class ids → the 4 merged classes (unknown stays unknown)."""
    table = np.full(256, VOID, np.uint8)
    table[:len(MERGE_4)] = MERGE_4
    return table[labels]


def _segmenters(cfg: SspConfig, clip: Clip, num_classes: int
                ) -> dict[str, tuple[int, list[np.ndarray], list[np.ndarray]]]:
    """name → (K, its labels per frame, the truth in its classes per frame)."""
    backend = make_backend(cfg, num_classes)
    try:
        own = run_clip(cfg, backend, clip, False, num_classes, "image model")["masks"]
    finally:
        backend.close()
    rng = np.random.default_rng(7)
    return {
        "image_model": (num_classes, own, clip.labels),
        "noisy_tiles": (num_classes, [noisy_tiles(x, rng, num_classes) for x in clip.labels], clip.labels),
        "merged_4": (len(MERGED_NAMES), [merge(x) for x in own], [merge(x) for x in clip.labels]),
    }


def _score(clip: Clip, masks: list[np.ndarray], truth: list[np.ndarray], k: int) -> dict:
    metrics = SequenceMetrics(k, ignore_index=VOID, vc_lengths=())
    for i, mask in enumerate(masks):
        flow = clip.flows[i]
        metrics.add(mask, truth[i], None if flow is None else flow[0], None if flow is None else flow[1])
    report = metrics.report()
    return {"tc": report["tc"], "miou": report["miou"], "flicker": report["flicker"]}


def _stabilised(cfg: SspConfig, clip: Clip, masks: list[np.ndarray], k: int, desc: str
                ) -> tuple[list[np.ndarray], list[float]]:
    stabiliser = make_stabiliser(cfg, k)
    out, times = [], []
    for image, stamp, labels in tqdm(list(zip(clip.images, clip.stamps, masks)), desc=desc, unit="frame"):
        start = time.perf_counter()
        out.append(stabiliser.process(image, labels, stamp).labels)
        times.append(1000.0 * (time.perf_counter() - start))
    return out, times


def _gain(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)


def run_stabiliser_check(cfg: SspConfig, out: Path, frames: int = 40) -> dict:
    """Run every (segmenter, flight) of the module docstring over ``frames`` frames; write and return the report."""
    classes = load_class_set(cfg.model.dataset)
    if classes.name != "uavid":  # the flights' truth and MERGE_4 are UAVid's classes
        raise SspError(f"model.dataset {cfg.model.dataset!r}: the check's flights and merged segmenter use UAVid's "
                       "classes; run it with the shipped config")
    if frames < 3:
        raise SspError(f"--frames {frames}: the check needs at least 3 frames per flight (TC compares pairs)")
    num_classes = classes.num_classes
    runs = []
    for flight, scenario_name, seed in FLIGHTS:
        scenario = load_section(SyntheticConfig, resolve_resource(scenario_name, "config/scenarios"))
        clip = synthetic_clip(replace(scenario, height=FRAME_SIZE[0], width=FRAME_SIZE[1]), frames, seed)
        for name, (k, masks, truth) in _segmenters(cfg, clip, num_classes).items():
            stabilised, times = _stabilised(cfg, clip, masks, k, f"{name} {flight}")
            before, after = _score(clip, masks, truth, k), _score(clip, stabilised, truth, k)
            truth_tc = _score(clip, truth, truth, k)["tc"]
            runs.append({"segmenter": name, "flight": flight, "scenario": scenario_name, "seed": seed,
                         "classes": k, "before": before, "after": after, "truth_tc": truth_tc,
                         "headroom": _gain(before["tc"], truth_tc),
                         "tc_gain": _gain(before["tc"], after["tc"]),
                         "miou_change": _gain(before["miou"], after["miou"]),
                         "ms_per_frame": round(float(np.median(times[1:])), 1)})
    gains = [r["tc_gain"] for r in runs]
    losses = [-r["miou_change"] for r in runs]
    report = {
        "frames": frames, "size": list(FRAME_SIZE), "similarity_model": cfg.stabiliser.model,
        "keep_ratio": cfg.stabiliser.keep_ratio, "confidence": cfg.stabiliser.confidence, "runs": runs,
        "mean_tc_gain": round(float(np.mean(gains)), 2), "min_tc_gain": min(gains),
        "worst_miou_change": -max(losses),
        "targets": {"mean_tc_gain": TARGET_MEAN_TC_GAIN, "each_tc_gain": TARGET_EACH_TC_GAIN,
                    "max_miou_loss": TARGET_MIOU_LOSS},
        "met": {"mean_tc_gain": float(np.mean(gains)) >= TARGET_MEAN_TC_GAIN,
                "each_tc_gain": min(gains) >= TARGET_EACH_TC_GAIN,
                "miou": max(losses) <= TARGET_MIOU_LOSS},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    """The report as a Markdown table, one row per (segmenter, flight), and the targets."""
    lines = [f"# Stabiliser on held-aside flights ({report['frames']} frames, {report['size'][1]}x{report['size'][0]})",
             "", f"Similarity model {report['similarity_model']}, keep_ratio {report['keep_ratio']}, hard-label "
             f"confidence {report['confidence']}.",
             "", "| segmenter | flight | K | TC before | TC after | gain | truth TC | headroom | mIoU before | "
             "mIoU after | change | flicker before | flicker after | ms/frame |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['segmenter']} | {r['flight']} | {r['classes']} | {cell(b['tc'])} | {cell(a['tc'])} | "
                     f"{cell(r['tc_gain'])} | {cell(r['truth_tc'])} | {cell(r['headroom'])} | {cell(b['miou'])} | "
                     f"{cell(a['miou'])} | {cell(r['miou_change'])} | {cell(b['flicker'])} | {cell(a['flicker'])} | "
                     f"{r['ms_per_frame']} |")
    def met(key: str) -> str:
        return "met" if report["met"][key] else "NOT met"

    t = report["targets"]
    lines += ["", f"- mean TC gain {report['mean_tc_gain']} (target ≥ {t['mean_tc_gain']}): {met('mean_tc_gain')}",
              f"- smallest TC gain {report['min_tc_gain']} (target ≥ {t['each_tc_gain']} on each): "
              f"{met('each_tc_gain')}",
              f"- worst mIoU change {report['worst_miou_change']} (target ≥ −{t['max_miou_loss']}): {met('miou')}"]
    short = [f"{r['segmenter']} {r['flight']} ({cell(r['headroom'])})" for r in report["runs"]
             if r["headroom"] is not None and r["headroom"] < t["each_tc_gain"]]
    if short:
        lines.append(f"- headroom (truth TC − TC before) under the per-flight target: {', '.join(short)}: a gain of "
                     f"{t['each_tc_gain']} there would make the output steadier than the truth")
    lines.append("")
    return "\n".join(lines)
