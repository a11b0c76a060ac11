"""A training DataLoader whose place in the epoch is part of every checkpoint.

Lightning saves the ``state_dict()`` of a train loader that has one with the fit loop in each checkpoint and
hands it back through ``load_state_dict()`` when a run resumes mid-epoch. A plain shuffled DataLoader has no
state, so a resumed epoch restarts with a fresh permutation: some samples are seen twice, others never.
Here the permutation is a function of (seed, epoch) and the state is (seed, epoch, batches handed out), so
a resumed run continues the same permutation exactly where the checkpoint was taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (one replica unless a process group is running) that can start mid-epoch.

    Being a ``DistributedSampler``, Lightning keeps it under DDP instead of swapping in its own, so every
    rank shards the same (seed, epoch) permutation and resumes at the same batch.
    """

    def __init__(self, dataset: Dataset, seed: int, shuffle: bool = True) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=seed,
        )
        self.start = 0
        """Samples of this rank's share to skip in the next iteration only."""

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.start :]
        self.start = 0
        return iter(indices)


class ResumableDataLoader(DataLoader):
    """Shuffling ``DataLoader`` that resumes mid-epoch without skipping or repeating a batch.

    Args:
        dataset: the training set.
        seed: shuffle seed; epoch ``e`` uses permutation ``seed + e``. ``None`` takes the global seed
            (``seed_everything``), so runs with different seeds see different orders.
        **kwargs: other ``DataLoader`` arguments (``batch_size``, ``num_workers``, ...), except the sampler
            options this class sets.

    Worker processes are seeded per epoch from the same seed rather than from the global RNG, so the
    global RNG (which augmentations in the main process draw from) advances exactly as in an uninterrupted
    run. With ``num_workers > 0`` augmentations drawn inside workers after a mid-epoch resume differ from
    the uninterrupted run's; the sample order does not.
    """

    def __init__(self, dataset: Dataset, seed: int | None = None, **kwargs: Any) -> None:
        seed = torch.initial_seed() % 2**63 if seed is None else seed
        super().__init__(
            dataset, sampler=ResumableSampler(dataset, seed), generator=torch.Generator(), **kwargs
        )
        self._batches = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches) from a checkpoint, used once

    def __iter__(self) -> Iterator[Any]:
        # Runs at the first batch, after Lightning's set_epoch. A checkpoint taken after an epoch's last
        # batch but before its end hooks resumes into the next epoch, which starts from the beginning.
        sampler: ResumableSampler = self.sampler
        epoch, batches = self._resume or (sampler.epoch, 0)
        self._resume = None
        self._batches = batches if epoch == sampler.epoch else 0
        self.generator.manual_seed(sampler.seed + sampler.epoch)
        sampler.start = self._batches * self.batch_size
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Where the current epoch stands: Lightning stores it in every checkpoint."""
        return {"seed": self.sampler.seed, "epoch": self.sampler.epoch, "batches": self._batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the saved epoch's permutation after its first ``batches`` batches."""
        self.sampler.seed = state["seed"]
        self.sampler.set_epoch(state["epoch"])
        self._resume = (state["epoch"], state["batches"])
