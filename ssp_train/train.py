"""Training: the image stage, then the SSP stage, in one process (``main(config_path)``).

Read top to bottom: helpers (threads, schedule, optimiser groups, checkpoints, the step loop, logging),
``evaluate`` (image model vs SSP on a held-out synthetic sequence), ``train_image``, ``train_ssp``, ``run``
and ``main``. The SSP stage follows the paper, non-recursively: the image model gives logits and stride-4
features on frames k − gap and k, the previous ones are warped into frame k with the exact homography
(``WarpFusionStep``), and the loss is the cross-entropy of the fused logits against frame k's labels. The
image model is frozen by default, so only the similarity head learns.

    python -m ssp_train.train --config config/train/default.yaml
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ssp_ros.classes import ClassSet, load_class_set
from ssp_ros.config import to_dict
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.metrics import SequenceMetrics
from ssp_ros.models import SSP, Segmenter, SimilarityHead, build_segmenter, build_ssp, save_weights, warp
from ssp_ros.registration import cells_to_previous
from ssp_ros.synthetic import relative_homography
from ssp_train.config import TrainConfig, load_train_config
from ssp_train.data import ClipDataset, FrameDataset, Sequence, batches, generate_sequence, generate_sequences
from ssp_train.losses import occlusion_weight, segmentation_loss, temporal_consistency_loss

EMA_BETA = 0.9  # smoothing of the running loss shown in the progress bar and the log


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


def _to_previous(homography: np.ndarray, stride: int) -> torch.Tensor:
    """1×3×3 current → previous stride-``stride`` cell map from a previous → current pixel homography."""
    return torch.from_numpy(cells_to_previous(homography, stride)).float()[None]


class RunLog:
    """Log lines to the console (above the progress bars) and as JSON lines to ``<dir>/train_log.jsonl``
    (appended to; ``fresh`` starts a new file)."""

    def __init__(self, directory: Path, fresh: bool = False) -> None:
        self.path = directory / "train_log.jsonl"
        if fresh:
            self.path.unlink(missing_ok=True)

    def line(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text)

    def record(self, **entry: object) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def _save_checkpoint(path: Path, stage: str, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Model + optimiser + scheduler + step, written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"stage": stage, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "describe": model.describe()}, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, stage: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler) -> int:
    """Restore a checkpoint of ``_save_checkpoint``; returns the number of steps already done."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        raise SspError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    if state.get("stage") != stage or state.get("describe") != model.describe():
        raise SspError(f"{path}: checkpoint of stage {state.get('stage')!r} for {state.get('describe')}, this run "
                       f"trains stage {stage!r} for {model.describe()}: delete it or set output.resume: false")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


def _loop(stage: str, cfg: TrainConfig, steps: int, step_fn: Callable[[], dict[str, float]], model: nn.Module,
          optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, log: RunLog) -> dict:
    """Run ``step_fn`` (one optimiser step; returns ``{"loss": ..., **other values to log}``) up to ``steps``,
    with progress, running (smoothed) values, log lines and checkpoints; resumes from ``<dir>/<stage>_last.pt``
    when ``output.resume``."""
    from tqdm import tqdm

    out = cfg.output
    checkpoint = Path(out.dir) / f"{stage}_last.pt"
    start = 0
    if out.resume and checkpoint.is_file():
        start = _load_checkpoint(checkpoint, stage, model, optimizer, scheduler)
        log.line(f"{stage}: resumed from {checkpoint} at step {start}")
    ema: dict[str, float] = {}
    first, last = [], []
    began = time.perf_counter()
    bar = tqdm(range(start, steps), desc=stage, unit="step", initial=start, total=steps, disable=not out.progress,
               dynamic_ncols=True)
    for step in bar:
        values = step_fn()
        loss = values["loss"]
        if not math.isfinite(loss):
            raise SspError(f"{stage} stage: loss is {loss} at step {step + 1}: lower the learning rate")
        debias = 1.0 - EMA_BETA ** (step - start + 1)
        for key, value in values.items():
            ema[key] = EMA_BETA * ema.get(key, 0.0) + (1.0 - EMA_BETA) * value
        smooth = {key: value / debias for key, value in ema.items()}
        running = smooth["loss"]
        (first if len(first) < 10 else last).append(loss)
        last = last[-10:]
        lr = optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{running:.3f}", lr=f"{lr:.2e}", refresh=False)
        done = step + 1
        if done % out.log_every == 0 or done == steps:
            elapsed = time.perf_counter() - began
            others = "".join(f"  {key} {value:.4f}" for key, value in smooth.items() if key != "loss")
            log.line(f"{stage} step {done}/{steps}  loss {running:.4f}{others}  lr {lr:.2e}  "
                     f"{elapsed / (done - start):.2f} s/step")
            log.record(stage=stage, step=done, **{k: round(v, 5) for k, v in smooth.items()},
                       last_loss=round(loss, 5), lr=lr, seconds=round(elapsed, 2))
        if done % out.checkpoint_every == 0 or done == steps:
            _save_checkpoint(checkpoint, stage, done, model, optimizer, scheduler)
    bar.close()
    seconds = time.perf_counter() - began
    ran = steps - start
    return {"steps": ran, "seconds": round(seconds, 2), "s_per_step": round(seconds / max(ran, 1), 3),
            "first_loss": round(float(np.mean(first)), 4) if first else None,
            "last_loss": round(float(np.mean(last or first)), 4) if first else None}


# ---------------------------------------------------------------------------------------------------------
# validation


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))


@torch.no_grad()
def evaluate(segmenter: Segmenter, frames: Sequence, num_classes: int, ignore_index: int = 255,
             fusion: nn.Module | None = None) -> dict:
    """Image model (and, with ``fusion``, SSP run recursively) over whole frames, in order.

    Uses the generator's exact homography and flow. Returns ``{"image": report, "ssp": report}`` with
    ``SequenceMetrics`` reports (mIoU, TC, flicker in percent).
    """
    was_training = segmenter.training
    segmenter.eval()
    reports = {"image": SequenceMetrics(num_classes, ignore_index)}
    if fusion is not None:
        fusion_was_training = fusion.training
        fusion.eval()
        reports["ssp"] = SequenceMetrics(num_classes, ignore_index)
    stride, state = segmenter.output_stride, None
    for i, frame in enumerate(frames):
        h, w = frame.labels.shape
        x = _pad_to(torch.from_numpy(frame.image).permute(2, 0, 1).float()[None], segmenter.input_multiple)
        logits, feats = segmenter(x)
        outputs = {"image": logits}
        if fusion is not None:
            fused = logits
            if state is not None:
                to_previous = _to_previous(relative_homography(frames[i - 1], frame), stride)
                fused, _, _ = fusion(logits, feats, state[0], state[1], to_previous)
            outputs["ssp"] = fused
            state = (fused, feats)  # the fused logits are the next frame's "previous" state, as at run time
        for name, out in outputs.items():
            up = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
            pred = up.argmax(dim=1)[0].numpy().astype(np.uint8)
            reports[name].add(pred, frame.labels, frame.flow, frame.valid)
    segmenter.train(was_training)
    if fusion is not None:
        fusion.train(fusion_was_training)
    return {name: metrics.report() for name, metrics in reports.items()}


def _summary(report: dict) -> str:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"
    return f"mIoU {fmt(report['miou'])}  TC {fmt(report['tc'])}  flicker {fmt(report['flicker'])}"


def _validation_frames(cfg: TrainConfig) -> Sequence | None:
    if cfg.data.val_frames == 0:
        return None
    return generate_sequence(cfg.data.resolve_scenario(), cfg.data.val_frames, cfg.data.val_seed, keep_flow=True)


# ---------------------------------------------------------------------------------------------------------
# the two stages


def _flip_prob(cfg: TrainConfig) -> float:
    return 0.5 if cfg.data.hflip else 0.0


def _classes(cfg: TrainConfig) -> ClassSet:
    return load_class_set(cfg.model.dataset)


def _training_sequences(cfg: TrainConfig, log: RunLog | None = None) -> list[Sequence]:
    sequences, seconds = generate_sequences(cfg.data.resolve_scenario(), cfg.data.frames_per_sequence,
                                            cfg.data.seeds(), progress=cfg.output.progress)
    if log is not None:
        frames = sum(map(len, sequences))
        log.line(f"data: {frames} frames from {len(sequences)} sequences in {seconds:.1f} s")
    return sequences


def train_image(cfg: TrainConfig, sequences: list[Sequence] | None = None, log: RunLog | None = None
                ) -> Segmenter:
    """Stage 1: train the image model with cross-entropy on random crops of single frames.

    Starts from ``cfg.model.weights`` when set (image-model or SSP weights). Returns the segmenter (train mode
    off); with ``image.steps == 0`` it is returned as loaded.
    """
    out_dir = Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or RunLog(out_dir)
    classes = _classes(cfg)
    segmenter = build_segmenter(cfg.model, classes.num_classes)
    stage = cfg.image
    if stage.steps == 0:
        log.line("image stage: skipped (image.steps = 0)")
        return segmenter.eval()
    sequences = sequences if sequences is not None else _training_sequences(cfg, log)
    dataset = FrameDataset(sequences, stage.crop_size, _flip_prob(cfg), segmenter.input_multiple)
    data = batches(dataset, stage.batch_size, cfg.seed + 1)
    optimizer = torch.optim.AdamW(param_groups(segmenter, stage.lr, stage.weight_decay), lr=stage.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(stage.steps, stage.warmup_steps, stage.final_lr_ratio))
    segmenter.train()

    def step() -> dict[str, float]:
        images, labels = next(data)
        logits, _ = segmenter(images)
        loss = segmentation_loss(logits, labels, classes.ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": loss.item()}

    log.line(f"image stage: {stage.steps} steps of {stage.batch_size} crops of {stage.crop_size or 'whole'} px "
             f"from {len(dataset)} frames")
    result = _loop("image", cfg, stage.steps, step, segmenter, optimizer, scheduler, log)
    segmenter.eval()
    save_weights(segmenter, out_dir / "segmenter.safetensors",
                 {"dataset": cfg.model.dataset, "classes": list(classes.names), "trained_on": "ssp_ros.synthetic"})
    log.line(f"image stage: {result['steps']} steps in {result['seconds']:.1f} s ({result['s_per_step']:.2f} s/step), "
             f"loss {result['first_loss']} -> {result['last_loss']} (mean of the first / last 10 steps)")
    val = _validation_frames(cfg)
    if val is not None:
        result["val"] = evaluate(segmenter, val, classes.num_classes, classes.ignore_index)
        log.line(f"image stage: validation ({len(val)} frames, seed {cfg.data.val_seed}): "
                 f"{_summary(result['val']['image'])}")
    log.record(stage="image", summary=result)
    return segmenter


def train_ssp(cfg: TrainConfig, segmenter: Segmenter, sequences: list[Sequence] | None = None,
              log: RunLog | None = None) -> SSP:
    """Stage 2: train the similarity head on frame pairs (the image model frozen unless ``ssp.lr_image > 0``).

    Returns the SSP model (eval mode) around ``segmenter``; its weights are saved by ``run``.
    """
    out_dir = Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or RunLog(out_dir)
    classes = _classes(cfg)
    model = SSP(segmenter, SimilarityHead(segmenter.feature_channels))
    stage = cfg.ssp
    if stage.steps == 0:
        log.line("ssp stage: skipped (ssp.steps = 0): the similarity head stays untrained")
        return model.eval()
    sequences = sequences if sequences is not None else _training_sequences(cfg, log)
    dataset = ClipDataset(sequences, stage.crop_size, cfg.data.frame_gap, _flip_prob(cfg), segmenter.output_stride,
                          segmenter.input_multiple, length=stage.unroll + 1)
    data = batches(dataset, stage.batch_size, cfg.seed + 2)
    frozen = stage.lr_image == 0
    segmenter.requires_grad_(not frozen)
    groups = param_groups(model.similarity_head, stage.lr, stage.weight_decay)
    if not frozen:
        groups += param_groups(segmenter, stage.lr_image, stage.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=stage.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(stage.steps, stage.warmup_steps, stage.final_lr_ratio))
    fusion = model.warp_fusion_step()
    model.train()
    if frozen:
        segmenter.eval()  # BatchNorm statistics and dropout of the image model stay as trained

    def step() -> dict[str, float]:
        batch = next(data)
        images, labels = batch["images"], batch["labels"]  # N×L×3×c×c, N×L×c×c
        n, length = images.shape[:2]
        with torch.set_grad_enabled(not frozen):
            logits, feats = segmenter(images.flatten(0, 1))  # one pass over all frames of all clips
        logits, feats = logits.unflatten(0, (n, length)), feats.unflatten(0, (n, length))
        state = logits[:, 0]
        # frames at stride 4 in 0..1, for the occlusion weight of the temporal-consistency loss
        small = F.avg_pool2d(images.flatten(0, 1) / 255.0, segmenter.output_stride).unflatten(0, (n, length))
        loss = image_loss = 0.0
        for t in range(1, length):  # the fused output becomes the next step's previous state, as at run time
            to_previous = batch["to_previous"][:, t - 1]
            prev_state = state
            state, _, valid = fusion(logits[:, t], feats[:, t], prev_state, feats[:, t - 1], to_previous)
            step_loss = segmentation_loss(state, labels[:, t], classes.ignore_index)
            if stage.tc_weight > 0:
                warped_prev, _ = warp(prev_state.softmax(dim=1), to_previous)
                warped_image, _ = warp(small[:, t - 1], to_previous)
                weight = occlusion_weight(small[:, t], warped_image)
                step_loss = step_loss + stage.tc_weight * temporal_consistency_loss(
                    state.softmax(dim=1), warped_prev, weight, valid)
            loss = loss + step_loss / (length - 1)
            with torch.no_grad():  # the image model alone on the same frames: what the fusion has to beat
                image_loss += segmentation_loss(logits[:, t].detach(), labels[:, t], classes.ignore_index).item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": loss.item(), "image_loss": image_loss / (length - 1)}

    log.line(f"ssp stage: {stage.steps} steps of {stage.batch_size} clips of {stage.unroll + 1} frames "
             f"(gap {list(cfg.data.frame_gap)}), crops of "
             f"{stage.crop_size or 'whole'} px, image model {'frozen' if frozen else f'lr {stage.lr_image}'}")
    result = _loop("ssp", cfg, stage.steps, step, model, optimizer, scheduler, log)
    model.eval()
    segmenter.requires_grad_(True)
    log.line(f"ssp stage: {result['steps']} steps in {result['seconds']:.1f} s ({result['s_per_step']:.2f} s/step), "
             f"loss {result['first_loss']} -> {result['last_loss']} (mean of the first / last 10 steps)")
    val = _validation_frames(cfg)
    if val is not None:
        result["val"] = evaluate(segmenter, val, classes.num_classes, classes.ignore_index, fusion)
        log.line(f"ssp stage: validation, image model: {_summary(result['val']['image'])}")
        log.line(f"ssp stage: validation, SSP:         {_summary(result['val']['ssp'])}")
    log.record(stage="ssp", summary=result)
    return model


# ---------------------------------------------------------------------------------------------------------
# the whole recipe


def check_weights_size(cfg: TrainConfig, num_classes: int) -> float:
    """The fp16 size of the final weights in MB; ``ConfigError`` before any work if over ``max_weights_mb``."""
    size = weights_megabytes(build_ssp(cfg.model, num_classes, with_weights=False))
    limit = cfg.output.max_weights_mb
    if limit and size > limit:
        raise ConfigError(f"output.max_weights_mb: the weights of {cfg.model.backbone} with decoder_channels "
                          f"{cfg.model.decoder_channels} take {size:.2f} MB in fp16, over the limit of {limit} MB: "
                          f"lower model.decoder_channels or raise the limit")
    return size


def run(cfg: TrainConfig, source: str = "<config>") -> dict:
    """Both stages, then the final SSP weights (fp16 safetensors); returns the run summary."""
    began = time.perf_counter()
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    classes = _classes(cfg)
    size_mb = check_weights_size(cfg, classes.num_classes)
    out_dir = Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(f"# resolved training recipe (from {source})\n"
                                         + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    log = RunLog(out_dir, fresh=not cfg.output.resume)
    log.line(f"train: recipe {source}, run dir {out_dir}, {cfg.num_threads} threads, "
             f"final weights {cfg.output.weights} (~{size_mb:.1f} MB)")
    needs_data = cfg.image.steps > 0 or cfg.ssp.steps > 0
    t = time.perf_counter()
    sequences = _training_sequences(cfg, log) if needs_data else []
    times = {"data": time.perf_counter() - t}
    t = time.perf_counter()
    segmenter = train_image(cfg, sequences, log)
    times["image"] = time.perf_counter() - t
    t = time.perf_counter()
    model = train_ssp(cfg, segmenter, sequences, log)
    times["ssp"] = time.perf_counter() - t
    metadata = {"fp16": True, "dataset": cfg.model.dataset, "classes": list(classes.names),
                "input_size": list(cfg.model.input_size), "trained_on": "ssp_ros.synthetic",
                "train_config": to_dict(cfg)}
    path = save_weights(model, cfg.output.weights, metadata)
    times["total"] = time.perf_counter() - began
    log.line("train: wall time " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    log.line(f"train: wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    summary = {"weights": str(path), "weights_mb": round(path.stat().st_size / 1e6, 3),
               "seconds": {k: round(v, 2) for k, v in times.items()}}
    log.record(stage="done", summary=summary)
    return summary


def main(config_path: str | Path) -> int:
    """Run the recipe in ``config_path`` (what ``ssp train --config FILE`` calls); ``SspError`` propagates."""
    run(load_train_config(config_path), str(config_path))
    return 0


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssp_train.train", description="Train the image model and SSP.")
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
