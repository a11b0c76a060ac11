"""The report: rows for every run and grid point (pending ones too), groups, figures; read through the one
reader of runs."""

from __future__ import annotations

import csv
import json

from spe_lightning.__main__ import dispatch


def test_the_report_lists_unfinished_and_pending_points(tmp_path, capsys):
    grid = tmp_path / "runs" / "tiny"
    points = [
        {
            "index": i,
            "name": name,
            "values": {"model.attention": "se", "seed_everything": i},
            "root": str(grid / name),
        }
        for i, name in enumerate(("failed", "pending"))
    ]
    (grid / "failed" / "version_0").mkdir(parents=True)  # started, died before its first checkpoint
    (grid / "grid.json").write_text(json.dumps({"points": points}))
    dispatch(["report", str(grid)])
    rows = {row["run"]: row["status"] for row in csv.DictReader((grid / "report" / "runs.csv").open())}
    assert rows == {"failed": "failed", "pending": "pending"}
