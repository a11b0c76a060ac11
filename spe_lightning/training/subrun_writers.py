"""Writing one TensorBoard run and its sub-runs: scalars with stored descriptions, lines per sub-run.

TensorBoard colours lines by run, so a chart with one line per block needs one run per block: a
sub-folder with its own event file (as ``SummaryWriter.add_scalars`` makes). This module owns those
writers for one run folder, creates them on first use with the run's purge step (a resumed run drops
what the interrupted one logged after its checkpoint in every sub-run too) and closes them.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import scalar
from torch.utils.tensorboard.writer import FileWriter

from spe_lightning.runs.log_names import description


class RunWriters:
    """The writers of one TensorBoard run folder: the logger's own and its sub-runs (``blocks/3``).

    Args:
        logger: the run's logger; its writer gets the run's own scalars.
        purge_step: step from which a resumed run rewrites history (None for a fresh run).
    """

    def __init__(self, logger: TensorBoardLogger, purge_step: int | None) -> None:
        self.logger = logger
        self.folder = Path(logger.log_dir)
        self.purge_step = purge_step
        self.subruns: dict[str, SummaryWriter] = {}
        self.described: set[tuple[str, str]] = set()

    def scalars(self, values: dict[str, float], step: int, subrun: str = "") -> None:
        """Write ``values`` (tag -> value) as one event of the run (``subrun=""``) or of a sub-run.

        A tag's first summary in each run carries its description: TensorBoard reads it from there.
        """
        if not values:
            return
        summary = Summary()
        for tag, value in values.items():
            one = scalar(tag, float(value), new_style=True)  # a tensor summary: it keeps a description
            if (subrun, tag) not in self.described:
                one.value[0].metadata.summary_description = description(tag)
                self.described.add((subrun, tag))
            summary.value.extend(one.value)
        self.writer(subrun).add_summary(summary, step)

    def image(self, tag: str, png: bytes, size: tuple[int, int], step: int) -> None:
        """An already encoded PNG (``size`` = width, height) as the run's image ``tag``: the caller renders a
        figure once for TensorBoard and its file (``add_figure`` would render it again)."""
        width, height = size
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        self.writer("").add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def writer(self, subrun: str) -> FileWriter:
        if not subrun:
            return self.logger.experiment.file_writer
        if subrun not in self.subruns:
            self.subruns[subrun] = SummaryWriter(str(self.folder / subrun), purge_step=self.purge_step)
        return self.subruns[subrun].file_writer

    def close(self) -> None:
        for writer in self.subruns.values():
            writer.close()
        self.subruns.clear()
