"""Mixed precision on CPU and the model-side speed options (channels_last, torch.compile)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.plugins import MixedPrecision
from torch.utils.data import DataLoader

from spe_lightning.classifier import ImageClassifier
from spe_lightning.cli import cli_main
from spe_lightning.layers import create_attention, create_pool
from spe_lightning.models import create_backbone, pooling_lambdas, pooling_regularization

TINY = {"depth": 8, "block": "basic"}
HALF_TYPES = [torch.float16, torch.bfloat16]


def large_activations(dtype: torch.dtype) -> torch.Tensor:
    """Values near float16's limit (65504): any sum of a few of them overflows in float16."""
    return torch.empty(2, 4, 6, 6).uniform_(3e4, 6e4, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.mark.parametrize("dtype", HALF_TYPES)
@pytest.mark.parametrize("pool", ["avg", "max", "min", "maxmin", "learned", "avgmax", "meanstd"])
def test_pooled_statistics_do_not_overflow_under_autocast(pool: str, dtype: torch.dtype) -> None:
    module = create_pool(pool)
    x = large_activations(dtype)
    with torch.autocast("cpu", dtype=dtype):
        stats = module.stats(x)
    assert torch.isfinite(stats).all()
    rtol = 0.0 if pool in ("max", "min", "maxmin", "learned") else 1e-2  # extremes are exact
    torch.testing.assert_close(stats.float(), module.stats(x.float()), rtol=rtol, atol=0.0)


@pytest.mark.parametrize("dtype", HALF_TYPES)
def test_spem_keeps_lam_and_gate_in_float32_under_autocast(dtype: torch.dtype) -> None:
    spem = create_attention("spem", 4)
    with torch.no_grad():
        spem.reweight_weight.fill_(1.0)  # r_max + r_min ~ 1e5 would be inf in float16
        spem.excite_weight.fill_(1e-4)
    x = large_activations(dtype)
    with torch.autocast("cpu", dtype=dtype):
        lam, gate, out = spem.pool.lam, spem.gate(x), spem(x)
    assert lam.dtype == torch.float32 and spem.pool.p.dtype == torch.float32
    assert gate.dtype == torch.float32
    torch.testing.assert_close(gate, spem.gate(x.float()))  # the float32 gate, cast only at the product
    assert out.dtype == dtype and torch.isfinite(out).all()


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
    cli = cli_main(
        [
            "fit",
            "--config=configs/quickstart.yaml",
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


def tiny_classifier(**kwargs) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(in_chans=1, backbone_kwargs=TINY, **kwargs)


def predict(model: ImageClassifier, x: torch.Tensor, save_to: Path | None = None) -> torch.Tensor:
    """Probabilities from ``Trainer.predict`` (it calls ``configure_model``); optionally a checkpoint."""
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(model, DataLoader(x, batch_size=8)))
    if save_to is not None:
        trainer.save_checkpoint(save_to)
    return probs


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
        ValueError, match=r"compile options \['mdoe'\] are not allowed; torch.compile accepts"
    ):
        tiny_classifier(compile={"mdoe": "max-autotune"})


def test_throughput_benchmark_reports_ratios_against_fp32_eager(capsys: pytest.CaptureFixture) -> None:
    from spe_lightning.benchmarks.throughput import main

    ratios = main(
        precisions=["32", "16-mixed", "bf16-mixed"],
        channels_last=[False, True],
        compile=[False],
        depth=8,
        block="basic",
        batch_size=4,
        image_size=8,
        steps=1,
        warmup=1,
        rounds=1,
        device="cpu",
    )
    assert list(ratios) == ["32", "32 +channels_last", "bf16-mixed", "bf16-mixed +channels_last"]
    assert ratios["32"] == 1.0 and all(r > 0 for r in ratios.values())
    out = capsys.readouterr().out
    assert "skipped 16-mixed: Lightning runs 16-mixed as bf16-mixed on CPU" in out
    assert "vs fp32 eager" in out
