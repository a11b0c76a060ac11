"""A training loader that lives on the accelerator: CIFAR's uint8 images uploaded once, the reference
augmentation (RandomCrop(32, padding=4), horizontal flip, normalisation) done in batched tensor ops there.

Per-image PIL transforms cost about 377 us of CPU per CIFAR image (about 2,650 img/s per core): a GPU that
trains ResNet-164 faster than the loader's cores can feed it waits. Here each epoch draws, on the device
and from a generator seeded with (seed, epoch), a permutation and every image's crop offsets (uniform over
0..8 on each axis of the zero-padded 40 x 40 image) and flip (probability 1/2): the distribution of
torchvision's transforms, and a batch depends only on (seed, epoch, batch index). Resuming mid-epoch is
exact, as with :class:`~spe_lightning.data.resumable.ResumableDataLoader`: the state in each checkpoint is
(seed, epoch, batches handed out).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

PAD = 4


class EpochSampler:
    """What Lightning calls ``set_epoch`` on (it looks for ``loader.sampler``): the loader's epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class DeviceAugmentedLoader:
    """Batches of (normalised float images, targets) made on ``device`` from uint8 N x C x H x W images.

    Args:
        images: uint8 images, N x C x H x W (uploaded to ``device`` once).
        targets: class indices, N.
        batch_size: images per batch (per rank under DDP).
        mean, std: per-channel normalisation, in [0, 1] pixel units.
        seed: epoch e uses generator seed ``seed + e``; None takes the global seed (``seed_everything``).
        device: where the images live and the augmentation runs.
        drop_last: drop the last partial batch (fixed shapes for torch.compile); the reference keeps it.

    Under DDP each rank takes its share of the epoch's permutation, padded to equal length as
    ``DistributedSampler`` does.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Sequence[int] | Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int | None = None,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.targets = torch.as_tensor(targets, dtype=torch.long).to(self.device)
        self.batch_size = batch_size
        self.drop_last = drop_last
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=self.device).view(shape) * 255
        self.std = torch.tensor(std, device=self.device).view(shape) * 255
        self.seed = torch.initial_seed() % 2**63 if seed is None else seed
        self.sampler = EpochSampler()
        distributed = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        self._batches = 0
        self._resume: tuple[int, int] | None = None

    @property
    def samples(self) -> int:
        """This rank's samples per epoch."""
        return math.ceil(len(self.targets) / self.world)

    def __len__(self) -> int:
        per_rank = self.samples
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def epoch_plan(self, epoch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """This rank's (indices, row offsets, column offsets, flips) of ``epoch``, drawn on the device."""
        n = len(self.targets)
        generator = torch.Generator(device=self.device).manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator, device=self.device)
        offsets = torch.randint(0, 2 * PAD + 1, (2, n), generator=generator, device=self.device)
        flips = torch.rand(n, generator=generator, device=self.device) < 0.5
        total = self.samples * self.world
        order = torch.cat((order, order[: total - n]))[
            self.rank :: self.world
        ]  # DistributedSampler's padding
        return order, offsets[0][order], offsets[1][order], flips[order]

    def augment(self, images: Tensor, rows: Tensor, cols: Tensor, flips: Tensor) -> Tensor:
        """Zero-pad by 4, crop back at (rows, cols), flip where ``flips``, normalise: one batch at once."""
        b, c, h, w = images.shape
        padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD))
        y = rows[:, None] + torch.arange(h, device=self.device)  # b x h
        x = cols[:, None] + torch.arange(w, device=self.device)  # b x w
        x = torch.where(flips[:, None], x.flip(1), x)  # a flipped crop reads its columns right to left
        batch = torch.arange(b, device=self.device)[:, None, None, None]
        channel = torch.arange(c, device=self.device)[None, :, None, None]
        crops = padded[batch, channel, y[:, None, :, None], x[:, None, None, :]]
        return (crops.float() - self.mean) / self.std

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, batches = self._resume or (self.sampler.epoch, 0)
        self._resume = None
        self._batches = batches if epoch == self.sampler.epoch else 0
        order, rows, cols, flips = self.epoch_plan(self.sampler.epoch)
        for k in range(self._batches, len(self)):
            part = slice(k * self.batch_size, (k + 1) * self.batch_size)
            index = order[part]
            self._batches = k + 1
            yield self.augment(self.images[index], rows[part], cols[part], flips[part]), self.targets[index]

    def state_dict(self) -> dict[str, int]:
        """Where the current epoch stands: Lightning stores it in every checkpoint."""
        return {"seed": self.seed, "epoch": self.sampler.epoch, "batches": self._batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = state["seed"]
        self.sampler.set_epoch(state["epoch"])
        self._resume = (state["epoch"], state["batches"])
