"""A small generic registry: ``@REG.register("name")``, ``REG.get(name)`` with close-match hints."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from densecnn.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (models, backbones, sinks...). Names are case-insensitive."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        key = name.lower()
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorator(entry: T) -> T:
            return self.add(name, entry)

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name.lower()]
        except KeyError:
            close = difflib.get_close_matches(name.lower(), self._entries, n=3, cutoff=0.5)
            hint = f"Did you mean: {', '.join(close)}?" if close else f"Known: {', '.join(self.names())}."
            raise UsageError(f"Unknown {self.kind} {name!r}.", hint=hint) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, pattern: str = "*") -> list[str]:
        return [n for n in self._entries if fnmatch.fnmatch(n, pattern.lower())]

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())
