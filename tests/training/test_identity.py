"""A run's identity: what it records, what a comparison reports, and what may change without a report."""

from __future__ import annotations

import torch

from spe_lightning.training.identity import (
    IDENTITY_KEY,
    differences,
    experiment_identity,
    flatten,
    network_identity,
    recorded_identity,
)
from spe_lightning.training.recipe import PAPER_LR_SCHEDULER

ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}}


def groups(**hyper: float) -> list[dict]:
    return [{"params": [torch.nn.Parameter(torch.zeros(1))], **hyper}]


def identity(**hparams) -> dict:
    return experiment_identity({"attention": "spem", **hparams}, groups(), datamodule=None)


def test_the_same_experiment_has_no_differences():
    assert differences(identity(), identity()) == []


def test_each_part_that_defines_the_experiment_is_reported_with_both_values():
    base = identity()
    assert differences(base, identity(attention="se")) == [
        "network.attention='spem' (this config: 'se')",
        "network.pool='learned' (this config: 'avg')",  # the pool each attention uses by default
    ]
    assert differences(base, identity(pool_alpha=0.5)) == ["loss.pool_alpha=0.1 (this config: 0.5)"]
    assert differences(base, identity(backbone_kwargs={"depth": 20})) == [
        "network.backbone_kwargs={} (this config: {'depth': 20})"
    ]
    changed = differences(base, identity(optimizer=ADAM, lr_scheduler=None))
    assert changed[:2] == [
        "optimization.optimizer='torch.optim.SGD' (this config: 'torch.optim.Adam')",
        f"optimization.lr_scheduler={PAPER_LR_SCHEDULER['class_path']!r} (this config: None)",
    ]


def test_what_only_chooses_starting_weights_or_speed_is_not_part_of_it():
    base = identity(backbone="resnet18")
    assert differences(base, identity(backbone="resnet18", backbone_kwargs={"weights": "DEFAULT"})) == []
    assert differences(base, identity(backbone="resnet18", compile=True, channels_last=True)) == []


def test_names_compare_by_what_they_mean():
    """Case and numeric type are spelling: ``SPEM`` is ``spem``, 0 is 0.0 after a YAML round trip."""
    assert network_identity({"attention": "SPEM"}) == network_identity({"attention": "spem"})
    assert differences(identity(label_smoothing=0), identity(label_smoothing=0.0)) == []


def test_an_evaluation_compares_the_network_only():
    only = ("network",)
    assert differences(identity(), identity(pool_alpha=0.5), only) == []
    assert differences(identity(), identity(attention="eca"), only)[0].startswith("network.attention")


def test_a_checkpoint_holds_its_identity_and_an_older_one_what_it_can():
    recorded = identity()
    assert recorded_identity({IDENTITY_KEY: recorded}) is recorded
    older = recorded_identity(
        {
            "hyper_parameters": {"attention": "spem", "num_classes": 10},
            "datamodule_hyper_parameters": {"seed": 1, "val_split": 0.1, "root": "data"},
            "optimizer_states": [{"param_groups": [{"params": [0], "lr": 0.1, "momentum": 0.9}]}],
        }
    )
    assert older["data"] == {"seed": 1, "val_split": 0.1}
    assert flatten(older)["network.attention"] == "spem"
    # an optimizer whose groups have keys this one's lack (SGD's momentum, for Adam) is another optimizer
    adam = experiment_identity({"optimizer": ADAM}, groups(), None)
    (changed,) = differences(older, adam, ("optimization",))
    assert changed == (
        "optimization.optimizer: the checkpoint's optimizer has momentum, which this config's does not"
    )


def test_a_checkpoint_without_hyperparameters_is_not_judged_by_guessed_defaults():
    assert recorded_identity({"state_dict": {}}) == {}
