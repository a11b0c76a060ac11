"""The TensorBoard view of a run at the paper's scale: a ResNet-164 + SPEM run (54 blocks) through the CLI,
read back through a real TensorBoard server's HTTP data API and from the event files: the layout
(:mod:`spe_lightning.runs.log_names`) the logger, the monitor and the HParams callback write."""

from __future__ import annotations

import json
import re
import selectors
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.processes import TIMEOUT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from spe_lightning.__main__ import dispatch
from spe_lightning.analysis.figures import CARD_BOX
from spe_lightning.runs.log_names import TENSORBOARD_FLAGS

STAGES = ["layer1", "layer2", "layer3"]
BLOCKS_PER_STAGE = 18
RUN = "cifar_resnet164-spem-learned/version_0"  # named after the model: the config names no run
PER_BLOCK = ["lam", "p_norm", "lam_grad", "gate_mean", "gate_std"]
TRAIN_VAL = 15  # train: 6 losses, acc1, acc5, lr, epoch, img_per_s; val: loss, acc1, acc5, acc1_best
SCALAR_CARDS = TRAIN_VAL + len(STAGES) * (4 + len(PER_BLOCK))
"""The bound: 15 training/validation cards plus 9 per stage (lam mean/min/max/above half and the 5 per-block
charts), at any depth. A card per block would be 54 x 5 + 12 + 15 = 297 for this network (the old layout's 176
scalar tags and 270 histograms). Histograms: 5 per stage (the gates and SPEM's 4 parameters)."""
HISTOGRAM_CARDS = 5 * len(STAGES)


pytestmark = pytest.mark.slow  # a ResNet-164 fit and a TensorBoard server


@pytest.fixture(scope="module")
def r164(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of 3 batches of 8 digits (8 x 8 pixels) on ResNet-164 + SPEM, through the real CLI."""
    root = tmp_path_factory.mktemp("r164")
    dispatch(
        [
            "fit",
            "--config=quickstart.yaml",
            "--model.backbone_kwargs.depth=164",
            "--model.backbone_kwargs.block=bottleneck",
            "--data.init_args.image_size=8",
            "--data.init_args.batch_size=8",
            "--trainer.max_epochs=2",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=1",
            "--trainer.log_every_n_steps=2",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.logger.init_args.name=null",
            "--pooling_monitor.num_gate_images=4",
        ]
    )
    return root


class TensorBoardServer:
    """``tensorboard --logdir <root>`` on 127.0.0.1 at a free port, read through its JSON data API."""

    def __init__(self, logdir: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *TENSORBOARD_FLAGS.split(),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        self.url, line = "", ""
        waiting = selectors.DefaultSelector()
        waiting.register(self.process.stderr, selectors.EVENT_READ)
        while not self.url:
            left = deadline - time.monotonic()
            if left <= 0 or not waiting.select(timeout=left):
                self.close()
                raise RuntimeError(f"TensorBoard did not start within 60 s: {line}")
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"TensorBoard ended before it served: {line}")
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            self.url = match.group(1) if match else ""

    def get(self, path: str, **query: str) -> bytes:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}" if query else f"{self.url}{path}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()

    def json(self, path: str, **query: str) -> Any:
        return json.loads(self.get(path, **query))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def server(r164: Path) -> Iterator[TensorBoardServer]:
    server = TensorBoardServer(r164)
    try:
        deadline = time.monotonic() + 60  # the first load of the logdir runs in the background
        while RUN not in server.json("/data/plugin/scalars/tags") and time.monotonic() < deadline:
            time.sleep(0.5)
        yield server
    finally:
        server.close()


def cards(tags_by_run: dict[str, dict]) -> set[str]:
    """Time Series draws one card per tag, whichever runs have it."""
    return {tag for tags in tags_by_run.values() for tag in tags}


def test_train_and_val_come_first_and_the_cards_do_not_grow_with_depth(server):
    scalars = cards(server.json("/data/plugin/scalars/tags"))
    histograms = cards(server.json("/data/plugin/histograms/tags"))
    assert len(scalars) == SCALAR_CARDS == 42
    assert len(histograms) == HISTOGRAM_CARDS == 15
    groups = {tag.split("/")[0] for tag in scalars | histograms}
    assert groups == {"train", "val", "watch"}
    # Time Series sorts groups by character code and opens the first two
    assert sorted(groups)[:2] == ["train", "val"]
    assert {"train/lr", "train/epoch", "val/acc1", "val/acc1_best"} <= scalars


def test_one_chart_per_stage_holds_every_block_and_the_zero_one_references(server):
    tags = server.json("/data/plugin/scalars/tags")
    for stage in STAGES:
        runs = sorted(run for run, run_tags in tags.items() if f"watch/lam/{stage}" in run_tags)
        blocks = [f"{RUN}/blocks/{i}" for i in range(BLOCKS_PER_STAGE)]
        references = [f"{RUN}/reference/{name}_{k}" for name in ("max_only", "min_only") for k in range(2)]
        assert runs == sorted(blocks + references)
        description = tags[blocks[0]][f"watch/lam/{stage}"]["description"]
        assert "weight of global max pooling" in description
        for run in blocks[:2]:
            points = server.json("/data/plugin/scalars/scalars", run=run, tag=f"watch/lam/{stage}")
            assert [step for _, step, _ in points] == [0, 1, 2, 3, 5]  # start, every 2 steps, epoch ends
            assert all(0.0 <= value <= 1.0 for _, _, value in points)
        for run, value in ((references[0], 1.0), (references[-1], 0.0)):
            points = server.json("/data/plugin/scalars/scalars", run=run, tag=f"watch/lam/{stage}")
            assert {v for _, _, v in points} == {value}
        assert {f"watch/lam_{stat}/{stage}" for stat in ("mean", "min", "max")} <= set(tags[RUN])


def test_the_lam_figure_fills_the_image_card_and_is_served_for_every_epoch(server, r164):
    """Started as ``fit`` says (:data:`TENSORBOARD_FLAGS`), TensorBoard serves every epoch's figure."""
    entries = server.json("/data/plugin/images/images", run=RUN, tag="watch/lam_overview", sample="0")
    assert [entry["step"] for entry in entries] == [2, 5]
    png = server.get("/data/plugin/images/individualImage?" + entries[-1]["query"])
    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR
    assert width / height == pytest.approx(CARD_BOX[0] / CARD_BOX[1], rel=0.01)  # landscape, as the card
    assert height >= CARD_BOX[1]  # sharp at the card's actual-size toggle
    saved = sorted(path.name for path in (r164 / RUN / "lam_figures").iterdir())
    assert saved == ["epoch_000.png", "epoch_001.png"]


def test_hparams_hold_the_whole_resolved_config(r164):
    acc = EventAccumulator(str(r164 / RUN))
    acc.Reload()
    experiment = hparams_metadata.parse_experiment_plugin_data(
        acc.SummaryMetadata(hparams_metadata.EXPERIMENT_TAG).plugin_data.content
    )
    session = hparams_metadata.parse_session_start_info_plugin_data(
        acc.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content
    )
    values = {
        name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for name, value in session.hparams.items()
    }
    config = {
        "optimizer": "SGD",
        "optimizer.lr": 0.1,
        "optimizer.weight_decay": 0.0005,
        "optimizer.nesterov": True,
        "lr_scheduler": "CosineAnnealingLR",
        "data": "DigitsDataModule",
        "data.batch_size": 8.0,
        "data.image_size": 8.0,
        "model.backbone_kwargs.depth": 164.0,
        "model.attention": "spem",
        "model.pool": "learned",  # SPEM's own pool, named
        "model.channels_last": False,
        "trainer.max_epochs": 2.0,
        "trainer.precision": "null",
        "seed": 42.0,
    }
    assert {name: values[name] for name in config} == config
    assert not [name for name in values if "_instantiator" in name or name.startswith("_")]
    # TensorBoard ticks the first five: the best top-1 and how each stage's lams split between max and min
    assert [m.name.tag for m in experiment.metric_infos] == [
        "val/acc1_best",
        *(f"watch/lam_above_half/{stage}" for stage in STAGES),
        "val/acc1",
        "val/loss",
        *(f"watch/lam_{stat}/{stage}" for stage in STAGES for stat in ("mean", "min", "max")),
    ]
    assert sorted(h.name for h in experiment.hparam_infos if h.differs) == [
        "model.attention",
        "model.backbone",
        "model.pool",
        "optimizer.lr",
        "seed",
    ]
    assert "hp_metric" not in acc.Tags()["scalars"]  # no placeholder group before train/


def test_the_custom_scalars_page_shows_each_stages_lam_band(server):
    """TensorBoard's own Custom Scalars plugin serves the layout the monitor wrote: a band per stage."""
    categories = server.json("/data/plugin/custom_scalars/layout")["category"]
    assert [category["title"] for category in categories] == [f"lam in {stage}" for stage in STAGES]
    bands = [chart["margin"]["series"][0] for category in categories for chart in category["chart"][:1]]
    assert [band["value"] for band in bands] == [f"watch/lam_mean/{stage}" for stage in STAGES]
