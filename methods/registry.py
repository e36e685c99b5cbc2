"""The registry of methods: ``@register`` a class, ``get(name)``, ``names(pattern)`` with wildcards.

One :class:`suite.registry.Registry` (``METHODS``) holds them; the functions below are its names
for the rest of the code. Every module of the ``methods`` package is imported on first use, so a
new method module registers itself by being there: nothing here lists the modules.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from suite.errors import SuiteError
from suite.registry import Registry

if TYPE_CHECKING:  # annotations only: importing this module stays cheap (no torch) for the CLI's defaults
    from methods.base import Method

# The methods a comparison runs when none are named (`suite run`, and the pages' lines that would fill
# a setting): the method under study, its successor and the L1-norm criterion the paper compares them with.
DEFAULT_COMPARISON = ("greg1", "greg2", "l1")


def _load_all() -> None:
    """Import every module of the package (their @register decorators run)."""
    import methods

    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"{methods.__name__}.{module.name}")


METHODS: Registry[type[Method]] = Registry("method", loader=_load_all)

# Class decorator: adds a Method subclass under its ``name``; a duplicate name is a bug.
register = METHODS.register
# Registered names matching a shell-style pattern (``nni-*``), sorted.
names = METHODS.names


def get(name: str) -> Method:
    """An instance of the named method; an unknown name lists the closest ones."""
    return METHODS.get(name)()


def expand(spec: str) -> list[str]:
    """A comma list of names and patterns -> method names in the given order, each once.

    A pattern matching nothing, or an unknown plain name, is a one-line error.
    """
    if not any(p.strip() for p in spec.split(",")):
        raise SuiteError("no methods given: pass e.g. --methods greg1,greg2,l1")
    return METHODS.expand(spec)
