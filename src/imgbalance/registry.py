"""One registry type for everything chosen by name: balancing methods, losses, class
weights, samplers, online mixing and models.

Each family owns a :class:`Registry` in the module that defines its members, which
register themselves with ``@REGISTRY.register("name")`` (timm's pattern). The family
exposes ``list_*()`` and ``create_*()``; an unknown name raises a :class:`ConfigError`
that lists the valid names (and the closest ones).

Examples
--------
>>> colours = Registry("colour")
>>> @colours.register("red", help="warm")
... def red() -> str:
...     return "#f00"
>>> colours.names()
['red']
>>> colours.get("red")()
'#f00'
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import ConfigError

__all__ = ["Entry", "Registry"]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name and a one-line description."""

    name: str
    obj: T
    help: str


class Registry(Generic[T]):
    """Names mapped to objects (classes or factory functions) of one family."""

    def __init__(self, family: str, hint: str = "", plural: str | None = None) -> None:
        self.family = family
        self.plural = plural or f"{family}s"
        #: where the user can see the valid names, appended to the unknown-name error
        self.hint = hint
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, help: str = "") -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (a name is registered once)."""

        def add(obj: T) -> T:
            self.add(name, obj, help=help)
            return obj

        return add

    def add(self, name: str, obj: T, *, help: str = "") -> None:
        if not name or name in self._entries:
            raise ValueError(f"{self.family} name {name!r} is empty or already registered")
        doc = help or " ".join((getattr(obj, "__doc__", None) or "").split("\n\n")[0].split())
        self._entries[name] = Entry(name, obj, doc)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name lists the valid ones."""
        entry = self._entries.get(name)
        if entry is None:
            raise self.unknown(name)
        return entry.obj

    def unknown(self, name: Any, extra: list[str] | None = None) -> ConfigError:
        """The error for an unknown name (``extra``: valid names outside the registry)."""
        valid = self.names() + list(extra or [])
        close = difflib.get_close_matches(str(name), valid, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        more = f" {self.hint}" if self.hint else ""
        return ConfigError(
            f'Unknown {self.family} "{name}".{hint} Valid {self.plural}: {", ".join(valid)}.{more}'
        )
