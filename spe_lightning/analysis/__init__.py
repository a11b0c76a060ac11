"""Reading finished runs and drawing them: used by the report, the notebooks and the pooling monitor.

- :mod:`.reader`: the one reader of runs (scalars, sub-runs, config, result, status);
- :mod:`.figures`: lam against depth and over training, training curves (matplotlib, no pyplot);
- :mod:`.tables`: Markdown tables of runs.
"""

from spe_lightning.analysis.figures import (
    figure_png,
    lam_figure,
    plot_final_lam,
    plot_lam_over_steps,
    plot_over_steps,
    plot_training_curves,
    save_figure,
)
from spe_lightning.analysis.reader import RunData, latest_run, read_run, read_runs, read_scalars
from spe_lightning.analysis.tables import markdown_table, summary_rows

__all__ = [
    "RunData",
    "figure_png",
    "lam_figure",
    "latest_run",
    "markdown_table",
    "plot_final_lam",
    "plot_lam_over_steps",
    "plot_over_steps",
    "plot_training_curves",
    "read_run",
    "read_runs",
    "read_scalars",
    "save_figure",
    "summary_rows",
]
