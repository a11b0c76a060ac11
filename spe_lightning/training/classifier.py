"""``ImageClassifier``: trains any ``create_backbone`` network with the SPEM paper's loss, metrics and recipe.

The LightningModule only holds primitive hyperparameters (saved with ``save_hyperparameters`` so
``--ckpt_path`` and ``load_from_checkpoint`` rebuild the network); the network itself comes from the
model library. The loss is the paper's: cross entropy + ``pool_alpha`` * the pooling-parameter
regulariser of every learned max/min mix (zero when the model has none). The optimizer and scheduler are
arguments too (:mod:`~spe_lightning.training.recipe`), so one ``configure_optimizers`` serves the command
line and Python alike.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from jsonargparse import Namespace
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MaxMetric, MetricCollection

from spe_lightning.core.errors import InputError
from spe_lightning.models import (
    check_pretrained,
    create_backbone,
    load_backbone_weights,
    no_decay_parameters,
    pooling_parameters,
    pooling_regularization,
)
from spe_lightning.runs.checkpoints import check_checkpoint_fits, load_checkpoint_file
from spe_lightning.runs.log_names import (
    ACCURACY_K,
    EPOCH_SUFFIX,
    LR,
    STEP,
    TEST,
    TRAIN,
    VAL,
    VAL_ACC1,
    VAL_ACC1_BEST,
    metric,
)
from spe_lightning.training.identity import IDENTITY_KEY, experiment_identity
from spe_lightning.training.metrics import TopKAccuracy
from spe_lightning.training.recipe import (
    PAPER_LR_SCHEDULER,
    PAPER_OPTIMIZER,
    ClassSpec,
    build_lr_scheduler,
    build_optimizer,
)
from spe_lightning.training.speed import (
    CompileOption,
    begin_compiled_step,
    compile_kwargs,
    prepare_network,
    to_memory_format,
)


def _accuracy_metrics(num_classes: int, stage: str) -> MetricCollection:
    """Top-1 and top-k (k = min(5, classes)) accuracy over all samples (micro average, as papers report),
    updated without a host sync (:class:`~spe_lightning.training.metrics.TopKAccuracy`)."""
    top = {name: min(k, num_classes) for name, k in ACCURACY_K.items()}
    return MetricCollection({name: TopKAccuracy(k) for name, k in top.items()}, prefix=f"{stage}/")


def _spec(value: ClassSpec | Namespace) -> ClassSpec:
    """An optimizer or scheduler mapping as a plain dict (the command line passes a Namespace)."""
    return value.as_dict() if isinstance(value, Namespace) else dict(value)


class ImageClassifier(LightningModule):
    """Image classification with a named backbone and a named attention module in every residual block.

    Args:
        backbone: ``create_backbone`` name (``cifar_resnet``, ``resnet50``, ...).
        num_classes: output classes; linked from the datamodule by the CLI.
        attention: attention name (``none``/None, ``se``, ``eca``, ``cbam``, ``srm``, ``spem``, ...).
        pool: pooling stage of the attention (``avg``, ``max``, ``min``, ``maxmin``, ``learned``, ...);
            None keeps the module's own.
        in_chans: input channels; linked from the datamodule by the CLI. Passed to the backbone only
            when it is not 3, since the torchvision ResNets are RGB-only.
        backbone_kwargs: extra backbone arguments (``depth``, ``block``, ``weights``, ...). ``weights``
            (pretrained plain-backbone weights) load when a fresh fit starts, never when a checkpoint is
            restored, so resuming and evaluating need neither the file nor the network.
        attention_kwargs: extra arguments of the attention's constructor: SE and CBAM take
            ``reduction``, ECA ``kernel_size``, ``gamma``, ``beta``, and every one ``pool_kwargs``, the
            pool's arguments (``pool_kwargs: {lam: 0.25}``). An unknown keyword is an error that lists
            the ones the attention takes.
        pool_alpha: weight of the pooling-parameter regulariser (the paper's alpha, 0.1).
        pool_weight_decay: weight decay of the learned-mix parameters p, in a parameter group of their own;
            None (the paper's) decays them as every other parameter. ``0`` leaves |p| to the regulariser
            alone, for studying how lam moves (see the README's "What moves lam").
        label_smoothing: cross-entropy label smoothing.
        channels_last: run the network and its inputs in channels_last memory format.
        compile: ``torch.compile`` the network (True, or a dict of torch.compile options such as
            ``{mode: max-autotune}``). Both speed options are applied in ``configure_model`` and leave
            checkpoints unchanged (see :mod:`spe_lightning.training.speed`). Compiled, the CLI evaluates
            under ``no_grad`` (one graph for every evaluation) and every forward starts a CUDA-graph step.
        optimizer: ``{class_path, init_args}`` of the optimizer (without its parameters); the paper's SGD by
            default. On the command line it is the top-level ``optimizer:`` section.
        lr_scheduler: ``{class_path, init_args}`` of the learning-rate scheduler (without its optimizer),
            stepped every epoch; a ``ReduceLROnPlateau`` watches ``val/acc1`` unless it names a
            ``monitor``; None keeps the learning rate constant. The paper's MultiStepLR by default. On the
            command line: ``lr_scheduler:``.
        init_from: a checkpoint of this project whose network weights start a fresh fit: a new experiment
            (fine-tuning, another split, another recipe) in a new run, never a resume. Loaded when a fresh
            fit starts, like ``weights``; the network must have the checkpoint's shapes.
    """

    def __init__(
        self,
        backbone: str = "cifar_resnet",
        num_classes: int = 10,
        attention: str | None = "spem",
        pool: str | None = None,
        in_chans: int = 3,
        backbone_kwargs: dict[str, Any] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        pool_alpha: float = 0.1,
        pool_weight_decay: float | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: CompileOption = False,
        optimizer: dict = PAPER_OPTIMIZER,  # plain dict: the form jsonargparse links a class section into
        lr_scheduler: dict | None = PAPER_LR_SCHEDULER,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if pool_alpha < 0:
            raise InputError(f"pool_alpha={pool_alpha} is not allowed; it must be >= 0")
        if pool_weight_decay is not None and pool_weight_decay < 0:
            raise InputError(f"pool_weight_decay={pool_weight_decay} is not allowed; it must be >= 0 or null")
        if not 0.0 <= label_smoothing < 1.0:
            raise InputError(f"label_smoothing={label_smoothing} is not allowed; it must be in [0, 1)")
        self.optimizer_spec = _spec(optimizer)
        self.lr_scheduler_spec = None if lr_scheduler is None else _spec(lr_scheduler)
        compile_kwargs(compile)  # a bad option fails here, not when the Trainer starts
        self.save_hyperparameters()
        kwargs = dict(backbone_kwargs or {})
        self.pretrained = kwargs.pop("weights", None)
        if (
            self.pretrained is not None
        ):  # offline: a name torchvision knows, or a file (needed by a fresh fit)
            check_pretrained(backbone, self.pretrained, must_exist=False)
        if in_chans != 3:
            kwargs["in_chans"] = in_chans
        self.net = create_backbone(
            backbone,
            num_classes=num_classes,
            attention=attention,
            pool=pool,
            attention_kwargs=attention_kwargs,
            **kwargs,
        )
        self.train_metrics = _accuracy_metrics(num_classes, TRAIN)
        self.val_metrics = _accuracy_metrics(num_classes, VAL)
        self.test_metrics = _accuracy_metrics(num_classes, TEST)
        # Best-epoch validation top-1, the number the paper reports. Persistent so that a resumed run
        # keeps the best score of the epochs before the interruption.
        self.val_acc1_best = MaxMetric()
        self.val_acc1_best.persistent(True)
        self._net_prepared = False
        # the regulariser's terms, found once (speed options, devices and DDP keep the same parameters)
        self.pool_params = pooling_parameters(self.net)

    def configure_model(self) -> None:
        """Apply the speed options to the network once, before a strategy (DDP) wraps or moves it."""
        if not self._net_prepared:
            prepare_network(self.net, self.hparams.channels_last, self.hparams.compile)
            self._net_prepared = True

    def forward(self, x: Tensor) -> Tensor:
        begin_compiled_step(self.hparams.compile)
        return self.net(to_memory_format(x, self.hparams.channels_last))

    def losses(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Classification loss, raw pooling regulariser and their total (``loss_cls + alpha * loss_pool``)."""
        loss_cls = F.cross_entropy(logits, target, label_smoothing=self.hparams.label_smoothing)
        loss_pool = pooling_regularization(self.net, self.pool_params)
        return {
            "loss": loss_cls + self.hparams.pool_alpha * loss_pool,
            "loss_cls": loss_cls,
            "loss_pool": loss_pool,
        }

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, target = batch
        logits = self(x)
        losses = self.losses(logits, target)
        # Step values are each rank's own (no all-reduce per step); the epoch means are global under DDP,
        # reduced once at the epoch end.
        train = {metric(TRAIN, k): v.detach() for k, v in losses.items()}
        self.log_dict({f"{k}{STEP}": v for k, v in train.items()}, on_step=True, on_epoch=False)
        epoch = {f"{k}{EPOCH_SUFFIX}": v for k, v in train.items()}
        self.log_dict(epoch, on_step=False, on_epoch=True, sync_dist=True)
        self.train_metrics.update(logits, target)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, prog_bar=True)
        return losses["loss"]

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> None:
        x, target = batch
        logits = self(x)
        loss = F.cross_entropy(logits, target)
        self.log(metric(stage, "loss"), loss, on_epoch=True, sync_dist=True)
        metrics.update(logits, target)
        self.log_dict(metrics, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, VAL, self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, TEST, self.test_metrics)

    def check_pretrained_weights(self) -> None:
        """Before a fresh fit: the pretrained weights file and the ``init_from`` checkpoint, if configured,
        exist, and the checkpoint's network has this network's shapes."""
        if self.pretrained is not None:
            check_pretrained(self.hparams.backbone, self.pretrained)
        init_from = self.hparams.get("init_from")
        if init_from is not None:
            check_checkpoint_fits(load_checkpoint_file(init_from, mmap=True), self, init_from, prefix="net.")

    def on_fit_start(self) -> None:
        """Starting weights, on a fresh fit only (a restored checkpoint already holds the weights): the plain
        backbone's pretrained ones, then a checkpoint's whole network (``init_from``)."""
        if self.trainer.ckpt_path is not None:
            return
        if self.pretrained is not None:
            load_backbone_weights(self.net, self.hparams.backbone, self.pretrained)
        init_from = self.hparams.get("init_from")
        if init_from is not None:
            state = load_checkpoint_file(init_from)["state_dict"]
            self.net.load_state_dict(
                {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint records the run's identity (:mod:`~spe_lightning.training.identity`)."""
        checkpoint[IDENTITY_KEY] = self.identity(dict(self.hparams), self.trainer.datamodule)

    def identity(self, hparams: dict[str, Any], datamodule: Any) -> dict[str, Any]:
        """The experiment ``hparams`` (this classifier's own, or a config's) describe on this network."""
        groups = self.parameter_groups(hparams.get("pool_weight_decay")) or [
            {"params": list(self.parameters())}
        ]
        return experiment_identity(hparams, groups, datamodule)

    def on_train_start(self) -> None:
        # A fresh fit starts a fresh best; a resumed one keeps the restored value.
        if self.trainer.ckpt_path is None:
            self.val_acc1_best.reset()

    def on_validation_epoch_end(self) -> None:
        # Best over the epochs of a fit: neither the sanity check nor a standalone `validate` counts.
        if self.trainer.sanity_checking or self.trainer.state.fn != TrainerFn.FITTING:
            return
        self.val_acc1_best.update(self.val_metrics["acc1"].compute())
        self.log(VAL_ACC1_BEST, self.val_acc1_best.compute(), sync_dist=True, prog_bar=True)

    def predict_step(self, batch: Tensor | tuple[Tensor, Any], batch_idx: int) -> Tensor:
        """Class probabilities; batches are images alone or ``(images, targets or paths)``."""
        x = batch if isinstance(batch, Tensor) else batch[0]
        return self(x).softmax(dim=-1)

    def parameter_groups(self, decay: float | None) -> list[dict[str, Any]] | None:
        """The optimizer's groups: every parameter with the optimizer's weight decay; then, with a weight
        ``decay`` for the learned-mix parameters p (``pool_weight_decay``), p with it; then the parameters
        modules keep out of weight decay (:mod:`~spe_lightning.models.weight_decay`), with none. None (one
        group of all parameters) when neither applies."""
        pool = list(self.pool_params) if decay is not None else []
        undecayed = [p for p in no_decay_parameters(self.net) if all(p is not q for q in pool)]
        if not pool and not undecayed:
            return None
        apart = {id(p) for p in pool + undecayed}
        groups = [{"params": [p for p in self.parameters() if id(p) not in apart]}]
        if pool:
            groups.append({"params": pool, "weight_decay": decay})
        if undecayed:
            groups.append({"params": undecayed, "weight_decay": 0.0})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimizer over :meth:`parameter_groups`, and its scheduler stepped every epoch (logged as
        ``train/lr``); a plateau scheduler watches ``val/acc1`` unless it names its own ``monitor``."""
        optimizer = build_optimizer(
            self.optimizer_spec,
            self.parameter_groups(self.hparams.get("pool_weight_decay")) or self.parameters(),
        )
        if self.lr_scheduler_spec is None:
            return {"optimizer": optimizer}
        scheduler = build_lr_scheduler(self.lr_scheduler_spec, optimizer)
        config = {"scheduler": scheduler, "interval": "epoch", "name": LR}
        if isinstance(scheduler, ReduceLROnPlateau):
            config["monitor"] = self.lr_scheduler_spec.get("init_args", {}).get("monitor", VAL_ACC1)
        return {"optimizer": optimizer, "lr_scheduler": config}
