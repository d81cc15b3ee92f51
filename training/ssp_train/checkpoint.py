"""Stage checkpoints: everything a stage needs to continue exactly where it stopped.

One ``torch.save`` file per stage (``<output.dir>/<stage>_last.pt``, written atomically by rank 0, read with
``weights_only=True``) holding: the model's state, the optimiser, LR scheduler and gradient scaler states, the
optimiser steps done, the resolved recipe, the number of processes, and every process's RNG states (torch,
CUDA, numpy, python). Resuming checks that the stage, the model, the recipe (except ``RESUME_FREE_KEYS`` and the
other stage's section) and the process count are the same, naming what differs; an unreadable file is an
error naming it. Data order needs no state: it is a function of the step (``ssp_train.data.StepBatchSampler``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssp_ros.errors import SspError
from ssp_ros.schema import flatten
from ssp_train.config import RESUME_FREE_KEYS

FORMAT = "ssp_train.checkpoint/2"
# a stage's checkpoint does not depend on the other stages' keys
STAGE_SECTIONS = {"image": ("ssp.", "kd."), "ssp": ("image.", "kd."), "kd": ("image.", "ssp.")}


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as plain data ``torch.load(weights_only=True)`` accepts."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def recipe_differences(saved: dict, current: dict, stage: str) -> list[str]:
    """``"key (saved → current)"`` for every recipe key that differs and matters to ``stage``."""
    old, new = flatten(saved), flatten(current)
    skip = STAGE_SECTIONS.get(stage, ())
    keys = sorted(k for k in old.keys() | new.keys() if k not in RESUME_FREE_KEYS and not k.startswith(skip))
    missing = "<absent>"
    return [f"{k} ({old.get(k, missing)!r} → {new.get(k, missing)!r})" for k in keys
            if old.get(k, missing) != new.get(k, missing)]


def save_checkpoint(path: Path, *, stage: str, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, recipe: dict,
                    rng_states: list[dict[str, Any]]) -> None:
    """Write a stage checkpoint atomically (call on one process; ``rng_states``: every process's, by rank)."""
    state = {"format": FORMAT, "stage": stage, "step": step, "describe": model.describe(),
             "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "recipe": recipe, "world_size": len(rng_states), "rng": rng_states}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, *, stage: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, recipe: dict,
                    rank: int, world_size: int) -> int:
    """Restore a checkpoint of ``save_checkpoint`` into this process (its own RNG states); returns the steps done.

    Raises ``SspError`` naming the file when it cannot be read or belongs to another stage, model, recipe or
    process count.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        raise SspError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); delete it or set "
                       "output.resume: false") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise SspError(f"{path}: not a training checkpoint of this version (format {found!r}, expected {FORMAT!r}); "
                       "delete it or set output.resume: false")
    if state["stage"] != stage or state["describe"] != model.describe():
        raise SspError(f"{path}: checkpoint of stage {state['stage']!r} for {state['describe']}, this run "
                       f"trains stage {stage!r} for {model.describe()}: delete it or set output.resume: false")
    differences = recipe_differences(state["recipe"], recipe, stage)
    if differences:
        raise SspError(f"{path}: written with a different recipe: {'; '.join(differences)}. Restore those values, "
                       "delete the checkpoint or set output.resume: false")
    if state["world_size"] != world_size:
        raise SspError(f"{path}: written by {state['world_size']} process(es), this run has {world_size}: the "
                       "batches would differ; resume with the same torchrun --nproc_per_node")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][rank])
    return int(state["step"])
