"""Import names of modules that moved when the package was laid out by role, for earlier runs' files.

A run's ``config.yaml`` names classes by import path (``spe_lightning.loggers.TensorBoardLogger``,
``spe_lightning.checkpoint_io.SafeCheckpointIO``); a config written before the move, passed as ``--config``
again, finds each class at its new place through this mapping. New files name the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

MOVED = {
    "spe_lightning.loggers": "spe_lightning.training.loggers",
    "spe_lightning.checkpoint_io": "spe_lightning.runs.checkpoints",
    "spe_lightning.callbacks": "spe_lightning.training.callbacks",
    "spe_lightning.classifier": "spe_lightning.training.classifier",
}
"""Old module name -> the module that now holds its classes."""


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds each old name of :data:`MOVED` as its new module (the same module object)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def map_moved_modules() -> None:
    """Install the mapping (once)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
