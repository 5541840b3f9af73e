"""Which images each process trains on: one shuffled order per epoch, cut into global
batches, each process a contiguous slice of every one.

Equivalence with the single-process run: `GlobalBatchSampler` draws one permutation per
epoch, `torch.randperm(n)` from a generator seeded `epoch_seed(seed, epoch)`, cuts it into
global batches of `batch_size`, and gives each rank a contiguous slice of every global
batch; with world_size 1 it is an ordinary shuffled batch sampler. The single process
uses it too (one training path): `DataLoader(shuffle=True, generator=g)` draws its worker
base seed from `g` before the permutation, so its order would be another one.

    sampler = GlobalBatchSampler(len(train), run.batch_size, seed=run.seed,
                                 rank=dist_info.rank, world_size=dist_info.world_size,
                                 drop_last=drop_last)
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)                          # each epoch's order, resumable
        sizes = sampler.global_batch_sizes()
        for step, (images, labels) in enumerate(loader):  # this rank's share of a step
            # draw for the global batch, keep this rank's part: same flips as 1 process
            flips = flip_mask(sizes[step], flip_generator)[sampler.local_slice(sizes[step])]

Validation: `shard_indices(n, rank, world_size)` splits an index range into contiguous
pieces in rank order, so `all_gather_arrays` of per-rank embeddings is the single-process
array, row for row.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from faceid.train.collectives import DistributedError

__all__ = ["GlobalBatchSampler", "epoch_seed", "shard_indices"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a resumed run redraws the same order."""
    return seed * 1_000_003 + epoch


def shard_indices(n: int, rank: int, world_size: int) -> np.ndarray:
    """Rank's contiguous piece of range(n); pieces in rank order concatenate to range(n)."""
    bounds = np.linspace(0, n, world_size + 1).round().astype(np.int64)
    return np.arange(bounds[rank], bounds[rank + 1])


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's slices of the global batches of one shuffled permutation per epoch.

    With world_size 1 it yields `torch.randperm(n, generator=torch.Generator().manual_seed(
    epoch_seed(seed, epoch)))` in batches of `batch_size` (the last one kept unless
    drop_last). With world_size W each global batch is cut into W contiguous
    slices (as equal as possible) and rank r gets slice r, so every rank runs the same
    number of steps (DDP hangs otherwise) and the ranks' slices of a step are the
    single-process batch. Without drop_last a last global batch smaller than W is
    dropped (`dropped` counts its images), since some rank would get nothing.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        shuffle: bool = True,
    ):
        if batch_size < world_size:
            raise DistributedError(
                f"global batch size {batch_size} < {world_size} processes: each process needs "
                "at least one image per step; raise train batch_size or use fewer processes"
            )
        if not 0 <= rank < world_size:
            raise DistributedError(f"rank {rank} outside 0..{world_size - 1}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.drop_last, self.shuffle = drop_last, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=generator).numpy()
        else:
            order = np.arange(self.n)
        full = self.n // self.batch_size * self.batch_size
        batches = [order[i : i + self.batch_size] for i in range(0, full, self.batch_size)]
        rest = order[full:]
        if not self.drop_last and len(rest) >= self.world_size:
            batches.append(rest)
        return batches

    @property
    def dropped(self) -> int:
        """Images of an epoch that no rank sees (the incomplete last batch)."""
        return self.n - sum(len(b) for b in self._global_batches())

    def global_batch_sizes(self) -> list[int]:
        """Size of each step's global batch this epoch (all batch_size with drop_last)."""
        return [len(b) for b in self._global_batches()]

    def local_slice(self, global_size: int) -> slice:
        """Where this rank's images sit in a global batch of `global_size`: e.g. to take
        this rank's part of per-image randomness drawn for the whole global batch."""
        piece = shard_indices(global_size, self.rank, self.world_size)
        return slice(int(piece[0]), int(piece[-1]) + 1)

    def __len__(self) -> int:
        return len(self._global_batches())

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            yield batch[self.local_slice(len(batch))].tolist()
