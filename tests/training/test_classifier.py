"""ImageClassifier: the paper's loss, every metric it logs, the best epoch, predictions, its recipe and
parameter groups, pretrained weights on a fresh fit only, and a training step with no host sync."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from helpers.cli import QUICKSTART, run_cli, run_cli_print_config, tiny_args
from helpers.data import RandomImages, write_image_folder
from helpers.models import tiny_classifier, tiny_trainer
from helpers.syncs import COUNTED_STEPS, CountStepSyncs
from torch.optim import SGD
from torch.optim.lr_scheduler import MultiStepLR

from spe_lightning.__main__ import dispatch
from spe_lightning.core.errors import InputError
from spe_lightning.models import pooling_regularization
from spe_lightning.training.classifier import ImageClassifier
from spe_lightning.training.recipe import PAPER_LR_SCHEDULER, PAPER_OPTIMIZER


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_loss_adds_alpha_times_pool_regulariser(alpha):
    model = tiny_classifier(attention="spem", pool_alpha=alpha)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    losses = model.losses(logits, target)
    # SPEM's p starts at (0.5, 0.5): 0.5 per block, 3 blocks in a depth-8 basic ResNet.
    assert losses["loss_pool"].item() == pytest.approx(1.5)
    assert torch.equal(losses["loss_pool"], pooling_regularization(model.net))
    assert losses["loss_cls"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, target).item()
    )
    assert losses["loss"].item() == pytest.approx(losses["loss_cls"].item() + alpha * 1.5)


def test_loss_has_no_pool_term_without_learned_pooling():
    for attention in ("none", "se"):
        model = tiny_classifier(attention=attention)
        losses = model.losses(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
        assert losses["loss_pool"].item() == 0.0
        assert losses["loss"].item() == losses["loss_cls"].item()


def test_label_smoothing_changes_classification_loss():
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    plain = tiny_classifier(attention="none").losses(logits, target)["loss_cls"]
    smooth = tiny_classifier(attention="none", label_smoothing=0.2).losses(logits, target)["loss_cls"]
    expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.2)
    assert smooth.item() == pytest.approx(expected.item()) and smooth.item() != pytest.approx(plain.item())


def test_fit_and_test_log_every_metric_and_best_is_max_over_epochs(tmp_path):
    model = tiny_classifier(attention="spem")
    trainer = tiny_trainer(tmp_path)
    trainer.fit(model, datamodule=RandomImages())
    trainer.test(model, datamodule=RandomImages(), verbose=False)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    keys = set(rows[0])
    for key in (
        "train/loss_step",
        "train/loss_cls_epoch",
        "train/loss_pool_epoch",
        "train/acc1",
        "train/acc5",
    ):
        assert key in keys
    for key in ("val/loss", "val/acc1", "val/acc5", "val/acc1_best", "test/loss", "test/acc1", "test/acc5"):
        assert key in keys
    val = [(float(r["val/acc1"]), float(r["val/acc1_best"])) for r in rows if r["val/acc1"]]
    assert len(val) == 3  # one per epoch; the sanity check is not counted
    for epoch in range(3):
        assert val[epoch][1] == pytest.approx(max(acc for acc, _ in val[: epoch + 1]))
    # 3 classes: top-k is capped at the class count, so "acc5" is top-3 and always 1.
    assert all(float(r["val/acc5"]) == 1.0 for r in rows if r["val/acc5"])


def test_best_val_accuracy_is_checkpointed_and_restored(tmp_path):
    model = tiny_classifier(attention="none")
    model.val_acc1_best.update(torch.tensor(0.75))
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict()}, path)
    restored = tiny_classifier(attention="none")
    restored.load_state_dict(torch.load(path)["state_dict"])
    assert restored.val_acc1_best.compute().item() == 0.75


def test_predict_step_returns_probabilities():
    model = tiny_classifier(attention="spem").eval()
    x = torch.randn(5, 3, 8, 8)
    for batch in (x, (x, torch.zeros(5)), [x, ["a.png"] * 5]):
        probs = model.predict_step(batch, 0)
        assert probs.shape == (5, 3)
        assert torch.all(probs >= 0)
        torch.testing.assert_close(probs.sum(dim=1), torch.ones(5))


def test_default_optimiser_is_the_paper_recipe_and_the_command_lines(tmp_path):
    config = tiny_classifier().configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, SGD) and isinstance(scheduler, MultiStepLR)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    assert dict(scheduler.milestones) == {81: 1, 122: 1} and scheduler.gamma == 0.1
    assert config["lr_scheduler"]["interval"] == "epoch" and config["lr_scheduler"]["name"] == "train/lr"
    assert tiny_classifier(lr_scheduler=None).configure_optimizers().keys() == {"optimizer"}
    # the command line's defaults are the same recipe, and they reach the model's configure_optimizers
    minimal = tmp_path / "minimal.yaml"
    minimal.write_text("data: {class_path: spe_lightning.data.DigitsDataModule}\n")
    resolved = yaml.safe_load(run_cli_print_config(minimal))
    for section, recipe in (("optimizer", PAPER_OPTIMIZER), ("lr_scheduler", PAPER_LR_SCHEDULER)):
        assert resolved[section]["class_path"] == recipe["class_path"]
        assert recipe["init_args"].items() <= resolved[section]["init_args"].items()


def test_hyperparameters_rebuild_the_model():
    model = tiny_classifier(attention="se", pool="maxmin", attention_kwargs={"pool_kwargs": {"lam": 0.25}})
    rebuilt = ImageClassifier(**model.hparams)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"attention": "bogus"}, "bogus"),
        ({"backbone_kwargs": {"depth": 9, "block": "basic"}}, "depth=9"),
        ({"pool_alpha": -1.0}, "pool_alpha=-1.0"),
        ({"label_smoothing": 1.5}, "label_smoothing=1.5"),
    ],
)
def test_bad_arguments_raise_input_errors_naming_the_value(kwargs, named):
    with pytest.raises(InputError, match=named):
        tiny_classifier(**kwargs)


def test_pool_weight_decay_puts_the_learned_mix_parameters_in_a_group_of_their_own(tmp_path):
    cli, _ = run_cli("fit", *tiny_args(tmp_path, "--model.pool_weight_decay=0"))
    (optimizer,) = cli.trainer.optimizers
    rest, pool = optimizer.param_groups
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0005, 0.0]
    assert {id(p) for p in pool["params"]} == {id(p) for p in cli.model.pool_params}
    assert len(rest["params"]) + len(pool["params"]) == len(list(cli.model.parameters()))
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.optimizer is optimizer and len(scheduler.base_lrs) == 2  # the schedule covers p too
    assert (
        tiny_classifier(pool_weight_decay=0.0)
        .configure_optimizers()["optimizer"]
        .param_groups[1]["weight_decay"]
        == 0.0
    )
    assert len(tiny_classifier().configure_optimizers()["optimizer"].param_groups) == 1  # the paper's


def test_parameters_a_module_keeps_out_of_weight_decay_get_a_group_without_it():
    model = tiny_classifier(attention="gct", pool="learned", pool_weight_decay=0.01)
    optimizer = model.configure_optimizers()["optimizer"]
    rest, pool, undecayed = optimizer.param_groups
    betas = [
        m.beta for m in model.net.modules() if hasattr(m, "beta") and isinstance(m.beta, torch.nn.Parameter)
    ]
    assert {id(p) for p in undecayed["params"]} == {id(p) for p in betas} and len(betas) == 3
    assert (pool["weight_decay"], undecayed["weight_decay"]) == (0.01, 0.0)
    assert len(rest["params"]) + len(pool["params"]) + len(betas) == len(list(model.parameters()))
    # a step with no gradient: weight decay alone moves every decayed weight, never beta
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(1.0)
            param.grad = torch.zeros_like(param)
    optimizer.step()
    assert all(torch.equal(b, torch.ones_like(b)) for b in betas)
    assert all((p < 1).all() for p in rest["params"])


@pytest.mark.slow
def test_pretrained_weights_load_on_a_fresh_fit_only(tmp_path):
    """ResNet-18 from a local weights file: loaded by the fit, not needed to resume, evaluate or reload."""
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(num_classes=1000).state_dict(), weights)
    data = write_image_folder(tmp_path / "images")
    args = [
        "--model.backbone=resnet18",
        f"--model.backbone_kwargs={{weights: {weights}}}",
        "--model.attention=se",
        "--data=spe_lightning.data.ImageFolderDataModule",
        f"--data.init_args.data_dir={data}",
        "--data.init_args.image_size=32",
        "--data.init_args.batch_size=2",
        "--optimizer.init_args.lr=0.0",
    ]
    fit, _ = run_cli("fit", *tiny_args(tmp_path / "runs", *args))
    loaded = torch.load(weights, weights_only=True)["layer1.0.conv1.weight"]
    assert torch.equal(fit.model.net.layer1[0].conv1.weight, loaded)  # lr 0: still the pretrained weights
    weights.unlink()  # a compute node without the file (or without network for a torchvision name)
    last = tmp_path / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    resumed, _ = run_cli("fit", *tiny_args(tmp_path / "runs", *args, "--ckpt_path=last", max_epochs=2))
    assert resumed.trainer.global_step == 4
    run_cli("validate", *tiny_args(tmp_path / "runs", *args, "--ckpt_path=last"))
    assert ImageClassifier.load_from_checkpoint(last).net.fc.out_features == 2


def test_no_host_sync_in_training_steps_that_log_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    counter = {"class_path": "helpers.syncs.CountStepSyncs"}
    cli = dispatch(
        ["fit", "--config", str(QUICKSTART),
         "--model.backbone_kwargs={depth: 8, block: basic}", "--data.init_args.image_size=8",
         "--data.init_args.batch_size=8", "--data.init_args.num_workers=1",  # augmentation: a worker's
         f"--trainer.max_steps={COUNTED_STEPS + 2}",
         "--trainer.log_every_n_steps=1000", "--trainer.num_sanity_val_steps=0",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         f"--trainer.callbacks+={json.dumps(counter)}"]
    )  # fmt: skip
    (count,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, CountStepSyncs)]
    assert count.steps == COUNTED_STEPS
    assert count.counter.syncs == []


def test_the_regulariser_does_not_walk_the_model_in_a_step(monkeypatch):
    model = ImageClassifier(backbone_kwargs={"depth": 164, "block": "bottleneck"})
    model.configure_model()
    assert len(model.pool_params) == 54
    walks = []
    original = torch.nn.Module.modules
    monkeypatch.setattr(torch.nn.Module, "modules", lambda self: walks.append(self) or original(self))
    losses = model.losses(torch.randn(2, 10), torch.tensor([1, 2]))
    assert walks == []
    monkeypatch.undo()
    torch.testing.assert_close(losses["loss_pool"], pooling_regularization(model.net))
