"""A clip and one run over it: the frames (synthetic, an ``ssp synth`` folder, or a video / image folder) with
whatever ground truth they have, and ``run_clip``, which runs them through the ``Pipeline`` with propagation
on (SSP) or off (image model) and scores the masks. ``ssp demo``, ``ssp eval`` and ``ssp ablate`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.flow import DISFlow
from ssp_ros.eval.metrics import SequenceMetrics
from ssp_ros.eval.registration_health import RegistrationLog, resets_after_start
from ssp_ros.io import LabelledSequence, iter_video
from ssp_ros.pipeline import STAGES, Pipeline
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import SyntheticConfig


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
    """``frames`` frames of the synthetic flight ``seed`` of ``scenario``, with labels and exact flow."""
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
    per stage and, with propagation on, how registration went, its median time in its own thread and the resets
    after the stream's start (the image model has none: it never fuses), and the confusion matrix of the labelled
    frames (``ssp eval`` adds those of its sequences up). Also what `ssp eval` runs."""
    pipeline = Pipeline(replace(cfg, propagation=replace(cfg.propagation, enabled=enabled)), backend)
    metrics = SequenceMetrics(num_classes)
    registrations = RegistrationLog()
    stages = STAGES if enabled else tuple(s for s in STAGES if s not in ("registration", "fusion"))  # SSP's alone
    masks, timings, registration_ms = [], {stage: [] for stage in (*stages, "total")}, []
    for i in tqdm(range(len(clip.images)), desc=desc, unit="frame"):
        result = pipeline.process(clip.images[i], clip.stamps[i])
        if result is None:
            raise SspError(f"frame {i}: dropped (stamp {clip.stamps[i]} not newer than the previous one)")
        masks.append(result.mask)
        registrations.add(result.registration, result.mask.shape)
        if i > 0:  # the first call includes one-off warm-up costs
            for stage in timings:
                timings[stage].append(result.timings_ms.get(stage, 0.0))
            if result.registration_ms is not None:
                registration_ms.append(result.registration_ms)
        flow = clip.flows[i]
        metrics.add(result.mask, clip.labels[i] if clip.labels else None,
                    None if flow is None else flow[0], None if flow is None else flow[1])
    report = metrics.report()
    latency = {stage: round(float(np.median(v)), 2) for stage, v in timings.items() if v}
    total = latency.get("total")
    resets = resets_after_start(pipeline.propagator.resets) if enabled else None
    return {"miou": report["miou"], "tc": report["tc"], "fps": round(1000.0 / total, 2) if total else None,
            "latency_ms": latency, "flicker": report["flicker"], "change_rate": report["change_rate"],
            "vc8": report["vc8"], "vc16": report["vc16"],
            "resets": None if resets is None else sum(resets.values()), "iou_per_class": report["iou_per_class"],
            "class_share": report["class_share"], "tc_per_pair": report["tc_per_pair"],
            "registration_ms": round(float(np.median(registration_ms)), 2) if registration_ms else None,
            "registration": registrations.summary(pipeline.propagator.resets) if enabled else None, "masks": masks,
            "confusion": metrics.confusion}
