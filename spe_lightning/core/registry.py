"""Name -> constructor registries for the pool, attention and backbone factories.

Each entry has one name; an old name may stay as an alias that resolves to it, so configs written with it
keep working while every run, table and log shows the one name. Unknown names and keywords are an
:class:`~spe_lightning.core.errors.InputError` that lists what is allowed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from spe_lightning.core.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` (``"pool"``, ``"attention"``, ``"backbone"``) by name, with aliases."""

    def __init__(self, kind: str, also: str | None = None) -> None:
        self.kind = kind
        self.also = also
        """Names served outside the registry, listed with the known ones (``timm/<model name>``)."""
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator that files a constructor under ``name`` (and resolves each alias to it)."""

        def deco(entry: T) -> T:
            self.add(name, entry, *aliases)
            return entry

        return deco

    def add(self, name: str, entry: T, *aliases: str) -> None:
        self._entries[name] = entry
        self._aliases.update(dict.fromkeys(aliases, name))

    def names(self) -> list[str]:
        """The names, sorted; aliases are not listed (:meth:`aliases`)."""
        return sorted(self._entries)

    def aliases(self) -> dict[str, str]:
        """Alias -> the name it resolves to."""
        return dict(self._aliases)

    def canonical(self, name: str) -> str:
        """The name ``name`` stands for (case-insensitive, aliases resolved); an unknown one is an error."""
        key = name.lower() if isinstance(name, str) else name
        key = self._aliases.get(key, key)
        if key not in self._entries:
            known = ", ".join([*self.names(), *([self.also] if self.also else [])])
            raise InputError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        return key

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        key = name.lower() if isinstance(name, str) else name
        return self._aliases.get(key, key) in self._entries


def build(constructor: Callable[..., T], label: str, *args: Any, **kwargs: Any) -> T:
    """``constructor(*args, **kwargs)``; keywords it does not take are an InputError listing those it does."""
    params = inspect.signature(constructor).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][
            len(args) :
        ]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            takes = ", ".join(accepted) or "no arguments"
            raise InputError(f"{label} does not take {', '.join(unknown)}; it takes: {takes}")
    return constructor(*args, **kwargs)
