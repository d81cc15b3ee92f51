"""The optimisation loop shared by the stages: mixed precision, gradient accumulation, DDP, logging, checkpoints.

``run_stage`` takes an objective (``ssp_train.objectives``: ``forward(batch)`` → ``{"loss": …}``), wraps it in
DDP when several processes train, and runs ``steps`` optimiser steps. Each step sums the gradients of
``accumulate`` micro-batches (the processes synchronise only on the last one, ``no_sync``), under
``torch.autocast`` in the recipe's precision (fp16 with a ``torch.amp.GradScaler``), then steps the optimiser
and the LR schedule. Logged values are averaged over processes, so every process sees the same numbers (and
stops together on a non-finite loss). Rank 0 alone prints, appends to ``train_log.jsonl`` and writes the
checkpoint; resuming restores it (``ssp_train.checkpoint``) and restarts the data at the step it reached.

Validation during training (``evaluate``): the image model and SSP (run recursively, as on the drone) over a
held-out synthetic sequence with its exact homography and flow, scored with ``ssp_ros.eval.metrics.SequenceMetrics``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssp_ros.errors import SspError
from ssp_ros.eval.metrics import SequenceMetrics
from ssp_ros.geometry import cells_to_previous
from ssp_ros.models import Segmenter
from ssp_ros.synthetic import relative_homography
from ssp_train.checkpoint import load_checkpoint, rng_state, save_checkpoint
from ssp_train.distributed import ProcessGroup
from ssp_train.sources import Sequence

EMA_BETA = 0.9  # smoothing of the running values shown in the progress bar and the log
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class RunLog:
    """Log lines to the console (above the progress bars) and as JSON lines to ``<dir>/train_log.jsonl``
    (appended to; ``fresh`` starts a new file). Silent on every process but rank 0."""

    def __init__(self, directory: Path, fresh: bool = False, enabled: bool = True) -> None:
        self.path, self.enabled = directory / "train_log.jsonl", enabled
        if fresh and enabled:
            self.path.unlink(missing_ok=True)

    def line(self, text: str) -> None:
        from tqdm import tqdm

        if self.enabled:
            tqdm.write(text)

    def record(self, **entry: object) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(entry) + "\n")


@dataclass
class StageSettings:
    """How a stage runs: its name, length, accumulation, precision, and where and how often it reports."""

    name: str  # "image" or "ssp": names the checkpoint <dir>/<name>_last.pt and the log lines
    steps: int
    accumulate: int
    precision: str  # fp32, bf16, fp16
    directory: Path
    checkpoint_every: int
    log_every: int
    resume: bool
    progress: bool
    recipe: dict  # the resolved recipe, stored in and compared against the checkpoint


def to_device(batch: object, device: torch.device) -> object:
    """Tensors of a (nested) batch moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 needs CUDA (its gradient scaler and kernels); bf16 and fp32 run anywhere."""
    if precision == "fp16" and device.type != "cuda":
        raise SspError(f"compute.precision: fp16 needs a CUDA device, training runs on {device}: use bf16 or fp32")


class _Stepper:
    """One optimiser step over ``accumulate`` micro-batches."""

    def __init__(self, objective: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, settings: StageSettings, group: ProcessGroup) -> None:
        check_precision(settings.precision, group.device)
        self.engine = group.wrap(objective)
        self.optimizer, self.scheduler, self.settings, self.group = optimizer, scheduler, settings, group
        self.scaler = torch.amp.GradScaler(group.device.type, enabled=settings.precision == "fp16")
        self.autocast = settings.precision != "fp32"

    def __call__(self, batches: Iterator) -> dict[str, float]:
        accumulate, device = self.settings.accumulate, self.group.device
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for micro in range(accumulate):
            last = micro == accumulate - 1
            batch = to_device(next(batches), device)
            sync = nullcontext() if last or not self.group.active else self.engine.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=DTYPES[self.settings.precision], enabled=self.autocast):
                    values = self.engine(batch)
                self.scaler.scale(values["loss"] / accumulate).backward()
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float() / accumulate
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        means = self.group.mean(torch.stack(list(totals.values())))
        return dict(zip(totals, means.tolist()))


def run_stage(settings: StageSettings, objective: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LRScheduler, make_batches: Callable[[int], Iterator],
              group: ProcessGroup, log: RunLog) -> dict:
    """Run the stage's optimiser steps (resuming from ``<dir>/<name>_last.pt`` when asked and present).

    ``model`` is what the checkpoint stores (the objective's trainable model); ``make_batches(start)`` gives the
    endless batches from micro-batch ``start`` on. Returns a summary: steps run, time, first/last losses.
    """
    from tqdm import tqdm

    s = settings
    step_fn = _Stepper(objective, optimizer, scheduler, s, group)
    checkpoint = s.directory / f"{s.name}_last.pt"
    start = 0
    present = group.gather(s.resume and checkpoint.is_file())
    if len(set(present)) > 1:
        raise SspError(f"{checkpoint}: seen by processes {[r for r, p in enumerate(present) if p]} only: put "
                       "output.dir on a file system every process shares")
    if present[0]:
        start = load_checkpoint(checkpoint, stage=s.name, model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=step_fn.scaler, recipe=s.recipe, rank=group.rank, world_size=group.world_size)
        log.line(f"{s.name}: resumed from {checkpoint} at step {start}")
    batches = make_batches(start * s.accumulate) if start < s.steps else iter(())
    objective.train()
    ema: dict[str, float] = {}
    first: list[float] = []
    last: list[float] = []
    began = time.perf_counter()
    bar = tqdm(range(start, s.steps), desc=s.name, unit="step", initial=start, total=s.steps,
               disable=not (s.progress and group.is_main), dynamic_ncols=True)
    for step in bar:
        values = step_fn(batches)
        loss = values["loss"]
        if not math.isfinite(loss):
            raise SspError(f"{s.name} stage: loss is {loss} at step {step + 1}: lower the learning rate")
        debias = 1.0 - EMA_BETA ** (step - start + 1)
        for key, value in values.items():
            ema[key] = EMA_BETA * ema.get(key, 0.0) + (1.0 - EMA_BETA) * value
        smooth = {key: value / debias for key, value in ema.items()}
        (first if len(first) < 10 else last).append(loss)
        last = last[-10:]
        lr = optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{smooth['loss']:.3f}", lr=f"{lr:.2e}", refresh=False)
        done = step + 1
        if done % s.log_every == 0 or done == s.steps:
            elapsed = time.perf_counter() - began
            others = "".join(f"  {key} {value:.4f}" for key, value in smooth.items() if key != "loss")
            log.line(f"{s.name} step {done}/{s.steps}  loss {smooth['loss']:.4f}{others}  lr {lr:.2e}  "
                     f"{elapsed / (done - start):.2f} s/step")
            log.record(stage=s.name, step=done, **{k: round(v, 5) for k, v in smooth.items()},
                       last_loss=round(loss, 5), lr=lr, seconds=round(elapsed, 2))
        if done % s.checkpoint_every == 0 or done == s.steps:
            rng_states = group.gather(rng_state())
            if group.is_main:
                save_checkpoint(checkpoint, stage=s.name, step=done, model=model, optimizer=optimizer,
                                scheduler=scheduler, scaler=step_fn.scaler, recipe=s.recipe, rng_states=rng_states)
            group.barrier()
    bar.close()
    group.broadcast_buffers(model)
    objective.eval()
    seconds = time.perf_counter() - began
    ran = s.steps - start
    return {"steps": ran, "seconds": round(seconds, 2), "s_per_step": round(seconds / max(ran, 1), 3),
            "first_loss": round(float(np.mean(first)), 4) if first else None,
            "last_loss": round(float(np.mean(last or first)), 4) if first else None}


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))


@torch.no_grad()
def evaluate(segmenter: Segmenter, frames: Sequence, num_classes: int, ignore_index: int = 255,
             fusion: nn.Module | None = None, registration: bool = True) -> dict:
    """Image model (and, with ``fusion``, SSP run recursively) over whole frames, in order, on the model's device.

    Uses the generator's exact homography (the identity without ``registration``: the ablation) and flow.
    Returns ``{"image": report, "ssp": report}`` with ``SequenceMetrics`` reports (mIoU, TC, flicker in percent).
    """
    was_training = segmenter.training
    segmenter.eval()
    device = next(segmenter.parameters()).device
    reports = {"image": SequenceMetrics(num_classes, ignore_index)}
    if fusion is not None:
        fusion_was_training = fusion.training
        fusion.eval()
        reports["ssp"] = SequenceMetrics(num_classes, ignore_index)
    stride, state = segmenter.output_stride, None
    for i, frame in enumerate(frames):
        h, w = frame.labels.shape
        x = torch.from_numpy(frame.image).permute(2, 0, 1).float()[None].to(device)
        x = _pad_to(x, segmenter.input_multiple)
        logits, feats = segmenter(x)
        outputs = {"image": logits}
        if fusion is not None:
            fused = logits
            if state is not None:
                homography = relative_homography(frames[i - 1], frame) if registration else np.eye(3)
                to_previous = torch.from_numpy(cells_to_previous(homography, stride)).float()[None].to(device)
                fused, _, _ = fusion(logits, feats, state[0], state[1], to_previous)
            outputs["ssp"] = fused
            state = (fused, feats)  # the fused logits are the next frame's "previous" state, as at run time
        for name, out in outputs.items():
            up = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
            pred = up.argmax(dim=1)[0].cpu().numpy().astype(np.uint8)
            reports[name].add(pred, frame.labels, frame.flow, frame.valid)
    segmenter.train(was_training)
    if fusion is not None:
        fusion.train(fusion_was_training)
    return {name: metrics.report() for name, metrics in reports.items()}
