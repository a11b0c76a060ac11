"""Optional packages (timm, shtab, ...): imported where a feature needs them, with one way to say how to
install one that is missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from spe_lightning.core.errors import InputError


def import_optional(name: str, extra: str, needed_by: str) -> ModuleType:
    """Package ``name``, imported; where it is not installed, an :class:`InputError` naming the extra that
    brings it. ``needed_by`` starts the message: ``"timm backbones need"``."""
    if importlib.util.find_spec(name) is None:
        raise InputError(
            f"{needed_by} {name}, which is not installed; install it with: "
            f"pip install 'spe-lightning[{extra}]' (or pip install {name})"
        )
    return importlib.import_module(name)
