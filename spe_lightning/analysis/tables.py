"""Tables of runs, as Markdown (``IPython.display.Markdown`` shows them in a notebook)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from spe_lightning.runs.log_names import VAL_ACC1

if TYPE_CHECKING:
    from spe_lightning.analysis.reader import RunData


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (dicts with the same keys), for ``IPython.display.Markdown``."""
    if not rows:
        raise ValueError("markdown_table needs at least one row")
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def summary_rows(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """One row per run: model, best and last val top-1, and the spread of its final lams."""
    rows = []
    for run in runs:
        _, acc = run.scalar(VAL_ACC1)
        _, lams = run.final_lams()
        rows.append(
            {
                "run": run.label,
                "backbone": run.hparams.get("backbone", "?"),
                f"best {VAL_ACC1}": f"{acc.max():.4f}",
                f"last {VAL_ACC1}": f"{acc[-1]:.4f}",
                "blocks with lam": len(lams),
                "lam min / mean / max": f"{lams.min():.3f} / {lams.mean():.3f} / {lams.max():.3f}"
                if len(lams)
                else "-",
            }
        )
    return rows
