"""The registry of methods: ``@register`` a class, ``get(name)``, ``names(pattern)`` with wildcards.

Every module of the ``methods`` package is imported on first use, so a new method module registers
itself by being there: nothing here lists the modules.
"""
from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import pkgutil
from typing import TYPE_CHECKING

from suite.errors import SuiteError

if TYPE_CHECKING:  # annotations only: importing this module stays cheap (no torch) for the CLI's defaults
    from methods.base import Method

# The methods a comparison runs when none are named (`suite run`, and the pages' lines that would fill
# a setting): the method under study, its successor and the L1-norm criterion the paper compares them with.
DEFAULT_COMPARISON = ("greg1", "greg2", "l1")

_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: adds a Method subclass under its ``name``; a duplicate name is a bug."""
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


@functools.cache
def _load_all() -> None:
    """Import every module of the package (their @register decorators run), once."""
    import methods
    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"{methods.__name__}.{module.name}")


def get(name: str) -> Method:
    """An instance of the named method; an unknown name lists the closest ones."""
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise SuiteError(f"unknown method {name!r}: {hint}known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def names(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern (``nni-*``), sorted."""
    _load_all()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def expand(spec: str) -> list[str]:
    """A comma list of names and patterns -> method names in the given order, each once.

    A pattern matching nothing, or an unknown plain name, is a one-line error.
    """
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(c in part for c in "*?["):
            found = names(part)
            if not found:
                raise SuiteError(f"method pattern {part!r} matches nothing; known: {', '.join(names())}")
        else:
            get(part)
            found = [part]
        out += [n for n in found if n not in out]
    if not out:
        raise SuiteError("no methods given: pass e.g. --methods greg1,greg2,l1")
    return out
