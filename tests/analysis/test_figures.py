"""The lam figure the monitor logs: landscape for TensorBoard's image card, its stages named legibly."""

from __future__ import annotations

import numpy as np
import pytest

from spe_lightning.analysis.figures import CARD_BOX, lam_figure


def stage_labels(blocks: list[str]) -> tuple[list[str], str]:
    fig = lam_figure(blocks, [0, 1], np.full((2, len(blocks)), 0.5))
    ax = fig.axes[0]
    width, height = fig.get_size_inches() * fig.dpi
    assert width / height == pytest.approx(CARD_BOX[0] / CARD_BOX[1], rel=0.01)
    assert ax.get_images()[0].get_array().shape == (2, len(blocks))
    return [tick.get_text() for tick in ax.get_xticklabels()], ax.get_xlabel()


def test_stages_are_named_whole_where_they_fit_and_by_what_differs_where_they_do_not():
    # ResNet-164: three stages of 18 blocks
    assert stage_labels([f"layer{s}.{i}" for s in (1, 2, 3) for i in range(18)]) == (
        ["layer1", "layer2", "layer3"],
        "",
    )
    # a timm network: stages of one to three blocks, too narrow for "blocks.0"
    narrow = [f"blocks.{s}.{i}" for s, n in enumerate([1, 2, 3, 2, 3]) for i in range(n)]
    assert stage_labels(narrow) == (["0", "1", "2", "3", "4"], "blocks")
    # eleven one-block stages: "blocks.1" and "blocks.10" share characters, not a name
    assert stage_labels([f"blocks.{s}.0" for s in range(11)]) == ([str(s) for s in range(11)], "blocks")
    many = [f"layer{s}.{i}" for s in range(1, 13) for i in range(2)]
    assert stage_labels(many) == ([str(s) for s in range(1, 13)], "layer")
