"""One registry pattern for every plug-in: methods, models, datasets and executors.

A plug-in is a class or function registered under a name with a decorator
(``@METHODS.register`` / ``@EXECUTORS.register("ray")``); a registry lists its names with a
shell-style pattern (``nni-*``), expands a comma list of names and patterns, and refuses an
unknown name in one line that offers the closest ones. Each registry may load its plug-ins
lazily (``loader``: e.g. import every module of a package) the first time it is asked.

Written here rather than taken from a library: the few plug-in libraries (entry points, pluggy)
register across installed packages, not within one, and none gives the one-line "did you mean"
errors and glob listing the CLI is built on. May import: suite.errors only.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from suite.errors import SuiteError

T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins of one kind (``kind`` names them in errors: "method", "model", ...)."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind, self._loader, self._items = kind, loader, {}
        self._loaded = loader is None

    def register(self, name_or_item=None):
        """``@reg.register`` (the item's ``name`` attribute) or ``@reg.register("name")``; a name
        registered twice is a bug, raised at import."""

        def add(item, name):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = item
            return item

        if isinstance(name_or_item, str):
            return lambda item: add(item, name_or_item)
        return add(name_or_item, name_or_item.name)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._loader()

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """The registered item; an unknown name is a one-line error naming the closest ones."""
        self._load()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise SuiteError(f"unknown {self.kind} {name!r}: {hint}known: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        self._load()
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def expand(self, spec: str) -> list[str]:
        """A comma list of names and patterns -> names in the given order, each once; a pattern
        matching nothing or an unknown plain name is a one-line error."""
        out: list[str] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if any(c in part for c in "*?["):
                found = self.names(part)
                if not found:
                    raise SuiteError(f"{self.kind} pattern {part!r} matches nothing; known: {', '.join(self.names())}")
            else:
                self.get(part)
                found = [part]
            out += [n for n in found if n not in out]
        if not out:
            raise SuiteError(f"no {self.kind} named in {spec!r}; known: {', '.join(self.names())}")
        return out
