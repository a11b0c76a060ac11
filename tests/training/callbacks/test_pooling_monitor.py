"""PoolingMonitor: what a short training writes to TensorBoard (its run and sub-runs), read back."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.runs import fit_tiny_run, read_events, steps, tags_with_prefix
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from matplotlib.text import Text
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog
from tensorboard.plugins.custom_scalar import layout_pb2

from spe_lightning.analysis.figures import CARD_BOX
from spe_lightning.analysis.reader import RunData, read_run
from spe_lightning.core.errors import InputError
from spe_lightning.layers import SPEM
from spe_lightning.training.callbacks import PoolingMonitor
from spe_lightning.training.callbacks import pooling_monitor as monitor_module

BLOCKS = ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]  # depth 14: 2 per stage
STAGES = ["layer1", "layer2", "layer3"]
LAM_STEPS = [0, 2, 3, 5, 7]  # the start, every 3 optimizer steps, each epoch end (after steps 4 and 8)
SPEM_PARAMETERS = ["reweight_weight", "reweight_bias", "excite_weight", "excite_bias"]


@pytest.fixture(scope="module")
def spem_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny_run(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def spem_logs(spem_run: Path) -> RunData:
    return read_run(spem_run)


def test_one_lam_line_per_block_ending_at_the_checkpoint_value(spem_run, spem_logs):
    assert list(spem_logs.lam) == BLOCKS
    assert sorted(spem_logs.subruns) == ["blocks/0", "blocks/1"]  # block i of every stage: one sub-run
    state = torch.load(spem_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    final = []
    for block, series in spem_logs.lam.items():
        assert steps(series) == LAM_STEPS
        p = state[f"net.{block}.bn2.attn.pool.p"]
        lam = (p[0] ** 2 / (p**2).sum()).item()
        assert series[1][-1] == pytest.approx(lam, abs=1e-6)
        assert series[1][0] != pytest.approx(lam, abs=1e-6)  # lam did move during training
        final.append(series[1][-1])
    assert len(set(final)) == len(BLOCKS)
    # the run itself holds no per-block card: only the stage summaries
    assert not [tag for tag in spem_logs.scalars if tag.startswith("watch/lam/")]


def test_reference_lines_pin_every_lam_chart_to_zero_and_one(spem_run):
    for name, value in (("max_only_0", 1.0), ("min_only_0", 0.0)):
        acc = read_events(spem_run / "reference" / name)
        assert tags_with_prefix(acc, "tensors", "watch/") == [f"watch/lam/{stage}" for stage in STAGES]
        for stage in STAGES:
            events = acc.Tensors(f"watch/lam/{stage}")
            assert [e.step for e in events] == LAM_STEPS
            assert {float(e.tensor_proto.float_val[0]) for e in events} == {value}


def test_stage_summaries_are_the_mean_min_max_and_count_above_half_of_its_blocks(spem_logs):
    above_half = lambda lines, axis: np.sum(lines > 0.5, axis=axis)  # noqa: E731
    for stage in STAGES:
        lines = np.array([values for block, (_, values) in spem_logs.lam.items() if block.startswith(stage)])
        for stat, reduce in (("mean", np.mean), ("min", np.min), ("max", np.max), ("above_half", above_half)):
            series = spem_logs.scalars[f"watch/lam_{stat}/{stage}"]
            assert steps(series) == LAM_STEPS
            np.testing.assert_allclose(series[1], reduce(lines, axis=0), rtol=1e-6)


def test_p_norm_and_the_classification_gradient_on_lam_sit_next_to_lam(spem_run, spem_logs):
    state = torch.load(spem_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for block, series in spem_logs.block_series("p_norm").items():
        assert steps(series) == LAM_STEPS
        assert series[1][-1] == pytest.approx(state[f"net.{block}.bn2.attn.pool.p"].norm().item(), rel=1e-6)
    grads = spem_logs.block_series("lam_grad")
    assert list(grads) == BLOCKS
    # logging steps only: validation frees the gradients before an epoch end, and step 0 has none yet
    assert all(steps(series) == [2, 5] for series in grads.values())
    assert all(np.all(np.isfinite(values)) and np.any(values != 0) for _, values in grads.values())


def test_gate_lines_stage_histograms_and_figure_every_epoch(spem_run, spem_logs):
    acc = read_events(spem_run)
    assert sorted(acc.Tags()["histograms"]) == sorted(
        f"watch/{key}/{stage}"
        for key in ["gate", *(f"spem_{p}" for p in SPEM_PARAMETERS)]
        for stage in STAGES
    )
    for stage, channels in zip(STAGES, (16, 32, 64), strict=True):
        for param in SPEM_PARAMETERS:
            assert [e.step for e in acc.Histograms(f"watch/spem_{param}/{stage}")] == [3, 7]
        gate = acc.Histograms(f"watch/gate/{stage}")[-1].histogram_value
        assert gate.num == 64 * channels * 2  # 64 images, 2 blocks
        assert 0.0 < gate.min <= gate.max < 1.0
        for block in (b for b in BLOCKS if b.startswith(stage)):
            means = spem_logs.block_series("gate_mean")[block]
            stds = spem_logs.block_series("gate_std")[block]
            assert steps(means) == steps(stds) == [3, 7]
            assert gate.min <= means[1][-1] <= gate.max
            assert stds[1][-1] >= 0.0
    images = acc.Images("watch/lam_overview")
    assert [image.step for image in images] == [3, 7]
    assert images[-1].encoded_image_string.startswith(b"\x89PNG")
    saved = sorted(path.name for path in (spem_run / "lam_figures").iterdir())
    assert saved == ["epoch_000.png", "epoch_001.png"]


def test_every_diagnostic_has_a_stored_description(spem_run):
    acc = read_events(spem_run / "blocks" / "0")
    for tag in acc.Tags()["tensors"]:
        described = acc.SummaryMetadata(tag).summary_description
        key = tag.split("/")[1]
        assert described, tag
        assert {"lam": "weight of global max pooling", "p_norm": "|p|", "lam_grad": "dL_cls/dlam"}.get(
            key, ""
        ) in described


def test_the_lam_figure_is_fixed_to_zero_and_one_in_every_epoch(tmp_path, monkeypatch):
    figures = []

    def recorded(*args: Any, **kwargs: Any) -> Any:
        """Read the figure as drawn (the monitor clears it once it is rendered)."""
        figure = lam_figure(*args, **kwargs)
        heat_ax = figure.axes[0]
        (image,) = heat_ax.get_images()
        texts = [text for text in figure.findobj(Text) if text.get_visible() and text.get_text()]
        figures.append(
            {
                "clim": image.get_clim(),
                "shape": image.get_array().shape,
                "columns": [tick.get_text() for tick in heat_ax.get_xticklabels()],
                "blocks": len(heat_ax.get_xticks(minor=True)),
                "title": figure.get_suptitle(),
                "size": tuple(figure.get_size_inches() * figure.dpi),
                "smallest_type": min(text.get_fontsize() for text in texts) * figure.dpi / 72,
            }
        )
        return figure

    lam_figure = monitor_module.lam_figure
    monkeypatch.setattr(monitor_module, "lam_figure", recorded)
    fit_tiny_run(tmp_path, epochs=3)
    assert len(figures) == 3
    for epoch, figure in enumerate(figures):
        assert figure["clim"] == (0.0, 1.0)
        assert figure["shape"] == (epoch + 1, len(BLOCKS))  # epochs down, blocks across by depth
        assert figure["columns"] == STAGES and figure["blocks"] == len(BLOCKS)  # stages named, blocks ticked
        assert figure["title"] == f"spem/version_0 · epoch {epoch}"  # the run's name
        # TensorBoard's image card fits a picture into its box: in the box's proportions it fills it, and
        # its smallest type stays at 11 px or more there
        width, height = figure["size"]
        assert width / height == pytest.approx(CARD_BOX[0] / CARD_BOX[1], rel=0.01)
        assert figure["smallest_type"] * CARD_BOX[1] / height >= 11


@pytest.mark.parametrize(("histograms", "count"), [("block", len(BLOCKS) * 5), ("none", 0)])
def test_histograms_per_block_or_none(tmp_path, histograms, count):
    acc = read_events(fit_tiny_run(tmp_path, epochs=1, monitor=PoolingMonitor(histograms=histograms)))
    assert len(acc.Tags()["histograms"]) == count
    if count:
        assert "watch/gate/layer3/1" in acc.Tags()["histograms"]


@pytest.mark.parametrize("attention", ["none", "se"])
def test_models_without_learned_pooling_log_no_lam(tmp_path, attention):
    run = fit_tiny_run(tmp_path, attention=attention, epochs=1)
    logs, acc = read_run(run), read_events(run)
    assert logs.lam == {}
    assert not (run / "reference").exists()
    assert acc.Tags()["images"] == []
    assert not [tag for tag in acc.Tags()["histograms"] if "spem" in tag]
    assert list(logs.block_series("gate_mean")) == ([] if attention == "none" else BLOCKS)


def test_learned_pooling_in_another_attention_and_sparser_summaries(tmp_path):
    monitor = PoolingMonitor(summary_every_n_epochs=2)
    run = fit_tiny_run(tmp_path, attention="cbam", pool="learned", monitor=monitor)
    logs, acc = read_run(run), read_events(run)
    assert list(logs.lam) == BLOCKS
    assert all(steps(series) == LAM_STEPS for series in logs.lam.values())
    assert all(steps(series) == [7] for series in logs.block_series("gate_mean").values())
    assert [image.step for image in acc.Images("watch/lam_overview")] == [7]
    assert not [tag for tag in acc.Tags()["histograms"] if "spem" in tag]


@pytest.mark.parametrize(
    ("backbone", "kwargs", "stages"),
    [
        ("cifar_wrn", {"depth": 10, "widen_factor": 1}, ["layer1", "layer2", "layer3"]),
        # timm's stages, under their own parent's name; the last (a 1x1 conv) has no attention slot
        ("timm/mobilenetv3_small_050", {}, [f"blocks.{i}" for i in range(5)]),
    ],
)
def test_the_monitor_groups_any_backbones_blocks_by_stage(tmp_path, backbone, kwargs, stages):
    run = fit_tiny_run(tmp_path, epochs=1, backbone=backbone, backbone_kwargs=kwargs)
    logs = read_run(run)
    blocks = list(logs.lam)
    assert blocks and sorted({block.rpartition(".")[0] for block in blocks}) == sorted(stages)
    assert {f"watch/lam_mean/{stage}" for stage in stages} <= set(logs.scalars)


def test_other_loggers_get_one_column_per_block(tmp_path):
    run = fit_tiny_run(
        tmp_path, epochs=1, extra_loggers=lambda root: [CSVLogger(root, name="csv", version=0)]
    )
    rows = list(csv.DictReader((tmp_path / "csv" / "version_0" / "metrics.csv").open()))
    columns = set(rows[0])
    assert {f"watch/lam/{block.replace('.', '/')}" for block in BLOCKS} <= columns
    assert {f"watch/lam_mean/{stage}" for stage in STAGES} <= columns
    first = next(row for row in rows if row["watch/lam/layer1/0"])
    assert float(first["watch/lam/layer1/0"]) == pytest.approx(read_run(run).lam["layer1.0"][1][0], rel=1e-6)


def test_resumed_run_keeps_the_lam_history(spem_run, tmp_path):
    monitor = PoolingMonitor()
    fit_tiny_run(tmp_path, epochs=3, ckpt_path=str(spem_run / "checkpoints" / "last.ckpt"), monitor=monitor)
    assert monitor.epochs == [0, 1, 2]
    assert len(monitor.lam_history) == 3 and all(len(row) == len(BLOCKS) for row in monitor.lam_history)
    with pytest.raises(InputError, match="lam history for blocks"):
        stale = PoolingMonitor()
        stale.load_state_dict(monitor.state_dict())
        fit_tiny_run(tmp_path, depth=8, monitor=stale)


def test_a_run_resumed_in_its_folder_rewrites_its_sub_runs_from_the_checkpoint(tmp_path):
    every_epoch = ModelCheckpoint(
        dirpath=tmp_path / "epochs", save_top_k=-1, every_n_train_steps=4, filename="{step}"
    )
    first = fit_tiny_run(tmp_path, before=(every_epoch,))
    fit_tiny_run(tmp_path, ckpt_path=str(tmp_path / "epochs" / "step=4.ckpt"))  # same folder: version 0
    assert len(list((first / "blocks" / "0").glob("events.out.tfevents.*"))) == 2
    # the second writer starts with a purge at the checkpoint's step: TensorBoard drops the first run's
    # steps 5 and 7, which the second logs again
    starts = [
        event.step
        for path in sorted((first / "blocks" / "0").glob("events.out.tfevents.*"))
        for event in EventFileLoader(str(path)).Load()
        if event.HasField("session_log") and event.session_log.status == SessionLog.START
    ]
    assert starts == [4]
    assert all(steps(series) == LAM_STEPS for series in read_run(first).lam.values())


@pytest.mark.slow
def test_two_process_ddp_writes_one_event_file_per_run_from_rank_zero(tmp_path):
    run = fit_tiny_run(tmp_path, epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert all(len(list(sub.glob("events.out.tfevents.*"))) == 1 for sub in (run / "blocks").iterdir())
    logs, acc = read_run(run), read_events(run)
    assert list(logs.lam) == BLOCKS
    assert steps(logs.lam["layer1.0"]) == [0, 2, 3]
    assert steps(logs.block_series("gate_mean")["layer1.0"]) == [3]
    assert [image.step for image in acc.Images("watch/lam_overview")] == [3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log_every_n_steps": 0}, "log_every_n_steps=0"),
        ({"num_gate_images": -1}, "num_gate_images=-1"),
        ({"summary_every_n_epochs": 0}, "summary_every_n_epochs=0"),
        ({"histograms": "all"}, "histograms='all' is not allowed; use one of: stage, block, none"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=re.escape(match)):
        PoolingMonitor(**kwargs)


class _PoisonFirstSpem(Callback):
    """Makes the first SPEM block's excitation bias NaN, as a diverged run would (loss guard off)."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        spem = next(m for m in pl_module.modules() if isinstance(m, SPEM))
        spem.excite_bias.data.fill_(float("nan"))


def test_non_finite_parameters_do_not_stop_the_monitor(tmp_path):
    run = fit_tiny_run(
        tmp_path, epochs=1, before=(_PoisonFirstSpem(),), monitor=PoolingMonitor(histograms="block")
    )
    events = read_events(run)
    assert (run / "checkpoints" / "last.ckpt").is_file()  # the run finished
    assert "watch/spem_excite_bias/layer1/0" not in events.Tags()["histograms"]
    assert "layer1.0" in read_run(run).lam


@pytest.mark.parametrize(("pool", "key"), [("gem", "gem_p"), ("mixed", "mixed_a")])
def test_other_learned_pool_values_are_logged_like_lam(tmp_path, pool, key):
    run = fit_tiny_run(tmp_path, attention="se", pool=pool)
    logs = read_run(run)
    assert list(logs.block_series(key)) == BLOCKS
    assert logs.lam == {}
    series = logs.block_series(key)["layer1.0"]
    assert steps(series) == LAM_STEPS
    assert series[1][0] == pytest.approx(3.0 if pool == "gem" else 0.5) and series[1][-1] != series[1][0]
    assert f"watch/{key}_mean/layer1" in logs.scalars
    assert (run / "reference").exists() == (key == "mixed_a")  # only a mix weight's chart is pinned to 0-1


def test_the_custom_scalars_page_draws_each_stage_as_a_band_and_counts_blocks_above_half(spem_run, spem_logs):
    """Every tag the layout names is one the run logs: a layout naming a missing tag draws an empty chart."""
    events = EventAccumulator(str(spem_run), size_guidance={"tensors": 0})
    events.Reload()
    (config,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    assert [category.title for category in layout.category] == [f"lam in {stage}" for stage in STAGES]
    for stage, category in zip(STAGES, layout.category, strict=True):
        band, counts = category.chart
        series = band.margin.series[0]
        assert (series.value, series.lower, series.upper) == (
            f"watch/lam_mean/{stage}",
            f"watch/lam_min/{stage}",
            f"watch/lam_max/{stage}",
        )
        assert {series.value, series.lower, series.upper} <= set(spem_logs.scalars)
        (pattern,) = counts.multiline.tag
        assert [t for t in spem_logs.scalars if re.fullmatch(pattern, t)] == [f"watch/lam_above_half/{stage}"]
        per_stage = sum(block.startswith(f"{stage}.") for block in BLOCKS)
        assert band.title.endswith(f"over its {per_stage} blocks")
        assert counts.title.endswith(f"of {per_stage}")
