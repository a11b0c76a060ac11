"""The HParams view's config: flattened with readable names, booleans and None kept as such."""

from __future__ import annotations

from jsonargparse import Namespace

from spe_lightning.training.callbacks.config_hparams import flatten_config


def test_the_config_flattens_to_readable_names_and_plain_values():
    config = Namespace(
        seed_everything=7,
        model=Namespace(attention="spem", pool=None, channels_last=True, backbone_kwargs={"depth": 164}),
        data=Namespace(
            class_path="spe_lightning.data.CIFAR10DataModule", init_args=Namespace(batch_size=128)
        ),
        optimizer=Namespace(class_path="torch.optim.SGD", init_args=Namespace(lr=0.1, nesterov=False)),
        lr_scheduler=Namespace(
            class_path="torch.optim.lr_scheduler.MultiStepLR", init_args=Namespace(milestones=[81, 122])
        ),
        trainer=Namespace(max_epochs=164, precision="bf16-mixed", devices="auto", logger=True, callbacks=[]),
        _instantiator="lightning.pytorch.cli.instantiate_module",
    )
    assert flatten_config(config) == {
        "model.attention": "spem",
        "model.pool": "learned",  # no pool named: SPEM's own, by its name
        "model.channels_last": True,
        "model.backbone_kwargs.depth": 164,
        "data": "CIFAR10DataModule",
        "data.batch_size": 128,
        "optimizer": "SGD",
        "optimizer.lr": 0.1,
        "optimizer.nesterov": False,
        "lr_scheduler": "MultiStepLR",
        "lr_scheduler.milestones": "[81, 122]",
        "trainer.max_epochs": 164,
        "trainer.precision": "bf16-mixed",
        "trainer.devices": "auto",
        "seed": 7,
    }


def test_a_pool_left_unset_shows_the_attentions_own_and_no_attention_shows_none():
    def pool(attention: str) -> str:
        return flatten_config(Namespace(model=Namespace(attention=attention, pool=None)))["model.pool"]

    assert (pool("se"), pool("cbam"), pool("srm"), pool("none")) == ("avg", "avgmax", "meanstd", "null")
