"""The checks of plain numbers that every layer makes, each with one message form.

A value is named as the user writes it (``batch_size``, ``trainer.num_nodes``, ``se reduction``), so the
one-line error says which key to change and what it may hold.
"""

from __future__ import annotations

from typing import Any

from spe_lightning.core.errors import InputError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1, allow_none: bool = False, hint: str = "") -> None:
    """Raise :class:`InputError` unless ``value`` is an integer >= ``minimum`` (or None where ``allow_none``):
    ``name=0 is not allowed; it must be a positive integer``."""
    if value is None and allow_none:
        return
    if not _is_int(value) or value < minimum:
        allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        allowed += " or null" if allow_none else ""
        raise InputError(f"{name}={value!r} is not allowed; it must be {allowed}{hint}")


def check_fraction(name: str, value: Any, low_open: bool = False, high_open: bool = True) -> None:
    """Raise :class:`InputError` unless ``value`` is a number in the interval [0, 1] with the given ends
    open: ``[0, 1)`` by default (a share held out of a split)."""
    low, high = ("(" if low_open else "["), (")" if high_open else "]")
    inside = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value > 0 if low_open else value >= 0)
        and (value < 1 if high_open else value <= 1)
    )
    if not inside:
        raise InputError(f"{name}={value!r} is not allowed; it must be in {low}0, 1{high}")
