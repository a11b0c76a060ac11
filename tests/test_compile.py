"""torch.compile through the real CLI and all its callbacks: how many graphs a run compiles, that the
pooling monitor still sees the gates, and that ``reduce-overhead`` (CUDA graphs on a GPU) trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from spe_lightning.cli import cli_main

REPO = Path(__file__).resolve().parents[1]
VAL_IMAGES = 229  # the digits' validation split at the quickstart's split fractions


def fit_compiled(root: Path, *args: str) -> Any:
    """Two epochs of a depth-8 ResNet + SPEM on 8x8 digits, validating on every epoch, compiled."""
    return cli_main(
        ["fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
         "--model.backbone_kwargs={depth: 8, block: basic}", "--data.init_args.image_size=8",
         "--data.init_args.batch_size=100", f"--data.init_args.eval_batch_size={VAL_IMAGES}",
         "--trainer.max_epochs=2", "--trainer.log_every_n_steps=5",
         f"--trainer.logger.init_args.save_dir={root}", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", *args]
    )  # fmt: skip


def gate_tags(run_dir: Path) -> set[str]:
    runs = EventMultiplexer().AddRunsFromDirectory(str(run_dir)).Reload().Runs()
    return {tag for tags in runs.values() for tag in tags.get("tensors", []) if "gate_" in tag}


@pytest.fixture
def graphs(monkeypatch) -> list[bool]:
    """Every graph torch.compile builds (one per compile and per recompile), as its grad mode: the network
    compiles with a backend that records the graph and runs it as traced."""
    built: list[bool] = []

    def recording(graph: torch.fx.GraphModule, example_inputs: list) -> Any:
        built.append(torch.is_grad_enabled())
        return graph.forward

    torch.compiler.reset()  # what earlier tests compiled, and the sizes dynamo has seen, are forgotten
    compile_in_place = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module, "compile", lambda self, **kwargs: compile_in_place(self, backend=recording)
    )
    return built


@pytest.mark.parametrize(("drop_last", "train_graphs"), [(True, 1), (False, 2)])
def test_a_compiled_fit_builds_one_graph_to_train_and_one_to_evaluate(
    tmp_path, graphs, drop_last, train_graphs
):
    # 1,298 training images: 12 batches of 100 and a partial one of 98, which drop_last drops. Without the
    # sanity check the training graph compiles first, for batch 100, and the partial batch recompiles it
    # with a dynamic batch size; the evaluation graph comes after, as does every later shape.
    cli = fit_compiled(
        tmp_path, "--model.compile=true", f"--data.init_args.drop_last={drop_last}",
        "--trainer.num_sanity_val_steps=0", "--pooling_monitor.summary_every_n_epochs=2",
    )  # fmt: skip
    assert cli.trainer.num_training_batches == (12 if drop_last else 13)
    assert (graphs.count(True), graphs.count(False)) == (train_graphs, 1)
    # the monitor's recorded batch (epoch 1's only one) runs eagerly: torch.compile would never call hooks
    # added after it compiled
    assert gate_tags(Path(cli.trainer.log_dir)) >= {"watch/gate_mean/layer1", "watch/gate_std/layer3"}
    assert not cli.trainer.predict_loop.inference_mode  # Lightning validates in fit under no_grad: so do they
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)  # 270 images: a second shape
    cli.trainer.predict(cli.model, cli.datamodule.val_dataloader())
    assert graphs.count(False) == 1  # none of them compiled anything


@pytest.mark.slow  # inductor compiles C++ for the CPU: about 20 s
def test_reduce_overhead_mode_trains_with_every_callback(tmp_path):
    cli = fit_compiled(
        tmp_path, "--model.compile={mode: reduce-overhead}", "--data.init_args.drop_last=true",
        "--trainer.limit_train_batches=4",
    )  # fmt: skip
    assert cli.trainer.global_step == 8
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["val/loss"]) and 0 <= metrics["val/acc1"] <= 1
    assert gate_tags(Path(cli.trainer.log_dir)) >= {"watch/gate_mean/layer1", "watch/gate_std/layer3"}
    assert all(p.isfinite().all() for p in cli.model.parameters())
