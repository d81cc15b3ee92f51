"""``ssp eval``: mIoU, TC, flicker and VC of any set of weights files (image model, SSP, KD-SSP) on labelled video.

By default the video is held-aside synthetic sequences (seeds 2000–2004: the shipped model trained on seeds
1000–1015 and validated on 999) of each scenario (``ssp eval``: the config's synthetic scenario and the oblique
one), generated with their labels and exact flow; ``--input`` takes an ``ssp synth`` folder instead. Each weights
file runs through the same ``Pipeline`` as on the drone (``ssp_ros.eval.clips.run_clip``): an SSP-kind file gives
two rows, its image model (propagation off) and SSP (on); an image-model file gives one. A candidate may also
be an ``ssp export`` folder (FP32 or ``--int8``): it runs on ONNX Runtime and gives two rows.
mIoU counts labelled frames, TC every consecutive pair; each metric is the mean of its per-sequence values. Each
row also gives the mIoU of all its sequences' pixels in one confusion matrix (``miou_all``, with ``iou_all_per_class``;
the dataset-level mIoU of UAVid's benchmark): a class a sequence lacks but a model paints on a few of its pixels
counts as 0 in that sequence's mIoU, and so in the mean, while ``miou_all`` weighs it by its pixels.
Writes ``eval.json`` and ``eval.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ssp_ros.backends.choice import torch_installed
from ssp_ros.classes import load_class_set
from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.metrics import ConfusionMatrix, percent
from ssp_ros.eval.report import cell
from ssp_ros.synthetic.config import SimConfig, SyntheticConfig

HELD_ASIDE_SEEDS = (2000, 2001, 2002, 2003, 2004)  # synthetic seeds no shipped recipe trains or validates on
METRICS = ("miou", "tc", "flicker", "vc8", "vc16", "fps")
ROW_LABELS = {"image": "image model", "ssp": "SSP"}


@dataclass(frozen=True)
class Candidate:
    """One weights file (or ``ssp export`` folder) to evaluate, under a name of the user's choosing
    (``kd=out/kd.safetensors``, ``int8=out/ssp_int8``)."""

    name: str
    path: Path


def parse_candidate(text: str) -> Candidate:
    """``NAME=PATH`` (or a bare path, named after its file) → Candidate; argparse type of ``--weights``."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).stem, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return Candidate(name, Path(path))


def export_backend(cfg: SspConfig, candidate: Candidate, dataset: str):
    """``(config, ONNX Runtime backend, "ssp")`` for an ``ssp export`` folder (FP32 or ``--int8``): its input size
    and classes come from ``export.json`` (hash-checked), everything else (registration, device) from ``cfg``."""
    from ssp_ros.backends.export_info import load_export_info
    from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend

    info = load_export_info(candidate.path)
    exported = info.raw.get("dataset", dataset)
    if exported != dataset or info.num_classes != load_class_set(dataset).num_classes:
        raise SspError(f"--weights {candidate.name}: {candidate.path} was exported for '{exported}' classes "
                       f"({info.num_classes}), the evaluation uses '{dataset}' (all candidates must share one "
                       "class list)")
    model_cfg = replace(cfg.model, weights=str(candidate.path), dataset=dataset, input_size=info.input_size)
    backend = OnnxRuntimeBackend(info, cfg.runtime.device, cfg.runtime.threads)
    return replace(cfg, model=model_cfg), backend, "ssp"


def candidate_backend(cfg: SspConfig, candidate: Candidate, dataset: str):
    """``(config, backend, kind)`` for a candidate. A weights file runs on the torch backend: its architecture comes
    from the file's metadata, everything else (input size, registration) from ``cfg``. A folder holding an
    ``export.json`` runs its graphs on ONNX Runtime (``export_backend``)."""
    if candidate.path.is_dir():
        return export_backend(cfg, candidate, dataset)
    if not candidate.path.is_file():
        raise SspError(f"--weights {candidate.name}: {candidate.path}: weights file not found")
    if not torch_installed():
        raise SspError(f"--weights {candidate.name}: {candidate.path} is a weights file, which runs on torch, and "
                       "torch is not installed here: give an `ssp export` folder instead (the shipped model's is "
                       "models/ssp_default), or pip install 'ssp_ros[torch]'")
    from ssp_ros.backends.torch_backend import TorchBackend
    from ssp_ros.models import SSP, SimilarityHead, build_segmenter, build_ssp, read_weights_metadata

    meta = read_weights_metadata(candidate.path)
    if meta.get("dataset", dataset) != dataset:
        raise SspError(f"--weights {candidate.name}: {candidate.path} was trained for '{meta['dataset']}' classes, "
                       f"the evaluation uses '{dataset}' (all files must share one class list)")
    model_cfg = replace(cfg.model, weights=str(candidate.path), dataset=dataset,
                        **{k: meta[k] for k in ("backbone", "decoder_channels") if k in meta})
    num_classes = load_class_set(dataset).num_classes
    kind = meta.get("kind", "ssp")
    if kind == "segmenter":  # an image model (e.g. a KD teacher): the untrained head is never used
        segmenter = build_segmenter(model_cfg, num_classes)
        model = SSP(segmenter, SimilarityHead(segmenter.feature_channels))
    else:
        model = build_ssp(model_cfg, num_classes)
    run_cfg = replace(cfg, model=model_cfg)
    return run_cfg, TorchBackend(model, model_cfg.input_size, cfg.runtime.device), kind


def mean_of_known(values: list[float | None]) -> float | None:
    """The mean of the finite values (rounded to 3 decimals), None when there are none: a metric over sequences."""
    known = [v for v in values if v is not None and np.isfinite(v)]
    return round(float(np.mean(known)), 3) if known else None


def pooled_iou(confusion: ConfusionMatrix) -> dict:
    """``miou_all`` and ``iou_all_per_class`` (percent, 3 decimals; None for a class no pixel has or got) of one
    confusion matrix summed over sequences; both None without labelled frames."""
    if not confusion.matrix.sum():
        return {"miou_all": None, "iou_all_per_class": None}
    return {"miou_all": percent(confusion.miou()), "iou_all_per_class": [percent(x) for x in confusion.iou()]}


def run_eval(cfg: SimConfig, candidates: list[Candidate], out: Path, seeds: list[int], frames: int,
             input_path: Path | None = None, scenarios: dict[str, SyntheticConfig] | None = None) -> dict:
    """Evaluate every candidate on the clips (``input_path``, else one synthetic clip per seed of each of
    ``scenarios``, name → scenario; default: the config's synthetic); write ``eval.json`` / ``eval.md`` into
    ``out`` and return the report. Rows are per scenario, candidate and model."""
    from ssp_ros.eval.clips import file_clip, run_clip, synthetic_clip

    if not candidates:
        raise SspError("ssp eval: give at least one --weights NAME=PATH")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise SspError(f"ssp eval: --weights names must differ, got {names}")
    dataset = cfg.model.dataset
    classes = load_class_set(dataset)
    # bad weights fail before any video work
    backends = {c.name: candidate_backend(cfg, c, dataset) for c in candidates}
    scenarios = scenarios or {"default": cfg.synthetic}
    makers = ([("input", lambda: file_clip(input_path, frames))] if input_path is not None
              else [(name, lambda seed=seed, scenario=scenario: synthetic_clip(scenario, frames, seed))
                    for name, scenario in scenarios.items() for seed in seeds])
    per_sequence: dict[tuple[str, str, str], list[dict]] = {}
    pooled: dict[tuple[str, str, str], ConfusionMatrix] = {}
    sources = []
    for scenario_name, make in makers:
        clip = make()
        if clip.labels is None:
            raise SspError(f"{clip.source}: no labels: ssp eval needs labelled video (an `ssp synth` folder)")
        sources.append(clip.source)
        for candidate in candidates:
            run_cfg, backend, kind = backends[candidate.name]
            for mode in ("image", "ssp") if kind == "ssp" else ("image",):
                result = run_clip(run_cfg, backend, clip, mode == "ssp", classes.num_classes,
                                  f"{candidate.name} {mode}")
                key = (scenario_name, candidate.name, mode)
                per_sequence.setdefault(key, []).append(
                    {"source": clip.source, **{k: result[k] for k in METRICS},
                     "iou_per_class": result["iou_per_class"], "resets": result["resets"]})
                pooled.setdefault(key, ConfusionMatrix(classes.num_classes)).merge(result["confusion"])
    several = len({key[0] for key in per_sequence}) > 1  # name the scenario in each label only then
    rows = [{"scenario": scenario_name, "name": name, "model": mode,
             "label": f"{name}: {ROW_LABELS[mode]}" + (f" ({scenario_name})" if several else ""),
             "weights": str(backends[name][0].model.weights),
             **{k: mean_of_known([s[k] for s in seqs]) for k in METRICS},
             **pooled_iou(pooled[(scenario_name, name, mode)]), "per_sequence": seqs}
            for (scenario_name, name, mode), seqs in per_sequence.items()]
    report = {"sources": sources, "frames": frames, "seeds": list(seeds) if input_path is None else None,
              "scenarios": list(dict.fromkeys(key[0] for key in per_sequence)),
              "classes": list(classes.names), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    (out / "eval.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    """The report as a Markdown table (means over sequences) with one line per sequence below."""
    head = ["| model | mIoU | TC | flicker | VC8 | VC16 | FPS | mIoU, all pixels |",
            "|---|---|---|---|---|---|---|---|"]
    rows = [f"| {r['label']} | " + " | ".join(cell(r[k]) for k in (*METRICS, "miou_all")) + " |"
            for r in report["rows"]]
    detail = [f"- {r['label']}, {s['source']}: mIoU {cell(s['miou'])}, TC {cell(s['tc'])}, "
              f"flicker {cell(s['flicker'])}" for r in report["rows"] for s in r["per_sequence"]]
    return "\n".join([
        "# ssp eval", "",
        f"{len(report['sources'])} sequence(s) of up to {report['frames']} frames: {', '.join(report['sources'])}.",
        "", "Percent, mean over sequences. mIoU on labelled frames; TC over all consecutive pairs (exact flow on "
        "synthetic video); flicker: share of stable-truth pixels whose prediction changes (lower is better). "
        "TC alone rewards over-smoothing: read it next to mIoU and flicker. mIoU, all pixels: every sequence's "
        "pixels in one confusion matrix (a class painted on a few pixels of a sequence that lacks it costs that "
        "sequence's mIoU a whole class, and this one only those pixels).", "",
        *head, *rows, "", "Per sequence:", "", *detail, ""])
