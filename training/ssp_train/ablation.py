"""``ssp ablate``: the SSP ablations, trained from one shared image model and scored on held-aside synthetic video.

A plan (``config/train/ablation.yaml``) names a base training recipe, the image model the variants share, and
the variants: each changes keys of the SSP stage (similarity module, registration, TC weight λ, fine-tuning of the
image model, unrolled clips, ...) or of the image stage (then it trains its own image model first). The runner
generates the training video once, trains each variant's SSP stage, and runs every result through the drone's
``Pipeline`` (``ssp_ros.eval.clips.run_clip``) on held-aside sequences of the training world: mIoU, TC, flicker and VC
per variant, next to the image model. Writes ``ablation.json`` and ``ablation.md`` into the plan's ``out`` folder.

A finished variant leaves ``<out>/<name>/row.json`` (the image model's own scores: ``<out>/image_row.json``); a
later run with the same resolved recipe, image model (the ``image_weights`` file's hash, or the recipe that
trains it) and evaluation reuses it, so an interrupted plan continues where it stopped.

    ssp ablate --config config/train/ablation.yaml [--only ssp fixed_blend]
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ssp_ros.backends.export_info import sha256_file
from ssp_ros.classes import load_class_set
from ssp_ros.config import SspConfig, load_config
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.eval.evaluate import HELD_ASIDE_SEEDS, Candidate, candidate_backend, mean_of_known
from ssp_ros.eval.report import cell
from ssp_ros.schema import config_from_dict, read_yaml, to_dict
from ssp_train.config import TrainConfig, load_train_config

PLAN_KEYS = ("base", "image_weights", "out", "seeds", "frames", "runtime", "variants")
VARIANT_KEYS = ("name", "label", "group", "image", "ssp")
GROUPS = ("paper", "beyond")
METRICS = ("miou", "tc", "flicker", "vc8")


@dataclass(frozen=True)
class Variant:
    """One row of the table: a name (folder), a label, its group (``paper`` or ``beyond``) and its recipe.
    ``own_image_model``: the variant changes the image stage, so it trains its own image model instead of
    sharing the plan's."""

    name: str
    label: str
    group: str
    recipe: TrainConfig
    own_image_model: bool = False


@dataclass(frozen=True)
class AblationPlan:
    """What ``run_ablation`` trains and evaluates (see ``load_plan``)."""

    source: str  # the plan file, for messages
    base: TrainConfig
    image_weights: Path | None  # the shared image model (SSP or image-model file); None = train base's image stage
    out: Path
    seeds: tuple[int, ...]
    frames: int
    runtime: SspConfig  # registration settings of the evaluation pipeline
    variants: tuple[Variant, ...]


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def load_plan(path: str | Path) -> AblationPlan:
    """Read an ablation plan; every variant's recipe is the base recipe with its ``ssp`` keys replaced, validated
    like any recipe (errors name the plan file, the variant and the key)."""
    path = Path(path)
    data = read_yaml(path)
    _expect(isinstance(data, dict), f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(PLAN_KEYS))
    _expect(not unknown, f"{path}: unknown key(s) {unknown} (valid keys: {', '.join(PLAN_KEYS)})")
    _expect(isinstance(data.get("base"), str), f"{path}: base: the training recipe every variant starts from "
            "(e.g. config/train/default.yaml)")
    base = load_train_config(data["base"])
    seeds = tuple(data.get("seeds", HELD_ASIDE_SEEDS))
    _expect(bool(seeds) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds),
            f"{path}: seeds: expected a non-empty list of integers, got {data.get('seeds')!r}")
    _expect(base.data.source == "synthetic", f"{path}: base: {data['base']} trains on data.source "
            f"'{base.data.source}'; the ablations run on the synthetic benchmark")
    _expect(base.data.val_seed not in seeds and not set(seeds) & set(base.data.seeds()),
            f"{path}: seeds {list(seeds)} overlap the base recipe's training or validation seeds")
    frames = data.get("frames", 100)
    _expect(isinstance(frames, int) and frames >= 2, f"{path}: frames: expected an integer >= 2, got {frames!r}")
    variants = data.get("variants")
    _expect(isinstance(variants, list) and variants, f"{path}: variants: expected a non-empty list")
    base_dict = to_dict(base)
    parsed, names = [], set()
    for i, item in enumerate(variants):
        where = f"{path}: variants[{i}]"
        _expect(isinstance(item, dict), f"{where}: expected a mapping with keys {', '.join(VARIANT_KEYS)}")
        unknown = sorted(set(item) - set(VARIANT_KEYS))
        _expect(not unknown, f"{where}: unknown key(s) {unknown} (valid keys: {', '.join(VARIANT_KEYS)})")
        name = item.get("name")
        _expect(isinstance(name, str) and name.isidentifier(), f"{where}: name: expected an identifier, got {name!r}")
        _expect(name not in names, f"{where}: name '{name}' is used twice")
        names.add(name)
        group = item.get("group", "paper")
        _expect(group in GROUPS, f"{where} ({name}): group: expected one of {list(GROUPS)}, got {group!r}")
        sections = {}
        for section in ("image", "ssp"):
            overrides = item.get(section) or {}
            _expect(isinstance(overrides, dict), f"{where} ({name}): {section}: expected a mapping of {section}-stage "
                    "keys")
            sections[section] = {**base_dict[section], **overrides}
        recipe = config_from_dict(TrainConfig, {**base_dict, **sections}, f"{where} ({name})")
        own_image = bool(item.get("image"))
        _expect(not own_image or recipe.image.steps > 0, f"{where} ({name}): image: the variant changes the image "
                "stage but trains it for 0 steps")
        parsed.append(Variant(name, str(item.get("label", name)), group, recipe, own_image))
    image_weights = data.get("image_weights")
    runtime = load_config(data.get("runtime"))
    return AblationPlan(str(path), base, Path(image_weights) if image_weights else None,
                        Path(data.get("out", "out/ablation")), seeds, frames, runtime, tuple(parsed))


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _finished(path: Path, key: str) -> dict | None:
    """The result stored in ``path`` by an earlier run when it was made under ``key``, else None."""
    result = json.loads(path.read_text()) if path.is_file() else None
    return result if result is not None and result.get("key") == key else None


def _image_model_origin(plan: AblationPlan) -> str:
    """What identifies the shared image model: the SHA-256 of ``image_weights``, or a fingerprint of the base
    recipe that trains it (part of every variant's key, so a different image model retrains everything)."""
    if plan.image_weights is not None:
        if not plan.image_weights.is_file():
            raise SspError(f"{plan.source}: image_weights: {plan.image_weights}: weights file not found")
        return f"sha256:{sha256_file(plan.image_weights)}"
    base = plan.base
    return f"recipe:{_fingerprint(to_dict(base.model), to_dict(base.data), to_dict(base.image), base.seed)}"


def _shared_image_model(plan: AblationPlan, origin: str, training_frames: Callable, log, num_classes: int) -> Path:
    """``<out>/image_model.safetensors``, the image model every variant starts from: kept when it has ``origin``,
    else loaded from ``image_weights`` or trained with the base recipe's image stage, and written there."""
    from ssp_ros.models import build_segmenter, read_weights_metadata, save_weights
    from ssp_train.train import train_image

    path = plan.out / "image_model.safetensors"
    if path.is_file() and read_weights_metadata(path).get("origin") == origin:
        return path
    if plan.image_weights is not None:
        segmenter = build_segmenter(replace(plan.base.model, weights=str(plan.image_weights)), num_classes)
        described = str(plan.image_weights)
    else:
        cfg = replace(plan.base, output=replace(plan.base.output, dir=str(plan.out / "image")))
        segmenter = train_image(cfg, training_frames(), log)
        described = f"the image stage of {plan.source}'s base recipe"
    save_weights(segmenter, path, {"dataset": plan.base.model.dataset, "trained_on": described, "origin": origin})
    log.line(f"ablate: shared image model {path} (from {described})")
    return path


def _evaluate(plan: AblationPlan, weights: Path, clips: list, propagate: bool, registration: bool,
              label: str) -> dict:
    """Mean metrics over the held-aside clips of one weights file through the runtime pipeline."""
    from ssp_ros.eval.clips import run_clip

    dataset = plan.base.model.dataset
    runtime = replace(plan.runtime, model=replace(plan.runtime.model, input_size=plan.base.model.input_size),
                      registration=replace(plan.runtime.registration, enabled=registration))
    run_cfg, backend, _ = candidate_backend(runtime, Candidate(label, weights), dataset)
    num_classes = load_class_set(dataset).num_classes
    runs = [run_clip(run_cfg, backend, clip, propagate, num_classes, label) for clip in clips]
    means = {key: mean_of_known([r[key] for r in runs]) for key in METRICS}
    per_class = [mean_of_known([r["iou_per_class"][k] if r["iou_per_class"] else None for r in runs])
                 for k in range(num_classes)]
    per_sequence = [{"source": c.source, **{k: r[k] for k in METRICS}} for c, r in zip(clips, runs)]
    return {**means, "iou_per_class": per_class, "per_sequence": per_sequence}


def run_ablation(plan: AblationPlan, only: list[str] | None = None) -> dict:
    """Train and evaluate the plan's variants (``only``: these names; the others are reused from earlier runs when
    finished, else left out); write ``ablation.json`` / ``ablation.md`` and return the report."""
    import torch

    from ssp_ros.eval.clips import synthetic_clip
    from ssp_ros.models import build_segmenter, save_weights
    from ssp_train.engine import RunLog
    from ssp_train.train import needs_flow, train_image, train_ssp, trained_on, training_source

    retrain = set(only or ())
    wanted = retrain or {v.name for v in plan.variants}
    missing = sorted(wanted - {v.name for v in plan.variants})
    if missing:
        raise SspError(f"{plan.source}: --only {missing}: no such variant")
    plan.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(plan.base.num_threads)
    log = RunLog(plan.out, fresh=False)
    classes = load_class_set(plan.base.model.dataset)
    source = None

    def training_frames():  # generated once (with flow when a variant's image stage needs it), when first needed
        nonlocal source
        if source is None:
            recipe = next((v.recipe for v in plan.variants if v.own_image_model and needs_flow(v.recipe)), plan.base)
            source = training_source(recipe, log)
        return source

    origin = _image_model_origin(plan)
    image_path = _shared_image_model(plan, origin, training_frames, log, classes.num_classes)
    scenario = plan.base.data.resolve_scenario()

    @functools.cache
    def clips() -> list:  # the held-aside flights, generated when something is scored
        return [synthetic_clip(scenario, plan.frames, seed) for seed in plan.seeds]

    evaluation = {"seeds": list(plan.seeds), "frames": plan.frames, "scenario": to_dict(scenario),
                  "registration": to_dict(plan.runtime.registration)}
    image_file, image_key = plan.out / "image_row.json", _fingerprint(origin, evaluation)
    image_row = _finished(image_file, image_key)
    if image_row is None:
        image_row = {"key": image_key, **_evaluate(plan, image_path, clips(), False, True, "image model")}
        image_file.write_text(json.dumps(image_row, indent=2))
    log.line(f"ablate: image model: mIoU {cell(image_row['miou'])}  TC {cell(image_row['tc'])}")
    rows = []
    for variant in plan.variants:
        folder = plan.out / variant.name
        image_key = to_dict(variant.recipe.image) if variant.own_image_model else origin
        key = _fingerprint(to_dict(variant.recipe.ssp), to_dict(variant.recipe.model), image_key, evaluation)
        row_file = folder / "row.json"
        done = _finished(row_file, key)
        if done is not None and variant.name not in retrain:
            log.line(f"ablate: {variant.name}: reused {row_file}")
            rows.append(done)
            continue
        if variant.name not in wanted:
            continue  # neither asked for nor finished earlier
        output = replace(variant.recipe.output, dir=str(folder), weights=str(folder / "ssp.safetensors"), resume=False)
        video = training_frames()  # generated before the clock starts: train_s is the variant's own training
        started = time.perf_counter()
        variant_log = RunLog(folder, fresh=True)
        if variant.own_image_model:  # its image stage as the base recipe would run it, with the variant's keys
            cfg = replace(variant.recipe, output=output)
            segmenter = train_image(cfg, video, variant_log)
        else:
            cfg = replace(variant.recipe, model=replace(variant.recipe.model, weights=str(image_path)),
                          image=replace(variant.recipe.image, steps=0), output=output)
            segmenter = build_segmenter(cfg.model, classes.num_classes)
        model = train_ssp(cfg, segmenter, video, variant_log)
        weights = save_weights(model, cfg.output.weights, {"dataset": cfg.model.dataset, "trained_on": trained_on(cfg),
                                                           "train_config": to_dict(cfg), "fp16": True})
        seconds = time.perf_counter() - started
        ssp_row = _evaluate(plan, weights, clips(), True, variant.recipe.ssp.registration, variant.name)
        row = {"name": variant.name, "label": variant.label, "group": variant.group, "key": key,
               "ssp": to_dict(variant.recipe.ssp), "train_s": round(seconds, 1), **ssp_row}
        if variant.own_image_model or variant.recipe.ssp.lr_image > 0:  # its image model differs: score it alone
            row["image"] = _evaluate(plan, weights, clips(), False, True, f"{variant.name} image")
        row_file.write_text(json.dumps(row, indent=2))
        log.line(f"ablate: {variant.name}: mIoU {cell(row['miou'])}  TC {cell(row['tc'])}  "
                 f"flicker {cell(row['flicker'])}  ({seconds:.0f} s)")
        rows.append(row)
    report = {"plan": plan.source, "base": to_dict(plan.base), "classes": list(classes.names),
              "image_model": str(image_path),
              "evaluation": evaluation, "image": image_row, "rows": rows}
    (plan.out / "ablation.json").write_text(json.dumps(report, indent=2))
    (plan.out / "ablation.md").write_text(markdown(report))
    return report


def _delta(value: float | None, reference: float | None) -> str:
    if value is None or reference is None:
        return "n/a"
    return f"{value - reference:+.2f}"


def markdown(report: dict) -> str:
    """The ablation table: the image model, then the paper's ablations, then the ones beyond the paper, each with
    its difference to plain SSP (the row named ``ssp``)."""
    reference = next((r for r in report["rows"] if r["name"] == "ssp"), None)
    ref = reference or {}
    head = ["| variant | mIoU | TC | flicker | VC8 | Δ mIoU | Δ TC | Δ flicker | train s |",
            "|---|---|---|---|---|---|---|---|---|"]

    def line(label: str, row: dict, train_s: str) -> str:
        return (f"| {label} | " + " | ".join(cell(row[k]) for k in METRICS) + " | "
                + " | ".join(_delta(row[k], ref.get(k)) for k in ("miou", "tc", "flicker")) + f" | {train_s} |")

    lines = [line("image model (no propagation)", report["image"], "–")]
    for group, title in (("paper", "the paper's ablations"), ("beyond", "beyond the paper")):
        members = [r for r in report["rows"] if r["group"] == group]
        if members:
            lines.append(f"| *{title}* | | | | | | | | |")
        for r in members:
            lines.append(line(r["label"], r, f"{r['train_s']:.0f}"))
            if "image" in r:
                lines.append(line(f"{r['label']}: its image model alone", r["image"], "–"))
    ev = report["evaluation"]
    return "\n".join([
        "# SSP ablations", "",
        f"Plan `{report['plan']}`; every variant trains the SSP stage of the base recipe from the same image model "
        f"(`{report['image_model']}`) and runs through the runtime pipeline (ORB registration unless the variant "
        f"turns it off) on {len(ev['seeds'])} held-aside synthetic sequences (seeds {ev['seeds']}) of {ev['frames']} "
        "frames. Percent, mean over sequences; Δ against plain SSP (the `ssp` row). Flicker: share of pixels whose "
        "true class stays the same but whose prediction changes (lower is better); VC8: video consistency over 8 "
        "frames. TC alone rewards over-smoothing: read it next to mIoU and flicker.", "",
        *head, *lines, "", *_per_class_table(report)])


def _per_class_table(report: dict) -> list[str]:
    """Each row's IoU per class (mean over the sequences where the class occurs), when the report has them:
    where a variant gains or loses, e.g. on moving cars, which the mean IoU hides."""
    names = report.get("classes")
    rows = [("image model (no propagation)", report["image"])] + [(r["label"], r) for r in report["rows"]]
    if not names or any("iou_per_class" not in row for _, row in rows):
        return []
    return ["IoU per class (percent, mean over the sequences where the class occurs):", "",
            "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
            *(f"| {label} | " + " | ".join(cell(v) for v in row["iou_per_class"]) + " |" for label, row in rows),
            ""]
