"""Stream ``predict`` outputs (class probabilities) into a CSV file, one row per image."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from spe_lightning.runs.layout import run_folder


class CSVPredictionWriter(BasePredictionWriter):
    """Write ``index, file | target, pred, [pred_name,] prob_0 .. prob_{K-1}`` rows as batches finish.

    Rows are written per batch, so memory stays flat on large predict sets. The second column is the
    image path when the batch carries paths (predicting a folder) and the true class otherwise (predicting
    the test split); ``pred_name`` appears when the datamodule knows its class names.

    Args:
        output_path: CSV file to write; None writes ``predictions.csv`` into the run folder
            (:func:`~spe_lightning.runs.layout.run_folder`). Under multi-process predict each rank writes
            ``<stem>.rank<k>.csv``.
    """

    def __init__(self, output_path: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_path = output_path
        self.path: Path | None = None
        """Where the last predict run wrote (resolved in ``on_predict_start``)."""
        self.rows = 0
        """Rows the last predict run wrote."""
        self._file: IO[str] | None = None
        self._writer: Any = None

    def _resolve_path(self, trainer: Trainer) -> Path:
        path = Path(self.output_path or run_folder(trainer) / "predictions.csv")
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.path = self._resolve_path(trainer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self.rows = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Tensor,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        extra = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        column = "file" if extra is not None and isinstance(extra[0], str) else "target"
        classes = getattr(trainer.datamodule, "classes", None) if trainer.datamodule is not None else None
        if self.rows == 0:
            header = ["index", *([column] if extra is not None else []), "pred"]
            header += ["pred_name"] if classes else []
            header += [f"prob_{k}" for k in range(prediction.shape[1])]
            self._writer.writerow(header)
        probs = prediction.float().cpu()
        preds = probs.argmax(dim=1).tolist()
        indices = batch_indices if batch_indices is not None else range(self.rows, self.rows + len(preds))
        for i, (index, pred) in enumerate(zip(indices, preds, strict=True)):
            row: list[Any] = [index]
            if extra is not None:
                row.append(extra[i] if column == "file" else int(extra[i]))
            row.append(pred)
            row += [classes[pred]] if classes else []
            row += [f"{p:.6f}" for p in probs[i].tolist()]
            self._writer.writerow(row)
        self.rows += len(preds)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._file is not None:  # also after an interrupted predict
            self._file.close()
            self._file = None
