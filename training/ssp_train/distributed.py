"""Data-parallel training across processes with ``torch.distributed`` (DDP), launched by ``torchrun``.

``torchrun --nproc_per_node N -m ssp_train.train --config RECIPE`` starts N processes and sets RANK,
LOCAL_RANK and WORLD_SIZE; ``process_group(device)`` joins them (NCCL on CUDA, gloo on CPU) and says who this
process is. A plain ``python -m ssp_train.train`` is a group of one: nothing is initialised and every helper
here is a no-op, so the single-process path stays as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ssp_ros.errors import ConfigError


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the training job and the device it trains on."""

    rank: int = 0  # global rank; rank 0 logs, checkpoints and writes the weights
    local_rank: int = 0  # rank on this machine (its GPU under CUDA)
    world_size: int = 1  # processes in the job
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Several processes talk to each other."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (no-op alone)."""
        if self.active:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of ``values`` over all processes (``values`` itself alone)."""
        if not self.active:
            return values
        out = values.detach().to(self.device, torch.float32).clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (``[obj]`` alone)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics). DDP copies them from rank 0 before each
        forward, so after the last step each process still holds its own update: this makes them equal to what
        rank 0 saves."""
        if self.active:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DistributedDataParallel (gradients averaged over processes), or itself alone."""
        if not self.active:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``compute.device`` ("auto", "cpu", "cuda") → this process's device (cuda:LOCAL_RANK on CUDA)."""
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("compute.device: 'cuda' asked for, but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"compute.device: process {local_rank} on this machine needs GPU {local_rank}, torch sees "
                          f"{torch.cuda.device_count()}: start at most that many processes per node")
    return torch.device("cuda", local_rank)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


@contextmanager
def process_group(device: str = "auto") -> Iterator[ProcessGroup]:
    """Join the torchrun job described by the environment (or run alone) for the duration of the block."""
    world_size, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    started = world_size > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo", rank=rank,
                                world_size=world_size)
    try:
        yield ProcessGroup(rank, local_rank, world_size, resolved)
    finally:
        if started:
            dist.destroy_process_group()
