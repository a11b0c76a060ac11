"""``python -m spe_lightning summary``: parameters and FLOPs of each attention on one backbone."""

from __future__ import annotations

import pytest

from spe_lightning.__main__ import dispatch


def test_summary_counts_params_and_flops_with_units(capsys):
    rows = dispatch(["summary", "--attentions", "[none, se, spem]", "--depth", "20", "--block", "basic"])
    out = capsys.readouterr().out
    assert "2 x multiply-accumulates" in out and "MFLOPs" in out
    assert [r.attention for r in rows] == ["none", "se", "spem"]
    assert rows[1].flops > rows[0].flops == rows[2].flops  # SE's 1x1 convs; SPEM's maths is elementwise
    assert rows[2].params - rows[0].params == sum(4 * c + 2 for c in [16] * 3 + [32] * 3 + [64] * 3)


def test_summary_bad_input_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        dispatch(["summary", "--attentions", "[]"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert err.strip() == "error: attentions=[] is not allowed; name at least one (e.g. '[none, spem]')"


def test_summary_sizes_any_backbone_from_its_kwargs(capsys):
    rows = dispatch(
        [
            "summary",
            "--backbone=cifar_wrn",
            "--backbone_kwargs={depth: 16, widen_factor: 8}",
            "--attentions=[none]",
        ]
    )
    assert rows[0].params == 10_961_370  # WRN-16-8, "11.0M"
    assert "cifar_wrn (depth 16, widen_factor 8, 10 classes)" in capsys.readouterr().out
