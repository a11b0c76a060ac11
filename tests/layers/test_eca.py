"""ECA's adaptive kernel size, computed from the channels as the paper describes."""

from __future__ import annotations

import pytest

from spe_lightning.layers import create_attention, eca_kernel_size


@pytest.mark.parametrize(
    ("channels", "kernel"), [(16, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_eca_kernel_size_is_computed_from_channels(channels, kernel):
    assert eca_kernel_size(channels) == kernel
    assert create_attention("eca", channels).conv.kernel_size == (kernel,)
