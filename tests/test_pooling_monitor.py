"""PoolingMonitor: what a short training writes to TensorBoard, read back from the event files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import DEFAULT_SIZE_GUIDANCE, EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from spe_lightning.callbacks import PoolingMonitor
from spe_lightning.classifier import ImageClassifier
from spe_lightning.data import DigitsDataModule
from spe_lightning.layers.spem import SPEM
from spe_lightning.models import learned_pools

BLOCKS = ["layer1/0", "layer1/1", "layer2/0", "layer2/1", "layer3/0", "layer3/1"]  # depth 14: 2 per stage
SPEM_PARAMETERS = ["reweight_weight", "reweight_bias", "excite_weight", "excite_bias"]


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
    **trainer_kwargs: Any,
) -> Path:
    """Train a depth-14 CIFAR ResNet on 8x8 digits for a few steps (4 per epoch, lam every 3); the run dir.

    Learned pools start from distinct random p, so every block has its own lam and a mixed-up tag shows;
    SPEM's reweight and excitation weights start random, so lam gets a gradient from the first step.
    """
    seed_everything(0)
    model = ImageClassifier(
        attention=attention, pool=pool, in_chans=1, backbone_kwargs={"depth": depth, "block": "basic"}
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
    trainer = Trainer(
        max_epochs=epochs,
        limit_train_batches=4,
        limit_val_batches=2,
        log_every_n_steps=3,
        logger=logger,
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


@pytest.fixture(scope="module")
def spem_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny_run(tmp_path_factory.mktemp("logs"))


def test_one_lam_series_per_block_ending_at_the_checkpoint_value(spem_run):
    acc = read_events(spem_run)
    assert tags_with_prefix(acc, "scalars", "lam/") == [f"lam/{block}" for block in BLOCKS]
    state = torch.load(spem_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    final = []
    for block in BLOCKS:
        events = acc.Scalars(f"lam/{block}")
        # the start, every 3 optimizer steps, and each epoch end (after steps 4 and 8), at Lightning's steps
        assert [e.step for e in events] == [0, 2, 3, 5, 7]
        p = state[f"net.{block.replace('/', '.')}.bn2.attn.pool.p"]
        lam = (p[0] ** 2 / (p**2).sum()).item()
        assert events[-1].value == pytest.approx(lam, abs=1e-6)
        assert events[0].value != pytest.approx(lam, abs=1e-6)  # lam did move during training
        final.append(events[-1].value)
    assert len(set(final)) == len(BLOCKS)


def test_spem_histograms_gate_summaries_and_figure_every_epoch(spem_run):
    acc = read_events(spem_run)
    histograms = acc.Tags()["histograms"]
    for block in BLOCKS:
        for param in SPEM_PARAMETERS:
            assert [e.step for e in acc.Histograms(f"spem_{param}/{block}")] == [3, 7]
        gate = acc.Histograms(f"gate/{block}")[-1].histogram_value
        assert gate.num == 64 * (
            16 if block.startswith("layer1") else 32 if block.startswith("layer2") else 64
        )
        assert 0.0 < gate.min <= gate.max < 1.0
        means = acc.Scalars(f"gate_mean/{block}")
        stds = acc.Scalars(f"gate_std/{block}")
        assert [e.step for e in means] == [e.step for e in stds] == [3, 7]
        assert gate.min <= means[-1].value <= gate.max
        assert stds[-1].value >= 0.0
    assert len(histograms) == len(BLOCKS) * (len(SPEM_PARAMETERS) + 1)
    images = acc.Images("lam/overview")
    assert [image.step for image in images] == [3, 7]
    assert images[-1].encoded_image_string.startswith(b"\x89PNG")


def test_custom_scalars_layout_has_one_chart_per_stage(spem_run):
    acc = read_events(spem_run)
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).item())
    charts = {
        category.title.split(" (")[0]: {chart.title: list(chart.multiline.tag) for chart in category.chart}
        for category in layout.category
    }
    assert list(charts) == ["lam", "gate mean", "gate std"]
    for category, prefix in zip(charts, ("lam", "gate_mean", "gate_std"), strict=True):
        assert charts[category] == {
            stage: [f"{prefix}/{b}" for b in BLOCKS if b.startswith(stage)]
            for stage in ("layer1", "layer2", "layer3")
        }


def test_hparams_view_shows_the_best_validation_accuracy(spem_run):
    acc = read_events(spem_run)
    experiment = hparams_metadata.parse_experiment_plugin_data(
        acc.SummaryMetadata("_hparams_/experiment").plugin_data.content
    )
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc1_best"]
    hparams = {h.name for h in experiment.hparam_infos}
    assert {"attention", "backbone", "backbone_kwargs/depth", "pool_alpha"} <= hparams
    best = acc.Scalars("val/acc1_best")
    assert best[-1].value == pytest.approx(max(e.value for e in acc.Scalars("val/acc1")))
    assert "hp_metric" not in acc.Tags()["scalars"]


@pytest.mark.parametrize("attention", ["none", "se"])
def test_models_without_learned_pooling_log_no_lam(tmp_path, attention):
    # Lightning's default hp_metric placeholder is on here: the callback's HParams summary still wins.
    acc = read_events(fit_tiny_run(tmp_path, attention=attention, epochs=1, default_hp_metric=True))
    assert tags_with_prefix(acc, "scalars", "lam") == []
    assert acc.Tags()["images"] == []
    assert tags_with_prefix(acc, "histograms", "spem") == []
    gates = tags_with_prefix(acc, "scalars", "gate_mean/")
    assert gates == ([] if attention == "none" else [f"gate_mean/{block}" for block in BLOCKS])
    experiment = hparams_metadata.parse_experiment_plugin_data(
        acc.SummaryMetadata("_hparams_/experiment").plugin_data.content
    )
    assert [m.name.tag for m in experiment.metric_infos] == ["val/acc1_best"]


def test_learned_pooling_in_another_attention_and_sparser_summaries(tmp_path):
    monitor = PoolingMonitor(summary_every_n_epochs=2)
    acc = read_events(fit_tiny_run(tmp_path, attention="cbam", pool="learned", monitor=monitor))
    assert tags_with_prefix(acc, "scalars", "lam/") == [f"lam/{block}" for block in BLOCKS]
    assert all([e.step for e in acc.Scalars(f"lam/{block}")] == [0, 2, 3, 5, 7] for block in BLOCKS)
    assert tags_with_prefix(acc, "scalars", "gate_mean/") == [f"gate_mean/{block}" for block in BLOCKS]
    assert all([e.step for e in acc.Scalars(f"gate_mean/{block}")] == [7] for block in BLOCKS)
    assert [image.step for image in acc.Images("lam/overview")] == [7]
    assert tags_with_prefix(acc, "histograms", "spem") == []


def test_resumed_run_keeps_the_lam_history(spem_run, tmp_path):
    monitor = PoolingMonitor()
    fit_tiny_run(tmp_path, epochs=3, ckpt_path=str(spem_run / "checkpoints" / "last.ckpt"), monitor=monitor)
    assert monitor.epochs == [0, 1, 2]
    assert len(monitor.lam_history) == 3 and all(len(row) == len(BLOCKS) for row in monitor.lam_history)
    with pytest.raises(ValueError, match="lam history for blocks"):
        stale = PoolingMonitor()
        stale.load_state_dict(monitor.state_dict())
        fit_tiny_run(tmp_path, depth=8, monitor=stale)


def test_two_process_ddp_writes_one_event_file_from_rank_zero(tmp_path):
    run = fit_tiny_run(tmp_path, epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    acc = read_events(run)
    assert tags_with_prefix(acc, "scalars", "lam/") == [f"lam/{block}" for block in BLOCKS]
    assert [e.step for e in acc.Scalars("lam/layer1/0")] == [0, 2, 3]
    assert [e.step for e in acc.Scalars("gate_mean/layer1/0")] == [3]
    assert [image.step for image in acc.Images("lam/overview")] == [3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log_every_n_steps": 0}, "log_every_n_steps=0"),
        ({"num_gate_images": -1}, "num_gate_images=-1"),
        ({"summary_every_n_epochs": 0}, "summary_every_n_epochs=0"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoolingMonitor(**kwargs)


class _PoisonFirstSpem(Callback):
    """Makes the first SPEM block's excitation bias NaN, as a diverged run would (loss guard off)."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        spem = next(m for m in pl_module.modules() if isinstance(m, SPEM))
        spem.excite_bias.data.fill_(float("nan"))


def test_non_finite_parameters_do_not_stop_the_monitor(tmp_path):
    run = fit_tiny_run(tmp_path, epochs=1, before=(_PoisonFirstSpem(),))
    events = read_events(run)
    assert (run / "checkpoints" / "last.ckpt").is_file()  # the run finished
    assert "spem_excite_bias/layer1/0" not in tags_with_prefix(events, "histograms", "spem_excite_bias/")
    assert "lam/layer1/0" in tags_with_prefix(events, "scalars", "lam/")


@pytest.mark.parametrize(("pool", "tag"), [("gem", "gem_p"), ("mixed", "mixed_a")])
def test_other_learned_pool_values_are_logged_like_lam(tmp_path, pool, tag):
    run = fit_tiny_run(tmp_path, attention="se", pool=pool)
    events = EventAccumulator(str(run), size_guidance=DEFAULT_SIZE_GUIDANCE)
    events.Reload()
    tags = events.Tags()["scalars"]
    assert sorted(t for t in tags if t.startswith(f"{tag}/")) == [f"{tag}/{b}" for b in BLOCKS]
    assert not any(t.startswith("lam/") for t in tags)
    steps = [e.step for e in events.Scalars(f"{tag}/layer1/0")]
    assert steps[0] == 0 and len(steps) >= 4  # at the start, every 3 steps and each epoch end
    values = [e.value for e in events.Scalars(f"{tag}/layer1/0")]
    assert values[0] == pytest.approx(3.0 if pool == "gem" else 0.5) and values[-1] != values[0]
