"""Speed options: mixed precision on CPU, channels_last and torch.compile of the network (checkpoints
interchange, graphs counted through the real CLI, the monitor still sees the gates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers.cli import QUICKSTART
from helpers.models import TINY, predict
from helpers.models import tiny_classifier as tiny
from lightning.pytorch.plugins import MixedPrecision
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from spe_lightning.__main__ import dispatch
from spe_lightning.core.errors import InputError
from spe_lightning.models import create_backbone, pooling_lambdas, pooling_regularization
from spe_lightning.training.classifier import ImageClassifier

HALF_TYPES = [torch.float16, torch.bfloat16]
VAL_IMAGES = 229  # the digits' validation split at the quickstart's split fractions


def tiny_classifier(**kwargs) -> ImageClassifier:
    """The quickstart's classes and channels: 10 digits, grayscale."""
    return tiny(num_classes=10, in_chans=1, **kwargs)


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_network_trains_under_cpu_autocast_with_float32_pooling_parameters(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    net = create_backbone("cifar_resnet", 10, attention="spem", pool="learned", in_chans=1, **TINY)
    x, y = 50 * torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=dtype):
        logits = net(x)
        loss = F.cross_entropy(logits, y) + 0.1 * pooling_regularization(net)
    loss.backward()
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    lambdas = [lam for _, lam in pooling_lambdas(net)]
    assert lambdas and all(lam.dtype == torch.float32 for lam in lambdas)
    pools = [m for m in net.modules() if hasattr(m, "p")]
    assert all(m.p.dtype == m.p.grad.dtype == torch.float32 and torch.isfinite(m.p.grad).all() for m in pools)


@pytest.mark.parametrize(
    ("precision", "runs_as"),
    [("32", "32-true"), ("bf16-mixed", "bf16-mixed"), ("16-mixed", "bf16-mixed")],  # CPU has no fp16 AMP
)
def test_cli_fit_at_each_precision(tmp_path: Path, precision: str, runs_as: str) -> None:
    cli = dispatch(
        [
            "fit",
            f"--config={QUICKSTART}",
            "--trainer.accelerator=cpu",
            f"--trainer.precision={precision}",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--model.backbone_kwargs={TINY}",
            "--data.init_args.image_size=8",
        ]
    )
    trainer = cli.trainer
    assert trainer.precision == runs_as
    if runs_as == "bf16-mixed":
        assert isinstance(trainer.precision_plugin, MixedPrecision)
        with trainer.precision_plugin.forward_context():
            assert cli.model.net.conv1(torch.randn(1, 1, 8, 8)).dtype == torch.bfloat16
    assert trainer.global_step == 3
    assert all(torch.isfinite(trainer.callback_metrics[k]) for k in ("train/loss_epoch", "val/acc1"))
    checkpoint = torch.load(Path(trainer.log_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    p = [v for k, v in checkpoint["state_dict"].items() if k.endswith(".pool.p")]
    assert p and all(v.dtype == torch.float32 for v in p)


def test_channels_last_matches_eager_float32_and_checkpoints_interchange(tmp_path: Path) -> None:
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    eager, fast = tiny_classifier(), tiny_classifier(channels_last=True)
    expected = predict(eager, x, save_to=tmp_path / "eager.ckpt")
    torch.testing.assert_close(predict(fast, x, save_to=tmp_path / "fast.ckpt"), expected)
    assert fast.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for model in (eager, fast):  # gradients too, through the channels_last path of the max/min backward
        model.losses(model(x), y)["loss"].backward()
    for (name, p), q in zip(eager.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "fast.ckpt", channels_last=False)
    torch.testing.assert_close(predict(loaded, x), expected)
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "eager.ckpt", channels_last=True)
    torch.testing.assert_close(predict(loaded, x), expected)


@pytest.mark.slow  # inductor compiles C++ for the CPU
def test_compiled_network_matches_eager_and_checkpoints_interchange(tmp_path: Path) -> None:
    x = torch.randn(16, 1, 8, 8)
    eager, compiled = tiny_classifier(), tiny_classifier(compile=True)
    traced = []
    compiled.net.fc.register_forward_hook(lambda *_: traced.append(torch.compiler.is_compiling()))
    expected = predict(eager, x, save_to=tmp_path / "eager.ckpt")
    torch.testing.assert_close(predict(compiled, x, save_to=tmp_path / "compiled.ckpt"), expected)
    assert traced and all(traced)  # the network ran compiled
    keys = torch.load(tmp_path / "compiled.ckpt", weights_only=False)["state_dict"].keys()
    assert keys == torch.load(tmp_path / "eager.ckpt", weights_only=False)["state_dict"].keys()
    assert not any("_orig_mod" in key for key in keys)
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "compiled.ckpt", compile=False)
    torch.testing.assert_close(predict(loaded, x), expected)
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "eager.ckpt", compile=True)
    torch.testing.assert_close(predict(loaded, x), expected)


def test_bad_compile_option_is_a_one_line_error() -> None:
    with pytest.raises(
        InputError, match=r"compile options \['mdoe'\] are not allowed; torch.compile accepts"
    ):
        tiny_classifier(compile={"mdoe": "max-autotune"})


def fit_compiled(root: Path, *args: str) -> Any:
    """Two epochs of a depth-8 ResNet + SPEM on 8x8 digits, validating on every epoch, compiled."""
    return dispatch(
        ["fit", "--config", str(QUICKSTART),
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


@pytest.mark.slow
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
