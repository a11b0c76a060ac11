"""A training DataLoader whose place in the epoch is part of every checkpoint.

Lightning saves the ``state_dict()`` of a train loader that has one with the fit loop in each checkpoint and
hands it back through ``load_state_dict()`` when a run resumes mid-epoch. A plain shuffled DataLoader has no
state, so a resumed epoch restarts with a fresh permutation: some samples are seen twice, others never.
Here the permutation is a function of (seed, epoch) and the state is (seed, epoch, batches handed out), so
a resumed run continues the same permutation exactly where the checkpoint was taken.

Each sample's augmentation is seeded too, from (seed, epoch, sample index): the images a run trains on do
not depend on how many worker processes load them (a default that follows the machine's cores), on which
worker a batch lands, on the number of ranks, or on where a run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler


class SampleKey(NamedTuple):
    """What the sampler hands the dataset: a sample's index and the seed of its augmentation."""

    index: int
    seed: int


def augmentation_seeds(seed: int, epoch: int, n: int) -> np.ndarray:
    """One independent 64-bit seed per sample index of ``epoch`` (NumPy's SeedSequence hashes the pair)."""
    return np.random.SeedSequence([seed, epoch]).generate_state(n, np.uint64)


@contextmanager
def seeded_torch_rng(seed: int) -> Iterator[None]:
    """Draw from torch's CPU RNG seeded with ``seed``, then put its state back.

    torchvision's random transforms draw from the global CPU generator; restoring it keeps the main
    process's stream (what a loader without workers shares with the model) where it was.
    """
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


class SeededSamples(Dataset):
    """``dataset[index]`` computed under its :class:`SampleKey`'s seed (torch's RNG; not ``random``/NumPy)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> Any:
        with seeded_torch_rng(key.seed):
            return self.dataset[key.index]


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

    def __iter__(self) -> Iterator[SampleKey]:
        indices = list(super().__iter__())[self.start :]
        self.start = 0
        seeds = augmentation_seeds(self.seed, self.epoch, len(self.dataset)).tolist()
        return iter([SampleKey(index, seeds[index]) for index in indices])


class ResumableDataLoader(DataLoader):
    """Shuffling ``DataLoader`` that resumes mid-epoch without skipping or repeating a batch.

    Args:
        dataset: the training set.
        seed: shuffle seed; epoch ``e`` uses permutation ``seed + e``. ``None`` takes the global seed
            (``seed_everything``), so runs with different seeds see different orders.
        **kwargs: other ``DataLoader`` arguments (``batch_size``, ``num_workers``, ...), except the sampler
            options this class sets.

    Every sample is loaded under its own seed (:class:`SeededSamples`), so its augmentation is the same
    with any ``num_workers`` and after a mid-epoch resume, and loading draws nothing from the main
    process's global RNG. ``loader.dataset`` is that wrapper; ``loader.dataset.dataset`` the given one.
    """

    def __init__(
        self, dataset: Dataset, seed: int | None = None, sampler: Sampler | None = None, **kwargs: Any
    ) -> None:
        seed = torch.initial_seed() % 2**63 if seed is None else seed
        # Lightning rebuilds the loader with a SequentialSampler to overfit (``trainer.overfit_batches``):
        # the same epochs and seeds, in order
        if sampler is not None and not isinstance(sampler, SequentialSampler):
            raise ValueError(
                f"ResumableDataLoader makes its own sampler; got {type(sampler).__name__}, and only "
                "SequentialSampler (no shuffling) is allowed"
            )
        own = ResumableSampler(dataset, seed, shuffle=sampler is None)
        super().__init__(SeededSamples(dataset), sampler=own, generator=torch.Generator(), **kwargs)
        self._batches = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches) from a checkpoint, used once

    def __iter__(self) -> Iterator[Any]:
        # Runs at the first batch, after Lightning's set_epoch. A checkpoint taken after an epoch's last
        # batch but before its end hooks resumes into the next epoch, which starts from the beginning.
        sampler: ResumableSampler = self.sampler
        epoch, batches = self._resume or (sampler.epoch, 0)
        self._resume = None
        self._batches = batches if epoch == sampler.epoch else 0
        self.generator.manual_seed(sampler.seed + sampler.epoch)  # workers' base seed, not the global RNG's
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
