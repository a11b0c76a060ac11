"""Every name a run logs, in one place: the metrics (``train/``, ``val/``, ``test/``), the pooling
diagnostics (``watch/``) and their TensorBoard layout (tags and sub-runs).

Metrics are ``<stage>/<name>``: the losses per step and per epoch (``train/loss_step``,
``train/loss_epoch``), top-1 and top-5 accuracy per stage (``val/acc1``), the evaluation loss
(``val/loss``) and the best validation top-1 of a fit (``val/acc1_best``, the paper's number).

TensorBoard's Time Series sorts tag groups (a tag's first ``/`` component) by character code and opens
the first two, so the layout puts ``train/`` and ``val/`` first and every pooling diagnostic under
``watch/``, which sorts after them. What grows with depth is never a card of its own:

- **Per-block series are lines, not cards.** A block's values go to a sub-run named after its position
  in its stage (``<run>/blocks/<i>``), under one tag per stage (``watch/lam/layer1``): one chart holds
  every block of a stage, each block in its own colour, and block ``i`` has the same colour in every
  stage. Two reference sub-runs (``<run>/reference/...``) hold the constant lines lam = 1 (max pooling
  only) and lam = 0 (min pooling only), which pin a mix weight's chart to the 0-1 axis.
- **Per-stage summaries** (``watch/lam_mean/layer1``, ``_min``, ``_max``) stay in the run itself: they
  are also what the HParams view reports as each stage's final lam.

At the default settings a run writes 14 scalar cards for training and validation plus 8 per stage with
SPEM, at any depth (38 for a CIFAR ResNet of any depth), and 5 histogram cards per stage.
"""

from __future__ import annotations

from pathlib import Path

TRAIN, VAL, TEST = "train", "val", "test"
LOSSES = ("loss", "loss_cls", "loss_pool")
"""The training loss, its classification part and the raw pooling regulariser (``loss = loss_cls + alpha *
loss_pool``)."""
ACCURACIES = ("acc1", "acc5")
ACCURACY_K = {"acc1": 1, "acc5": 5}
"""Top-k of each accuracy (k at most the number of classes)."""
STEP, EPOCH_SUFFIX = "_step", "_epoch"
"""Suffixes of a training loss logged at every step (each rank's own) and as the epoch's mean (all ranks)."""


def metric(stage: str, name: str) -> str:
    """``("val", "acc1")`` -> ``val/acc1``."""
    return f"{stage}/{name}"


VAL_ACC1 = metric(VAL, "acc1")
"""What selects the best checkpoint, and the paper's metric."""
VAL_ACC1_BEST = metric(VAL, "acc1_best")
VAL_LOSS = metric(VAL, "loss")
TRAIN_LOSS_STEP = metric(TRAIN, "loss" + STEP)
TRAIN_IMG_PER_S = metric(TRAIN, "img_per_s")
"""Images per second of training, all ranks, over an epoch's steady-state batches."""
TEST_ACC1 = metric(TEST, "acc1")


def monitorable_metrics() -> list[str]:
    """Every metric a callback or scheduler can monitor: what the classifier logs, as Lightning keys it."""
    losses = [metric(TRAIN, f"{name}{suffix}") for name in LOSSES for suffix in (STEP, EPOCH_SUFFIX)]
    accuracies = [metric(TRAIN, name) for name in ACCURACIES]
    evaluated = [metric(stage, name) for stage in (VAL, TEST) for name in ("loss", *ACCURACIES)]
    return sorted([*losses, *accuracies, *evaluated, VAL_ACC1_BEST, TRAIN_IMG_PER_S])


WATCH = "watch"
"""Namespace of the pooling diagnostics; sorts after ``train`` and ``val``."""
BLOCK_RUNS = "blocks"
"""Folder, inside a run, of its per-block sub-runs ``blocks/<position in stage>``."""
REFERENCE_RUNS = "reference"
"""Folder, inside a run, of the constant reference lines of mix-weight charts."""
REFERENCES = {"max_only": 1.0, "min_only": 0.0}
"""Reference line -> its constant value: lam = 1 is max pooling alone, lam = 0 min pooling alone."""
SUBRUN_FOLDERS = (BLOCK_RUNS, REFERENCE_RUNS)
SUMMARY_STATS = ("mean", "min", "max")
MIX_WEIGHTS = ("lam", "mixed_a")
"""Logged values that are weights of a mix, in [0, 1] (1: max pooling alone): their charts get the reference
lines, and their stage summaries the count of blocks above one half."""
ABOVE_HALF = "above_half"
"""The stage summary of a mix weight that counts its blocks above 0.5 (led by max pooling): with min and
max it shows whether a stage's blocks split between the two pools, which their mean hides."""
LAM = "lam"
LR = metric(TRAIN, "lr")
"""The learning rate (Lightning's LearningRateMonitor would call it ``lr-SGD``, sorting before train)."""
EPOCH = metric(TRAIN, "epoch")
"""Lightning's ``epoch`` scalar, moved into ``train/`` by our
:class:`~spe_lightning.training.loggers.TensorBoardLogger`."""
LAM_OVERVIEW = f"{WATCH}/lam_overview"
LAM_VIEW = f"?smoothing=0&tagFilter={WATCH}%2Flam%2F#timeseries"
"""TensorBoard's Time Series filtered to the lam charts, unsmoothed (lam swings: averaging hides it)."""


TENSORBOARD_FLAGS = "--samples_per_plugin images=1000"
"""TensorBoard keeps 10 images per tag unless told: this keeps the lam figure of each of up to 1000 epochs.
Not ``images=0``: the event reader takes 0 as "all", but TensorBoard's server (2.21) then serves none."""


def tensorboard_hint(logdir: str | Path, port: int = 6006) -> str:
    """The command that serves a run's folder, and the address of its lam view."""
    return (
        f"watch lam: tensorboard --logdir {logdir} {TENSORBOARD_FLAGS}, then open "
        f"http://localhost:{port}/{LAM_VIEW}"
    )


DESCRIPTIONS = {
    LAM: "lam = p0^2 / (p0^2 + p1^2), the weight of global max pooling in SPEM's mix "
    "lam * max + (1 - lam) * min (1: max pooling only, 0: min pooling only).",
    "p_norm": "|p|, the length of the learned-mix parameters. lam depends on p's direction only; the "
    "regulariser alpha * |p|^2 and weight decay shrink |p|, and a step of the classification "
    "gradient moves lam by about lr * 4 lam (1 - lam) / |p|^2 times dL/dlam: small |p|, fast swings.",
    "lam_grad": "dL_cls/dlam, the classification loss's gradient on lam at a logging step (the "
    "regulariser and weight decay act on |p| only and have none). Exactly 0 while SPEM's reweight "
    "weights are 0, as at initialisation.",
    "gate_mean": "Mean channel gate of the block on a fixed batch of validation images (eval mode).",
    "gate_std": "Standard deviation of the block's channel gates on the fixed validation batch.",
    "gem_p": "GeM's learned exponent p (1: average pooling; large: max pooling).",
    "lse_r": "Log-sum-exp pooling's learned sharpness r (small: average; large: max pooling).",
    "mixed_a": "Weight of max pooling in the mixed pool a * max + (1 - a) * avg.",
}
"""What each diagnostic is, stored with its first summary (TensorBoard shows it beside the chart)."""


def stage_of(block: str) -> str:
    """``layer1.0`` -> ``layer1``: the stage is the block's parent module (a lone block is its own)."""
    return block.rpartition(".")[0] or block


def position_of(block: str) -> str:
    """``layer1.10`` -> ``10``: the block's name inside its stage, which names its sub-run."""
    return block.rpartition(".")[2]


def stage_tag(key: str, stage: str) -> str:
    """``("lam", "layer1")`` -> ``watch/lam/layer1``: the chart of a stage's blocks (one sub-run each)."""
    return f"{WATCH}/{key}/{stage}"


def summary_tag(key: str, stat: str, stage: str) -> str:
    """``("lam", "mean", "layer1")`` -> ``watch/lam_mean/layer1``."""
    return f"{WATCH}/{key}_{stat}/{stage}"


def is_summary(tag: str, stat: str) -> bool:
    """Whether ``tag`` is a stage summary (:func:`summary_tag`) of kind ``stat``, of whatever value."""
    parts = tag.split("/")
    return len(parts) == 3 and parts[0] == WATCH and parts[1].endswith(f"_{stat}")


def block_tag(key: str, block: str) -> str:
    """``("lam", "layer1.0")`` -> ``watch/lam/layer1/0``: a block's own tag, where a logger has no sub-runs
    (CSV) and for per-block histograms."""
    return f"{WATCH}/{key}/{block.replace('.', '/')}"


def block_run(block: str) -> str:
    """The sub-run folder (relative to the run) holding ``block``'s lines: ``blocks/<position>``."""
    return f"{BLOCK_RUNS}/{position_of(block)}"


def reference_runs(widest_stage: int) -> dict[str, float]:
    """Reference sub-runs (``reference/max_only_0``, ...) -> value, enough to pin a chart of
    ``widest_stage`` lines to 0-1.

    TensorBoard scales a chart to its values' 5 %-95 % quantiles by default ("ignore outliers"), so each
    reference value must be more than 5 % of the chart's points: ``r / (n + 2 r) > 0.05`` for ``n`` blocks,
    i.e. ``r = n // 18 + 1`` copies of each (1 for the quickstart's 2 blocks, 2 for ResNet-164's 18).
    """
    copies = widest_stage // 18 + 1
    return {
        f"{REFERENCE_RUNS}/{name}_{k}": value for name, value in REFERENCES.items() for k in range(copies)
    }


def description(tag: str) -> str:
    """The stored description of a ``watch/`` tag: its key's, with the statistic for a stage summary and
    the sub-runs for a stage chart."""
    parts = tag.split("/")
    key = parts[1] if len(parts) > 1 and parts[0] == WATCH else ""
    for stat in (*SUMMARY_STATS, ABOVE_HALF):
        base = key.removesuffix(f"_{stat}")
        if base != key and base in DESCRIPTIONS:
            what = (
                "number of the stage's blocks above 0.5"
                if stat == ABOVE_HALF
                else f"{stat} over the stage's blocks"
            )
            return f"The {what} of {DESCRIPTIONS[base]}"
    if key not in DESCRIPTIONS:
        return ""
    lines = (
        f" One line per block: sub-run {BLOCK_RUNS}/<i> is block i of the stage." if len(parts) == 3 else ""
    )
    return DESCRIPTIONS[key] + lines
