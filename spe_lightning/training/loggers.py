"""TensorBoard logging in the project's layout (:mod:`spe_lightning.runs.log_names`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import loggers
from lightning.pytorch.utilities import rank_zero_only

from spe_lightning.runs.log_names import EPOCH


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning's TensorBoardLogger with Lightning's ``epoch`` scalar written as ``train/epoch``, and no
    ``hp_metric`` placeholder by default (the HParams view gets its metric columns from the CLI's config
    callback): so ``train/`` and ``val/`` are the first two tag groups, the ones TensorBoard opens.

    Every argument is Lightning's; only ``default_hp_metric``'s default differs.
    """

    def __init__(
        self,
        save_dir: str | Path,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = False,
        prefix: str = "",
        sub_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(save_dir, name, version, log_graph, default_hp_metric, prefix, sub_dir, **kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if "epoch" in metrics:
            metrics = {(EPOCH if key == "epoch" else key): value for key, value in metrics.items()}
        super().log_metrics(metrics, step)
