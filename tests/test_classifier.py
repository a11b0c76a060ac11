"""ImageClassifier: loss composition, logged metrics, best-epoch tracking, predictions, optimiser."""

from __future__ import annotations

import csv

import pytest
import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from test_cli import run_cli, tiny_args
from torch.optim import SGD
from torch.optim.lr_scheduler import MultiStepLR
from torch.utils.data import DataLoader, TensorDataset

from spe_lightning.callbacks.prediction_writer import CSVPredictionWriter
from spe_lightning.classifier import ImageClassifier
from spe_lightning.models import pooling_regularization

TINY = {"depth": 8, "block": "basic"}


def tiny_classifier(**kwargs) -> ImageClassifier:
    return ImageClassifier(**{"num_classes": 3, "backbone_kwargs": TINY, **kwargs})


class RandomImages(LightningDataModule):
    """A few random 8x8 images, the same set for every split."""

    def __init__(self, num_classes: int = 3, n: int = 24) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(n, 3, 8, 8, generator=generator)
        self.data = TensorDataset(x, torch.randint(0, num_classes, (n,), generator=generator))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8)


def tiny_trainer(tmp_path, max_epochs: int = 3) -> Trainer:
    return Trainer(
        max_epochs=max_epochs,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


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


def test_prediction_writer_streams_rows_for_image_only_batches(tmp_path):
    model = tiny_classifier(attention="spem")
    images = DataLoader(torch.randn(10, 3, 8, 8), batch_size=4)  # batches are bare image tensors
    writer = CSVPredictionWriter(str(tmp_path / "out" / "pred.csv"))
    trainer = Trainer(callbacks=[writer], logger=False, enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(model, images))
    with open(tmp_path / "out" / "pred.csv") as f:
        rows = list(csv.DictReader(f))
    assert writer.rows == len(rows) == 10
    assert list(rows[0]) == ["index", "pred", "prob_0", "prob_1", "prob_2"]
    assert [int(r["index"]) for r in rows] == list(range(10))
    assert [int(r["pred"]) for r in rows] == probs.argmax(1).tolist()
    assert float(rows[3]["prob_1"]) == pytest.approx(probs[3, 1].item(), abs=1e-6)


def test_default_optimiser_is_the_paper_recipe():
    config = tiny_classifier().configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]
    assert isinstance(optimizer, SGD) and isinstance(scheduler, MultiStepLR)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    assert dict(scheduler.milestones) == {81: 1, 122: 1} and scheduler.gamma == 0.1


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
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, named):
    with pytest.raises(ValueError, match=named):
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
