"""Fixtures every test folder shares: tiny CIFAR archives in the real on-disk format, no network.

Nothing here imports Lightning at load time: Lightning keeps its log records to itself (``propagate=False``)
when it is imported before pytest's log capture is set up, and tests read those records with ``caplog``.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
from torchvision.datasets import CIFAR10, CIFAR100

from spe_lightning.kernels.cpu_max_min import cpu_max_min


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every torchvision download fail at once, as it does on a machine without network."""

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(f"network disabled in tests ({url})")

    monkeypatch.setattr("torchvision.datasets.utils._urlretrieve", refuse)
    monkeypatch.setattr("torchvision.datasets.utils._get_redirect_url", lambda url, max_hops=3: url)


@pytest.fixture
def cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None):
    """A fake ``cifar-10-python.tar.gz`` (40 train, 8 test images) in ``tmp_path/data``, not extracted."""
    from helpers.data import write_cifar

    return write_cifar(tmp_path / "data", CIFAR10, monkeypatch)


@pytest.fixture
def cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None):
    """A fake ``cifar-100-python.tar.gz`` (8 train, 8 test images) in ``tmp_path/data``, not extracted."""
    from helpers.data import write_cifar

    return write_cifar(tmp_path / "data", CIFAR100, monkeypatch)


@pytest.fixture
def fresh_switch():
    """Re-read SPE_LIGHTNING_CPU_KERNEL in the test, and leave the process's choice as it was after."""
    cpu_max_min.cache_clear()
    yield
    cpu_max_min.cache_clear()
