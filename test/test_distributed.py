"""Tests of scale-out training: two gloo processes under torchrun end with identical weights, resuming gives
the weights of an uninterrupted run, checkpoint and recipe mismatches are named, gradient accumulation and
mixed precision. Run as a script (``--worker``), this file is the torchrun worker of the first test."""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from ssp_ros.errors import SspError
from ssp_train.checkpoint import rng_state, set_rng_state
from ssp_train.config import load_train_config
from ssp_train.distributed import ProcessGroup, process_group
from ssp_train.engine import RunLog, StageSettings, run_stage
from ssp_train.objectives import ImageObjective
from ssp_train.train import train_image, train_ssp

ROOT = Path(__file__).resolve().parent.parent
K = 8  # UAVid classes


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per process (the machines are shared), restored afterwards for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_recipe(out_dir: Path, **sections: dict) -> dict:
    """A recipe that trains in a few seconds: 64×96 synthetic frames, a 16-channel decoder, 32 px crops."""
    recipe = {
        "model": {"decoder_channels": 16, "input_size": [64, 96]},
        "data": {"synthetic": {"height": 64, "width": 96, "camera": {"altitude_m": [30.0, 40.0]},
                               "world": {"size_m": 120.0, "gsd_m": 0.2}},
                 "frame_size": None, "sequences": 2, "first_seed": 1, "frames_per_sequence": 6, "val_frames": 0},
        "image": {"steps": 3, "batch_size": 2, "accumulate": 2, "crop_size": 32, "warmup_steps": 1},
        "ssp": {"steps": 2, "batch_size": 2, "crop_size": 32, "warmup_steps": 1},
        "output": {"dir": str(out_dir), "weights": str(out_dir / "ssp.safetensors"), "checkpoint_every": 2,
                   "log_every": 1, "progress": False},
        "compute": {"device": "cpu"},
        "num_threads": 1,
    }
    for name, values in sections.items():
        recipe[name] = {**recipe[name], **values} if isinstance(values, dict) else values
    return recipe


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _worker(recipe: Path, out: Path) -> None:
    """One torchrun process: both stages under DDP, then this rank's weights to ``out/rank<r>.pt``."""
    cfg = load_train_config(recipe)
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    with process_group(cfg.compute.device) as group:
        segmenter = train_image(cfg, group=group)
        model = train_ssp(cfg, segmenter, group=group)
        torch.save({"world_size": group.world_size, "state": model.state_dict()}, out / f"rank{group.rank}.pt")


# ---------------------------------------------------------------------------------------------------------
# data parallel


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    recipe = _write(tmp_path / "tiny.yaml", tiny_recipe(tmp_path / "run", data={"val_frames": 3}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__)), "--worker", str(recipe), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    for name, value in ranks[0]["state"].items():
        torch.testing.assert_close(ranks[1]["state"][name], value, rtol=0, atol=0, msg=name)
    # they trained (from the same initial weights), rank 0 alone logged and checkpointed
    torch.manual_seed(0)
    from ssp_ros.models import build_ssp

    initial = build_ssp(load_train_config(recipe).model, K, with_weights=False).state_dict()
    head = [n for n in initial if n.startswith("similarity_head.") and n.endswith("weight")]
    assert any(not torch.equal(initial[n], ranks[0]["state"][n]) for n in head)
    log = (tmp_path / "run" / "train_log.jsonl").read_text()
    assert log.count('"stage": "image", "step": 3') == 1 and '"stage": "ssp", "summary"' in log
    assert "4 crops (2 × 2 accumulated × 1 process)" not in result.stdout + result.stderr
    assert "8 crops (2 × 2 accumulated × 2 processes)" in result.stdout + result.stderr
    checkpoint = torch.load(tmp_path / "run" / "image_last.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2 and checkpoint["step"] == 3


# ---------------------------------------------------------------------------------------------------------
# resuming


class _Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, calls: int) -> None:
    """Make the image objective fail on its ``calls``-th forward (a crash mid-run)."""
    forward, count = ImageObjective.forward, [0]

    def failing(self, batch):
        count[0] += 1
        if count[0] == calls:
            raise _Interrupt
        return forward(self, batch)

    monkeypatch.setattr(ImageObjective, "forward", failing)


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    image = {"steps": 4}  # 4 steps of 2 accumulated micro-batches, checkpoints at 2 and 4
    whole = load_train_config(_write(tmp_path / "a.yaml", tiny_recipe(tmp_path / "a", image=image, ssp={"steps": 0})))
    torch.manual_seed(0)
    reference = _state(train_image(whole))

    recipe = tiny_recipe(tmp_path / "b", image=image, ssp={"steps": 0})
    _interrupt_after(monkeypatch, calls=6)  # fails in step 3: the checkpoint holds step 2
    torch.manual_seed(0)
    with pytest.raises(_Interrupt):
        train_image(load_train_config(_write(tmp_path / "b.yaml", recipe)))
    assert torch.load(tmp_path / "b" / "image_last.pt", weights_only=True)["step"] == 2
    monkeypatch.undo()

    recipe["output"]["resume"] = True
    recipe["num_threads"] = 2  # how a run runs may change on resume; what it trains may not
    torch.manual_seed(123)  # the weights come from the checkpoint, not from a fresh initialisation
    resumed = _state(train_image(load_train_config(_write(tmp_path / "b.yaml", recipe))))
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)


def test_resume_refuses_another_recipe_or_a_corrupt_checkpoint(tmp_path):
    recipe = tiny_recipe(tmp_path / "run", image={"steps": 2}, ssp={"steps": 0})
    torch.manual_seed(0)
    train_image(load_train_config(_write(tmp_path / "r.yaml", recipe)))
    checkpoint = tmp_path / "run" / "image_last.pt"
    recipe["output"]["resume"] = True
    recipe["ssp"]["lr"] = 0.5  # the other stage's keys do not matter to this stage's checkpoint
    recipe["image"]["lr"] = 0.002
    recipe["data"]["hflip"] = False
    with pytest.raises(SspError) as err:
        train_image(load_train_config(_write(tmp_path / "r.yaml", recipe)))
    message = str(err.value)
    assert str(checkpoint) in message and "image.lr (0.001 → 0.002)" in message
    assert "data.hflip (True → False)" in message and "ssp.lr" not in message
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    with pytest.raises(SspError, match=rf"{checkpoint}: unreadable checkpoint"):
        train_image(load_train_config(_write(tmp_path / "r.yaml", recipe)))
    torch.save({"stage": "image", "step": 1}, checkpoint)  # an older format
    with pytest.raises(SspError, match=rf"{checkpoint}: not a training checkpoint of this version"):
        train_image(load_train_config(_write(tmp_path / "r.yaml", recipe)))


def test_resume_with_another_process_count_is_refused(tmp_path):
    recipe = tiny_recipe(tmp_path / "run", image={"steps": 2}, ssp={"steps": 0})
    torch.manual_seed(0)
    train_image(load_train_config(_write(tmp_path / "r.yaml", recipe)))
    checkpoint = tmp_path / "run" / "image_last.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["world_size"], state["rng"] = 2, state["rng"] * 2  # as if written by two processes
    torch.save(state, checkpoint)
    recipe["output"]["resume"] = True
    with pytest.raises(SspError, match=r"written by 2 process\(es\), this run has 1"):
        train_image(load_train_config(_write(tmp_path / "r.yaml", recipe)))


def test_rng_states_round_trip():
    state = rng_state()
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1]) and drawn[2] == again[2]


# ---------------------------------------------------------------------------------------------------------
# the step: accumulation and precision


class _Linear(nn.Module):
    """A toy model and objective: mean squared error of a linear map."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(3, 1)

    def describe(self) -> dict:
        return {"kind": "toy"}

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": ((self.layer(x) - y) ** 2).mean()}


def _toy_run(tmp_path: Path, batches: list, accumulate: int, precision: str = "fp32") -> _Linear:
    model = _Linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    settings = StageSettings("toy", steps=1, accumulate=accumulate, precision=precision, directory=tmp_path,
                             checkpoint_every=1, log_every=1, resume=False, progress=False, recipe={})
    run_stage(settings, model, model, optimizer, scheduler, lambda start: iter(batches), ProcessGroup(),
              RunLog(tmp_path, enabled=False))
    return model


def test_accumulated_micro_batches_equal_one_big_batch(tmp_path):
    torch.manual_seed(1)
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    whole = _toy_run(tmp_path, [(x, y)], accumulate=1)
    halves = _toy_run(tmp_path, [(x[:2], y[:2]), (x[2:], y[2:])], accumulate=2)
    for a, b in zip(whole.parameters(), halves.parameters()):
        torch.testing.assert_close(a, b)
    first_half = _toy_run(tmp_path, [(x[:2], y[:2])], accumulate=1)  # negative control
    assert not torch.allclose(first_half.layer.weight, whole.layer.weight)


def test_precision_bf16_on_cpu_and_fp16_needs_cuda(tmp_path):
    torch.manual_seed(1)
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    model = _toy_run(tmp_path, [(x, y)], accumulate=1, precision="bf16")
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(SspError, match=r"compute.precision: fp16 needs a CUDA device"):
        _toy_run(tmp_path, [(x, y)], accumulate=1, precision="fp16")


def test_device_and_torchrun_environment_are_checked(monkeypatch):
    from ssp_ros.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"compute.device: 'cuda' asked for, but torch sees no CUDA GPU"):
        with process_group("cuda"):
            pass
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match=r"WORLD_SIZE='two' is not an integer"):
        with process_group("cpu"):
            pass
    monkeypatch.setenv("WORLD_SIZE", "1")
    with process_group("auto") as group:
        assert group == ProcessGroup() and not group.active and math.isclose(group.mean(torch.tensor(2.0)), 2.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("RECIPE", "OUT"), required=True)
    _worker(*parser.parse_args().worker)
