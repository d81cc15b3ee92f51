"""Which samples each process trains on at each step: a pure function of (seed, step, rank), so that a resumed
run sees exactly the batches an uninterrupted one would have seen, on any number of DataLoader workers.

``StepBatchSampler`` shards every epoch with ``torch.utils.data.DistributedSampler`` (epoch e shuffled with
seed + e, one shard per rank) and cuts the concatenated epochs into batches; batch ``b`` of a run is the same
whether the run started at 0 or resumed at ``b``. Each sample key is ``(index, sample_seed)``: the dataset
draws its augmentation from ``sample_rng(key)``, never from global random state.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

SampleKey = int | tuple[int, int]  # a dataset index, or (index, seed of its augmentation)


def sample_rng(key: SampleKey) -> tuple[int, np.random.Generator]:
    """``(index, generator)`` of a sample key; a plain index draws its seed from torch's global RNG (tests,
    interactive use), so ``torch.manual_seed`` still makes it repeatable."""
    if isinstance(key, tuple):
        index, seed = key
    else:
        index, seed = key, int(torch.randint(0, 2**62, ()).item())
    return int(index), np.random.default_rng(seed)


def sample_seed(seed: int, step: int, rank: int, slot: int) -> int:
    """The augmentation seed of the ``slot``-th sample of batch ``step`` on ``rank``."""
    return int(np.random.SeedSequence([seed, step, rank, slot]).generate_state(1, np.uint64)[0] >> 2)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``batch_size`` sample keys for one rank, starting at batch ``start``.

    Epochs (permutations of the dataset, padded to a multiple of ``world_size`` and sharded as
    ``DistributedSampler`` does) are concatenated, so a dataset smaller than a batch is simply cycled.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start: int = 0) -> None:
        if len(dataset) == 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.shards = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.seed, self.rank, self.start = batch_size, seed, rank, start
        self._epoch: tuple[int, list[int]] = (-1, [])

    def _shard(self, epoch: int) -> list[int]:
        if self._epoch[0] != epoch:
            self.shards.set_epoch(epoch)
            self._epoch = (epoch, list(self.shards))
        return self._epoch[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """The sample keys of batch ``step``."""
        per_epoch = self.shards.num_samples
        keys = []
        for slot in range(self.batch_size):
            epoch, offset = divmod(step * self.batch_size + slot, per_epoch)
            keys.append((self._shard(epoch)[offset], sample_seed(self.seed, step, self.rank, slot)))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            yield self.batch(step)
            step += 1
