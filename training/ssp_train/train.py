"""Training: the image stage, then the SSP stage (``main(config_path)``), in one process or data parallel.

Read top to bottom: helpers (schedule, optimiser groups, weights size), where frames come from, ``train_image``,
``train_ssp``, ``run`` and ``main``. The step loop itself (mixed precision, accumulation, DDP, checkpoints) is
``ssp_train.engine``; what each stage optimises is ``ssp_train.objectives``. The SSP stage follows the paper,
non-recursively: the image model gives logits and stride-4 features on frames k − gap and k, the previous ones
are warped into frame k with the homography (``WarpFusionStep``), and the loss is the cross-entropy of the fused
logits against frame k's labels (+ the TC loss). The image model is frozen by default, so only the similarity
head learns.

    python -m ssp_train.train --config config/train/default.yaml
    torchrun --nproc_per_node 2 -m ssp_train.train --config config/train/default.yaml   (data parallel)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils.data import Dataset

from ssp_ros.backends.export_info import sha256_file
from ssp_ros.classes import ClassSet, load_class_set
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.models import (
    SSP,
    Segmenter,
    build_segmenter,
    build_similarity,
    build_ssp,
    read_state_dict,
    read_weights_metadata,
    save_weights,
    similarity_description,
)
from ssp_ros.models.appearance import AppearanceSimilarity
from ssp_ros.schema import to_dict
from ssp_train.config import (
    ImageStageConfig,
    KdStageConfig,
    SspStageConfig,
    StabiliserStageConfig,
    TrainConfig,
    load_train_config,
)
from ssp_train.data import ClipDataset, FrameDataset, PairDataset, batches, video_source
from ssp_train.distributed import ProcessGroup, process_group
from ssp_train.engine import RunLog, StageSettings, evaluate, run_stage
from ssp_train.flow_cache import EstimatedFlow
from ssp_train.objectives import (
    ImageObjective,
    ImagePairObjective,
    KdObjective,
    SspObjective,
    StabiliserObjective,
)
from ssp_train.sources import (
    FrameSource,
    Sequence,
    SyntheticSource,
    generate_sequence,
    generate_sequences,
    sequence_keys,
)
from ssp_train.teacher import TeacherCache, load_teacher

ALONE = ProcessGroup()  # a single process on the CPU

# ---------------------------------------------------------------------------------------------------------
# helpers


def cosine_schedule(steps: int, warmup: int, final_ratio: float) -> Callable[[int], float]:
    """LR multiplier per step: linear warm-up from 1/warmup to 1, then cosine decay to ``final_ratio``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(steps - warmup, 1), 1.0)
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on conv/linear weights only, not on biases and norm parameters."""
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay},
              {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def weights_megabytes(model: nn.Module, fp16: bool = True) -> float:
    """Size of ``model``'s tensors as ``save_weights`` stores them (parameters in fp16 when ``fp16``), in MB."""
    params = {name for name, _ in model.named_parameters()}
    total = 0
    for name, value in model.state_dict().items():
        size = 2 if fp16 and name in params and value.is_floating_point() else value.element_size()
        total += size * value.numel()
    return total / 1e6


Stage = ImageStageConfig | SspStageConfig | KdStageConfig | StabiliserStageConfig


def _scheduler(optimizer: torch.optim.Optimizer, stage: Stage) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(stage.steps, stage.warmup_steps, stage.final_lr_ratio))


def _settings(cfg: TrainConfig, name: str, stage: Stage) -> StageSettings:
    out = cfg.output
    return StageSettings(name=name, steps=stage.steps, accumulate=stage.accumulate, precision=cfg.compute.precision,
                         directory=Path(out.dir), checkpoint_every=out.checkpoint_every, log_every=out.log_every,
                         resume=out.resume, progress=out.progress, recipe=to_dict(cfg))


def _batch_maker(cfg: TrainConfig, dataset: Dataset, batch_size: int, seed: int,
                 group: ProcessGroup) -> Callable[[int], Iterator]:
    """``make_batches(start)`` for ``run_stage``: this process's shard of endless batches from batch ``start``."""
    def make_batches(start: int) -> Iterator:
        return batches(dataset, batch_size, seed, group.rank, group.world_size, start, cfg.compute.num_workers,
                       group.device.type == "cuda")
    return make_batches


def _summary(report: dict) -> str:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"
    return f"mIoU {fmt(report['miou'])}  TC {fmt(report['tc'])}  flicker {fmt(report['flicker'])}"


def _flip_prob(cfg: TrainConfig) -> float:
    return 0.5 if cfg.data.hflip else 0.0


def _classes(cfg: TrainConfig) -> ClassSet:
    return load_class_set(cfg.model.dataset)


def trained_on(cfg: TrainConfig) -> str:
    data = cfg.data
    return "ssp_ros.synthetic" if data.source == "synthetic" else f"{data.source} {data.split} ({data.root})"


def _batch_words(stage: Stage, group: ProcessGroup, unit: str) -> str:
    total = stage.batch_size * stage.accumulate * group.world_size
    if total == stage.batch_size:
        return f"{stage.batch_size} {unit}"
    return (f"{total} {unit} ({stage.batch_size} × {stage.accumulate} accumulated × {group.world_size} "
            f"process{'es' if group.world_size > 1 else ''})")


# ---------------------------------------------------------------------------------------------------------
# where frames come from


def needs_flow(cfg: TrainConfig) -> bool:
    """Whether a stage reads optical flow: the image stage's TC loss, or KD-SSP's fused targets."""
    return (cfg.image.steps > 0 and cfg.image.tc_weight > 0) or cfg.kd.steps > 0


def training_source(cfg: TrainConfig, log: RunLog | None = None) -> FrameSource:
    """The recipe's training frames: synthetic sequences generated in memory (with their flow when the KD stage
    runs), or the real data set indexed."""
    data = cfg.data
    started = time.perf_counter()
    if data.source == "synthetic":
        plan = data.sequence_plan()
        sequences, seconds = generate_sequences(plan, data.frames_per_sequence,
                                                progress=cfg.output.progress and (log is None or log.enabled),
                                                keep_flow=needs_flow(cfg))
        if log is not None:
            mix = f" ({', '.join(name for name, _ in data.resolve_scenarios())} in turn)" if data.scenarios else ""
            log.line(f"data: {sum(map(len, sequences))} frames from {len(sequences)} sequences{mix} in {seconds:.1f} s")
        return SyntheticSource(sequences, sequence_keys(plan, data.frames_per_sequence))
    flow = EstimatedFlow(data.flow, data.flow_weights, data.flow_cache) if needs_flow(cfg) else None
    source = video_source(cfg, flow)
    if log is not None:
        log.line(f"data: {len(source.labelled())} labelled frames in {len(source.sequences)} sequences of "
                 f"{data.source} {data.split} ({data.root}), indexed in {time.perf_counter() - started:.1f} s")
    return source


def _validation_sets(cfg: TrainConfig) -> list[tuple[str, Sequence]]:
    """(scenario name, frames) of the held-out validation flight of each training scenario, once per scenario
    (a mix may name one several times to give it a larger share); none if switched off."""
    if cfg.data.val_frames == 0:
        return []
    return [(name, generate_sequence(scenario, cfg.data.val_frames, cfg.data.val_seed, keep_flow=True))
            for name, scenario in dict(cfg.data.resolve_scenarios()).items()]


# ---------------------------------------------------------------------------------------------------------
# the two stages


def train_image(cfg: TrainConfig, source: FrameSource | None = None, log: RunLog | None = None,
                group: ProcessGroup = ALONE) -> Segmenter:
    """Stage 1: train the image model with cross-entropy on random crops of labelled frames.

    Starts from ``cfg.model.weights`` when set (image-model or SSP weights). Returns the segmenter (eval mode,
    on ``group.device``); with ``image.steps == 0`` it is returned as loaded.
    """
    out_dir = Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or RunLog(out_dir, enabled=group.is_main)
    classes = _classes(cfg)
    segmenter = build_segmenter(cfg.model, classes.num_classes).to(group.device)
    stage = cfg.image
    if stage.steps == 0:
        log.line("image stage: skipped (image.steps = 0)")
        return segmenter.eval()
    source = source if source is not None else training_source(cfg, log)
    if stage.tc_weight > 0:  # the paper's base training: CE + λ·TC on frame pairs
        dataset = PairDataset(source, stage.crop_size, cfg.data.frame_gap, _flip_prob(cfg), segmenter.output_stride,
                              segmenter.input_multiple, key="image.crop_size", jitter=cfg.data.jitter, with_flow=True)
        objective: nn.Module = ImagePairObjective(segmenter, stage.tc_weight, classes.ignore_index)
        unit = f"pairs (gap {list(cfg.data.frame_gap)}, TC λ {stage.tc_weight})"
    else:
        dataset = FrameDataset(source, stage.crop_size, _flip_prob(cfg), segmenter.input_multiple,
                               jitter=cfg.data.jitter)
        objective, unit = ImageObjective(segmenter, classes.ignore_index), "crops"
    optimizer = torch.optim.AdamW(param_groups(segmenter, stage.lr, stage.weight_decay), lr=stage.lr)

    make_batches = _batch_maker(cfg, dataset, stage.batch_size, cfg.seed + 1, group)
    log.line(f"image stage: {stage.steps} steps of {_batch_words(stage, group, unit)} of "
             f"{stage.crop_size or 'whole'} px from {len(dataset)} frames on {group.device}, {cfg.compute.precision}")
    result = run_stage(_settings(cfg, "image", stage), objective, segmenter,
                       optimizer, _scheduler(optimizer, stage), make_batches, group, log)
    segmenter.eval()
    log.line(f"image stage: {result['steps']} steps in {result['seconds']:.1f} s ({result['s_per_step']:.2f} s/step), "
             f"loss {result['first_loss']} -> {result['last_loss']} (mean of the first / last 10 steps)")
    if group.is_main:
        save_weights(segmenter, out_dir / "segmenter.safetensors",
                     {"dataset": cfg.model.dataset, "classes": list(classes.names), "trained_on": trained_on(cfg)})
        for scenario, val in _validation_sets(cfg):
            report = evaluate(segmenter, val, classes.num_classes, classes.ignore_index)
            result.setdefault("val", report)  # the first scenario's, as before mixes existed
            result.setdefault("val_by_scenario", {})[scenario] = report
            log.line(f"image stage: validation ({len(val)} frames of {scenario}, seed {cfg.data.val_seed}): "
                     f"{_summary(report['image'])}")
        log.record(stage="image", summary=result)
    group.barrier()
    return segmenter


def _fusion_optimizer(model: SSP, stage: SspStageConfig | KdStageConfig, frozen: bool) -> torch.optim.AdamW:
    """AdamW over the similarity head at ``stage.lr`` and, unless ``frozen``, the image model at ``stage.lr_image``."""
    groups = param_groups(model.similarity_head, stage.lr, stage.weight_decay)
    if not frozen:
        groups += param_groups(model.segmenter, stage.lr_image, stage.weight_decay)
    return torch.optim.AdamW(groups, lr=stage.lr)


def _finish_fusion_stage(name: str, label: str, cfg: TrainConfig, stage: SspStageConfig | KdStageConfig,
                         objective: nn.Module, model: SSP, optimizer: torch.optim.Optimizer,
                         make_batches: Callable, group: ProcessGroup, log: RunLog) -> SSP:
    """Run the SSP or KD stage, then log, validate image model vs ``label`` on rank 0 and wait for every rank."""
    classes = _classes(cfg)
    result = run_stage(_settings(cfg, name, stage), objective, model, optimizer, _scheduler(optimizer, stage),
                       make_batches, group, log)
    model.eval()
    model.segmenter.requires_grad_(True)
    log.line(f"{name} stage: {result['steps']} steps in {result['seconds']:.1f} s ({result['s_per_step']:.2f} s/step), "
             f"loss {result['first_loss']} -> {result['last_loss']} (mean of the first / last 10 steps)")
    if group.is_main:
        for scenario, val in _validation_sets(cfg):
            report = evaluate(model.segmenter, val, classes.num_classes, classes.ignore_index,
                              model.warp_fusion_step(), registration=cfg.ssp.registration)
            result.setdefault("val", report)  # the first scenario's, as before mixes existed
            result.setdefault("val_by_scenario", {})[scenario] = report
            log.line(f"{name} stage: validation on {scenario}, image model: {_summary(report['image'])}")
            log.line(f"{name} stage: validation on {scenario}, {label + ':':<13}{_summary(report['ssp'])}")
        log.record(stage=name, summary=result)
    group.barrier()
    return model


def train_ssp(cfg: TrainConfig, segmenter: Segmenter, source: FrameSource | None = None, log: RunLog | None = None,
              group: ProcessGroup = ALONE) -> SSP:
    """Stage 2: train the similarity head on frame pairs (the image model frozen unless ``ssp.lr_image > 0``).

    Returns the SSP model (eval mode) around ``segmenter``; its weights are saved by ``run``.
    """
    out_dir = Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or RunLog(out_dir, enabled=group.is_main)
    classes = _classes(cfg)
    model = SSP(segmenter, _similarity_head(cfg, segmenter, log)).to(group.device)
    stage = cfg.ssp
    if stage.steps == 0:
        log.line("ssp stage: skipped (ssp.steps = 0): the similarity head is not trained here")
        return model.eval()
    source = source if source is not None else training_source(cfg, log)
    dataset = ClipDataset(source, stage.crop_size, cfg.data.frame_gap, _flip_prob(cfg), segmenter.output_stride,
                          segmenter.input_multiple, length=stage.unroll + 1, jitter=cfg.data.jitter)
    frozen = stage.lr_image == 0
    objective = SspObjective(model, frozen, stage.tc_weight, classes.ignore_index, stage.registration,
                             stage.movers_weight)
    optimizer = _fusion_optimizer(model, stage, frozen)

    make_batches = _batch_maker(cfg, dataset, stage.batch_size, cfg.seed + 2, group)
    log.line(f"ssp stage: {stage.steps} steps of {_batch_words(stage, group, 'clips')} of {stage.unroll + 1} frames "
             f"(gap {list(cfg.data.frame_gap)}), crops of {stage.crop_size or 'whole'} px, image model "
             f"{'frozen' if frozen else f'lr {stage.lr_image}'}, on {group.device}, {cfg.compute.precision}")
    return _finish_fusion_stage("ssp", "SSP", cfg, stage, objective, model, optimizer, make_batches, group, log)


def _similarity_head(cfg: TrainConfig, segmenter: Segmenter, log: RunLog) -> nn.Module:
    """The recipe's similarity module (``ssp.similarity``, ``ssp.similarity_inputs``): new, or the one of
    ``model.weights`` when that file holds an SSP model with the same kind of module."""
    stage = cfg.ssp
    head = build_similarity(stage.similarity, segmenter.feature_channels, stage.similarity_inputs)
    meta = read_weights_metadata(cfg.model.weights) if cfg.model.weights is not None else {}
    if meta.get("kind") == "ssp":
        stored = {"similarity": meta.get("similarity", "learned"),
                  "similarity_inputs": list(meta.get("similarity_inputs", []))}
        if stored != similarity_description(head):
            log.line(f"ssp: {cfg.model.weights} holds similarity {stored}; the recipe asks for "
                     f"{similarity_description(head)}, which starts untrained")
            return head
        tensors, _ = read_state_dict(cfg.model.weights)
        prefix = "similarity_head."
        head.load_state_dict({k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)})
        log.line(f"ssp: similarity head starts from {cfg.model.weights}")
    return head


def _teacher_cache(cfg: TrainConfig, dataset: ClipDataset, source: FrameSource, log: RunLog,
                   group: ProcessGroup) -> TeacherCache:
    """The teacher's logits of every frame the KD pairs may read, computed where missing (split over processes)."""
    stage, classes = cfg.kd, _classes(cfg)
    teacher_hash = sha256_file(stage.teacher)
    cache = TeacherCache(stage.cache, teacher_hash, source)
    missing = cache.missing(dataset.frames_used())
    log.line(f"kd: teacher {stage.teacher} (sha256 {teacher_hash[:16]}), logits cached in {cache.folder}: "
             f"{len(missing)} of {len(dataset.frames_used())} frames to compute")
    if missing:
        teacher = load_teacher(stage.teacher, classes.num_classes, cfg.model.dataset).to(group.device)
        started = time.perf_counter()
        cache.fill(teacher, missing[group.rank::group.world_size], group.device,
                   progress=cfg.output.progress and group.is_main)
        log.line(f"kd: teacher logits of {len(missing)} frames in {time.perf_counter() - started:.1f} s")
        del teacher
    group.barrier()
    return cache


def train_kd(cfg: TrainConfig, model: SSP, source: FrameSource | None = None, log: RunLog | None = None,
             group: ProcessGroup = ALONE) -> SSP:
    """Stage 3, KD-SSP: distil the whole student SSP model from the teacher's cached logits on frame pairs
    (fused targets from bidirectional flow, KL at ``kd.temperature``, + the TC loss). Returns ``model`` (eval)."""
    out_dir = Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or RunLog(out_dir, enabled=group.is_main)
    stage, segmenter = cfg.kd, model.segmenter
    if stage.steps == 0:
        return model.eval()
    source = source if source is not None else training_source(cfg, log)
    dataset = PairDataset(source, stage.crop_size, cfg.data.frame_gap, _flip_prob(cfg), segmenter.output_stride,
                          segmenter.input_multiple, key="kd.crop_size", jitter=cfg.data.jitter, with_flow=True)
    dataset.teacher = _teacher_cache(cfg, dataset, source, log, group)
    frozen = stage.lr_image == 0
    objective = KdObjective(model, frozen, stage.temperature, stage.prev_weight, stage.tc_weight)
    optimizer = _fusion_optimizer(model, stage, frozen)

    make_batches = _batch_maker(cfg, dataset, stage.batch_size, cfg.seed + 3, group)
    log.line(f"kd stage: {stage.steps} steps of {_batch_words(stage, group, 'pairs')} (gap {list(cfg.data.frame_gap)}),"
             f" crops of {stage.crop_size or 'whole'} px, T {stage.temperature}, image model "
             f"{'frozen' if frozen else f'lr {stage.lr_image}'}, on {group.device}, {cfg.compute.precision}")
    return _finish_fusion_stage("kd", "KD-SSP", cfg, stage, objective, model, optimizer, make_batches, group, log)


def train_stabiliser(cfg: TrainConfig, source: FrameSource | None = None, log: RunLog | None = None,
                     group: ProcessGroup = ALONE) -> AppearanceSimilarity:
    """The stabiliser's own similarity model (appearance encoder + similarity head) from scratch on frame pairs,
    with simulated input segmenters (``StabiliserObjective``). Returns the model (eval mode)."""
    out_dir = Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or RunLog(out_dir, enabled=group.is_main)
    stage = cfg.stabiliser
    model = AppearanceSimilarity(stage.channels).to(group.device)
    source = source if source is not None else training_source(cfg, log)
    dataset = PairDataset(source, stage.crop_size, cfg.data.frame_gap, _flip_prob(cfg), key="stabiliser.crop_size",
                          jitter=cfg.data.jitter)
    objective = StabiliserObjective(model, _classes(cfg).num_classes, stage.fusion_weight, stage.movers_weight)
    optimizer = torch.optim.AdamW(param_groups(model, stage.lr, stage.weight_decay), lr=stage.lr)
    make_batches = _batch_maker(cfg, dataset, stage.batch_size, cfg.seed + 4, group)
    log.line(f"stabiliser stage: {stage.steps} steps of {_batch_words(stage, group, 'pairs')} "
             f"(gap {list(cfg.data.frame_gap)}), crops of {stage.crop_size or 'whole'} px, C = {stage.channels}, "
             f"on {group.device}, {cfg.compute.precision}")
    result = run_stage(_settings(cfg, "stabiliser", stage), objective, model, optimizer, _scheduler(optimizer, stage),
                       make_batches, group, log)
    log.line(f"stabiliser stage: {result['steps']} steps in {result['seconds']:.1f} s ({result['s_per_step']:.2f} "
             f"s/step), loss {result['first_loss']} -> {result['last_loss']} (mean of the first / last 10 steps)")
    log.record(stage="stabiliser", summary=result)
    group.barrier()
    return model.eval()


# ---------------------------------------------------------------------------------------------------------
# the whole recipe


def check_weights_size(cfg: TrainConfig, num_classes: int) -> float:
    """The fp16 size of the final weights in MB; ``ConfigError`` before any work if over ``max_weights_mb``."""
    if cfg.output.model == "image":
        model = build_segmenter(cfg.model, num_classes, with_weights=False)
    elif cfg.output.model == "stabiliser":
        model = AppearanceSimilarity(cfg.stabiliser.channels)
    else:
        model = build_ssp(cfg.model, num_classes, False, cfg.ssp.similarity, cfg.ssp.similarity_inputs)
    size = weights_megabytes(model)
    limit = cfg.output.max_weights_mb
    if limit and size > limit:
        raise ConfigError(f"output.max_weights_mb: the weights of {cfg.model.backbone} with decoder_channels "
                          f"{cfg.model.decoder_channels} take {size:.2f} MB in fp16, over the limit of {limit} MB: "
                          f"lower model.decoder_channels or raise the limit")
    return size


def run(cfg: TrainConfig, source_name: str = "<config>") -> dict:
    """The stages (image, ssp, kd; each skipped at 0 steps), then the final weights (fp16 safetensors, written by
    rank 0: the SSP model, or the image model alone with ``output.model: image``); returns the run summary.

    Joins the torchrun job when started by torchrun (``ssp_train.distributed``); alone otherwise.
    """
    began = time.perf_counter()
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    classes = _classes(cfg)
    size_mb = check_weights_size(cfg, classes.num_classes)
    if cfg.model.weights is not None and not Path(cfg.model.weights).is_file():  # before minutes of data
        raise ConfigError(f"{source_name}: model.weights: {cfg.model.weights} not found (from {Path.cwd()}); a "
                          "recipe that continues another's result needs that one run first (its output.weights)")
    with process_group(cfg.compute.device) as group:
        torch.manual_seed(cfg.seed + group.rank)  # dropout differs between processes; DDP copies rank 0's weights
        out_dir = Path(cfg.output.dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        log = RunLog(out_dir, fresh=not cfg.output.resume, enabled=group.is_main)
        if group.is_main:
            (out_dir / "config.yaml").write_text(f"# resolved training recipe (from {source_name})\n"
                                                 + yaml.safe_dump(to_dict(cfg), sort_keys=False))
        log.line(f"train: recipe {source_name}, run dir {out_dir}, {group.world_size} process(es) on "
                 f"{group.device.type}, {cfg.num_threads} threads each, final weights {cfg.output.weights} "
                 f"(~{size_mb:.1f} MB)")
        needs_data = cfg.image.steps > 0 or cfg.ssp.steps > 0 or cfg.kd.steps > 0 or cfg.stabiliser.steps > 0
        t = time.perf_counter()
        source = training_source(cfg, log) if needs_data else None
        times = {"data": time.perf_counter() - t}
        final: nn.Module
        if cfg.output.model == "stabiliser":
            t = time.perf_counter()
            final = train_stabiliser(cfg, source, log, group)
            times["stabiliser"] = time.perf_counter() - t
        else:
            t = time.perf_counter()
            final = train_image(cfg, source, log, group)
            times["image"] = time.perf_counter() - t
        if cfg.output.model == "ssp":
            t = time.perf_counter()
            final = train_ssp(cfg, final, source, log, group)
            times["ssp"] = time.perf_counter() - t
            if cfg.kd.steps > 0:
                t = time.perf_counter()
                final = train_kd(cfg, final, source, log, group)
                times["kd"] = time.perf_counter() - t
        summary: dict = {"weights": cfg.output.weights}
        if group.is_main:
            metadata = {"fp16": True, "dataset": cfg.model.dataset, "classes": list(classes.names),
                        "input_size": list(cfg.model.input_size), "trained_on": trained_on(cfg),
                        "train_config": to_dict(cfg)}
            path = save_weights(final, cfg.output.weights, metadata)
            times["total"] = time.perf_counter() - began
            log.line("train: wall time " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
            log.line(f"train: wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
            summary.update(weights_mb=round(path.stat().st_size / 1e6, 3),
                           seconds={k: round(v, 2) for k, v in times.items()})
            log.record(stage="done", summary=summary)
        group.barrier()
    return summary


def main(config_path: str | Path) -> int:
    """Run the recipe in ``config_path`` (what ``ssp train --config FILE`` calls); ``SspError`` propagates."""
    run(load_train_config(config_path), str(config_path))
    return 0


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssp_train.train", description="Train the image model and SSP "
                                     "(data parallel under torchrun).")
    parser.add_argument("--config", type=Path, required=True, help="training recipe YAML (config/train/*.yaml)")
    args = parser.parse_args(argv)
    try:
        return main(args.config)
    except SspError as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(_cli())
