"""Quiet runs: the library notices that are not about the user's setup, silenced by message and source.

Each entry names the exact message and the module that emits it, so every other warning, and this one
from anywhere else, still shows. Called once by the command line (:func:`spe_lightning.cli.cli_main`).
"""

from __future__ import annotations

import logging
import re
import warnings

from PIL import Image

WARNINGS = (
    # Lightning's own pytree helper builds a LeafSpec, which torch 2.10+ deprecates: Lightning's to fix.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\."),
    # PIL's decompression-bomb warning: the image is refused by its size with one error line anyway
    (r"Image size \(\d+ pixels\) exceeds limit", Image.DecompressionBombWarning, r"PIL\.Image"),
    # A tool built on the CLI (export) passes the arguments after its own name, by design.
    (
        r"LightningCLI's args parameter is intended to run from within Python",
        UserWarning,
        r"lightning\.pytorch\.cli",
    ),
)
"""(message regex, category, module regex) of each silenced warning."""

LOG_RECORDS = {
    # Advertisements for a cloud model registry and a cloud logger, at every fit.
    "lightning.pytorch.utilities.rank_zero": re.compile(r"💡 Tip: For seamless cloud (uploads|logging)"),
}
"""Logger name -> message pattern of the records dropped from it."""


class _DropMatching(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def quiet_notices() -> None:
    """Install the filters (idempotent: a logger gets its filter once)."""
    for message, category, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, pattern in LOG_RECORDS.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) and f.pattern is pattern for f in log.filters):
            log.addFilter(_DropMatching(pattern))
