"""Training runs made by tests: tiny fits (in process and through the CLI), what they recorded, read back."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import DEFAULT_SIZE_GUIDANCE, EventAccumulator

from helpers.cli import QUICKSTART
from spe_lightning.__main__ import dispatch
from spe_lightning.data import DigitsDataModule
from spe_lightning.layers import SPEM
from spe_lightning.models import learned_pools
from spe_lightning.runs.log_names import TRAIN, VAL_ACC1, VAL_ACC1_BEST, VAL_LOSS, metric
from spe_lightning.training.callbacks import PoolingMonitor
from spe_lightning.training.callbacks.cpu_threads import available_cores
from spe_lightning.training.classifier import ImageClassifier

BATCHES_PER_EPOCH = 6


def fit_tiny_run(
    root: Path,
    attention: str = "spem",
    pool: str | None = None,
    epochs: int = 2,
    depth: int = 14,
    default_hp_metric: bool = False,
    ckpt_path: str | None = None,
    monitor: PoolingMonitor | None = None,
    before: tuple[Callback, ...] = (),
    extra_loggers: Any = lambda root: [],
    backbone: str = "cifar_resnet",
    backbone_kwargs: dict[str, Any] | None = None,
    **trainer_kwargs: Any,
) -> Path:
    """Train a depth-14 CIFAR ResNet on 8x8 digits for a few steps (4 per epoch, lam every 3); the run dir.

    Learned pools start from distinct random p, so every block has its own lam and a mixed-up tag shows;
    SPEM's reweight and excitation weights start random, so lam gets a gradient from the first step.
    """
    seed_everything(0)
    if backbone_kwargs is None:
        backbone_kwargs = {"depth": depth, "block": "basic"}
    model = ImageClassifier(
        backbone=backbone, attention=attention, pool=pool, in_chans=1, backbone_kwargs=backbone_kwargs
    )
    generator = torch.Generator().manual_seed(1)
    for _, learned in learned_pools(model):
        learned.p.data = 0.2 + torch.rand(2, generator=generator)
    for module in model.modules():
        if isinstance(module, SPEM):
            module.reweight_weight.data.normal_(0.0, 1.0, generator=generator)
            module.excite_weight.data.normal_(0.0, 1.0, generator=generator)
    # a fixed version: under ddp_spawn the main process must find the folder the workers wrote
    logger = TensorBoardLogger(root, name=attention, version=0, default_hp_metric=default_hp_metric)
    loggers = [logger, *extra_loggers(root)]
    trainer = Trainer(
        max_epochs=epochs,
        limit_train_batches=4,
        limit_val_batches=2,
        log_every_n_steps=3,
        logger=loggers,
        callbacks=[*before, monitor or PoolingMonitor(), ModelCheckpoint(save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(model, DigitsDataModule(image_size=8, in_chans=1, batch_size=32), ckpt_path=ckpt_path)
    return Path(logger.log_dir)


def read_events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance=dict.fromkeys(DEFAULT_SIZE_GUIDANCE, 0))
    acc.Reload()
    return acc


def tags_with_prefix(acc: EventAccumulator, kind: str, prefix: str) -> list[str]:
    return sorted(tag for tag in acc.Tags()[kind] if tag.startswith(prefix))


def steps(series: tuple) -> list[int]:
    return [int(step) for step in series[0]]


def scalar_steps(folder: Path) -> dict[str, list[int]]:
    """Every scalar tag's steps as TensorBoard reads the folder (purged events dropped, as it does)."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


class BatchRecorder(Callback):
    """Test probe: one JSON line per trained batch with the sample indices and a hash of the augmented images.

    ``delay`` seconds of sleep per batch give a test time to kill the run mid-epoch.
    """

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path = Path(path)
        self.delay = delay
        self._indices: list[int] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage == "fit" and not isinstance(datamodule.train_set, _Recorded):
            datamodule.train_set = _Recorded(datamodule.train_set, self._indices)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        row = {
            "step": trainer.global_step,
            "indices": list(self._indices),
            "images": hashlib.md5(batch[0].numpy().tobytes()).hexdigest(),
        }
        self._indices.clear()
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")
        time.sleep(self.delay)


class _Recorded(torch.utils.data.Dataset):
    def __init__(self, dataset: torch.utils.data.Dataset, seen: list[int]) -> None:
        self.dataset, self.seen = dataset, seen

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        self.seen.append(index)
        return self.dataset[index]


def read_rows(path: Path) -> list[dict]:
    """Recorded batches; a line cut short by SIGKILL is dropped."""
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def fit_args(save_dir: Path, record: Path, *extra: str, delay: float = 0.0, epochs: int = 2) -> list[str]:
    recorder = {
        "class_path": "helpers.runs.BatchRecorder",
        "init_args": {"path": str(record), "delay": delay},
    }
    return [
        "fit",
        "--config",
        str(QUICKSTART),
        "--model.backbone_kwargs={depth: 8, block: basic}",
        "--data.init_args.image_size=8",
        "--trainer.accelerator=cpu",  # bit-exact comparisons: CPU kernels are deterministic
        f"--trainer.max_epochs={epochs}",
        f"--trainer.limit_train_batches={BATCHES_PER_EPOCH}",
        "--trainer.limit_val_batches=2",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.callbacks+={json.dumps(recorder)}",
        "--last_checkpoint.every_n_train_steps=2",
        "--seed_everything=3",
        # bit-exact comparisons: one fixed thread count in every process, whatever the load or the test before
        f"--cpu_threads.threads={available_cores()}",
        *extra,
    ]


def run(args: list[str]):
    with contextlib.redirect_stdout(io.StringIO()):
        return dispatch(args)


def checkpoints(save_dir: Path) -> Path:
    return save_dir / "quickstart" / "version_0" / "checkpoints"


def assert_same_state(resumed, reference) -> None:
    ours, theirs = resumed.model.state_dict(), reference.model.state_dict()
    assert ours.keys() == theirs.keys()
    different = [key for key in ours if not torch.equal(ours[key], theirs[key])]
    assert not different, f"weights differ: {different[:5]}"
    assert resumed.trainer.global_step == reference.trainer.global_step
    metrics = (VAL_ACC1, VAL_ACC1_BEST, VAL_LOSS, metric(TRAIN, "loss_epoch"), metric(TRAIN, "acc1"))
    assert {k: float(resumed.trainer.callback_metrics[k]) for k in metrics} == {
        k: float(reference.trainer.callback_metrics[k]) for k in metrics
    }
