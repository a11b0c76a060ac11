"""Name -> constructor lookup shared by the pool, attention and backbone factories."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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


def build(constructor: Callable[..., T], label: str, *args: Any, **kwargs: Any) -> T:
    """``constructor(*args, **kwargs)``; keywords it does not take are a ValueError listing those it does."""
    params = inspect.signature(constructor).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][
            len(args) :
        ]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            takes = ", ".join(accepted) or "no arguments"
            raise ValueError(f"{label} does not take {', '.join(unknown)}; it takes: {takes}")
    return constructor(*args, **kwargs)
