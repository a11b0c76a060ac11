"""Name -> constructor lookup shared by the pool, attention and backbone factories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``registry[name]`` or raise a ValueError that lists the known names."""
    key = name.lower() if isinstance(name, str) else name
    if key not in registry:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {name!r}; known {kind}s: {known}")
    return registry[key]


def register(registry: dict[str, Callable], *names: str) -> Callable[[Callable], Callable]:
    """Decorator that files a constructor under one or more names."""

    def deco(fn: Callable) -> Callable:
        for name in names:
            registry[name] = fn
        return fn

    return deco
