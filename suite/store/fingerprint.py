"""The training-code fingerprint: a hash of the source that can change a trained number.

A stored run is named by what defines it (its identity, ``suite.spec.plan``), and records beside it the
fingerprint of the code that trained it. When that code changes, the stored run is *stale*: it is
still found (nothing is recomputed behind the user's back, and nothing is lost), the leaderboard
never averages it with runs of other code, and ``suite run --recompute-stale`` trains it again.

What counts is found, not listed: from the modules a training pass enters (``TRAINING_ENTRIES``: the
data modules, the built-in nets and the paper's layouts, the training loop, the surgery, ratio
resolution, the method interface, and the pipeline of a job's phases, which leads into their
schedules), the method's own module and the modules of the run's model family (the module that
builds the model and the one that defines its layout: ``suite.models.zoo.code_modules``), every
module of ``suite`` and ``methods`` they import, at module level or inside a function, followed
transitively. The pipeline reaches a family's code only through the layout object, so a change
made for one family (torchvision's models, transformers) leaves another family's runs current: a
publishing campaign on the built-in nets survives work on other models. So a helper the loop starts to import
counts from that edit on, and a module no training pass imports (the CLI, planning, pages,
templates, latency timing) does not. Not followed: imports for annotations only (``if
TYPE_CHECKING:``, which never run: the pipeline names planning's ``Job`` that way), and imports made
by name at run time (``importlib``: the registry loading every method module), which is why the
method's own module is named explicitly. The hash is taken over each module's syntax tree with
docstrings removed, so editing a comment or a docstring does not make every published run stale.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import functools
import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("suite", "methods")  # the code whose imports are followed; anything else is a dependency
# Where a training pass enters the harness (relative to the checkout); what they import follows.
TRAINING_ENTRIES = (
    "suite/data/datasets.py",
    "suite/data/userdata.py",
    "suite/data/streaming.py",
    "suite/models/nets.py",
    "suite/training/loop.py",
    "suite/models/surgery.py",
    "suite/models/ratios.py",
    "methods/base.py",
    "suite/running/pipeline.py",
)


# Parsing is what costs, so the two caches below are keyed on a file's text: an edited file is parsed
# again within the same process, an unchanged one is not.
@functools.cache
def _digest(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def module_digest(path: Path) -> str:
    """SHA-256 of a Python file's syntax tree without docstrings (comments are not in the tree)."""
    return _digest(path.read_text())


def _type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): a block that never runs."""
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(node: ast.AST):
    """Every node that can run: all of them but the bodies of ``if TYPE_CHECKING:`` blocks."""
    yield node
    for child in ast.iter_child_nodes(node):
        if _type_checking(child):
            for other in child.orelse:
                yield from _runtime_nodes(other)
        else:
            yield from _runtime_nodes(child)


@functools.cache
def _imported_names(source: str, package: tuple[str, ...]) -> tuple[str, ...]:
    """Every dotted name an import statement anywhere in the source may load (``from a import b``:
    ``a`` and ``a.b``, since ``b`` may be a module), relative imports made absolute from ``package``.
    Imports for annotations only (``if TYPE_CHECKING:``) never run, so they are not counted."""
    names = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(
                [*package[: len(package) + 1 - node.level], node.module or ""] if node.level else [node.module or ""]
            ).strip(".")
            names += [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]
    return tuple(names)


def module_path(name: str, root: Path = ROOT) -> Path | None:
    """The file of a dotted module name of ``suite`` or ``methods`` under ``root`` (a package: its
    ``__init__.py``), or None (another package, or a name that is not a module: a function)."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = root.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def local_imports(path: Path, root: Path = ROOT) -> set[Path]:
    """The files of ``suite`` and ``methods`` under ``root`` that a module imports, wherever the import
    statement stands (module level, a function, a branch); importing ``a.b.c`` runs ``a`` and ``a.b``
    too, so their ``__init__.py`` count."""
    rel = path.relative_to(root).with_suffix("").parts if path.is_relative_to(root) else ()
    package = rel[:-1]  # a package's __init__ is named by its folder, and resolves from it
    out = set()
    for name in _imported_names(path.read_text(), package):
        parts = name.split(".")
        out.update(p for p in (module_path(".".join(parts[:i]), root) for i in range(1, len(parts) + 1)) if p)
    out.discard(path)
    return out


def import_closure(entries: Iterable[Path], root: Path = ROOT) -> list[Path]:
    """``entries`` and every module of ``suite``/``methods`` they import, transitively, sorted."""
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += local_imports(path, root) - seen
    return sorted(seen)


def code_digest(entries: Iterable[Path], root: Path = ROOT) -> str:
    """16 hex digits over the docstring-free syntax trees of ``entries`` and all they import."""
    h = hashlib.sha256()
    for p in import_closure(entries, root):
        h.update(
            f"{p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name}:{module_digest(p)}\n".encode()
        )
    return h.hexdigest()[:16]


# A page render asks for today's fingerprint of each stored run's method and family about 250 times
# over (every table that marks current runs), and each answer walks the same import closure again:
# 9 of a 26 s render of the published store. Within ``unchanging_code()`` the files are taken as
# fixed and each fingerprint is computed once; outside it nothing is kept, so a process that outlives
# an edit (a test writing modules, a long campaign) always hashes the files as they are now.
_held: contextvars.ContextVar[dict | None] = contextvars.ContextVar("fingerprints_held", default=None)


@contextlib.contextmanager
def unchanging_code():
    """A block (a page render) during which the code on disk does not change: each training-code
    fingerprint asked for inside it is computed once."""
    token = _held.set({} if _held.get() is None else _held.get())
    try:
        yield
    finally:
        _held.reset(token)


def training_code(method_cls: type | None = None, model_modules: Iterable[str] = (), root: Path = ROOT) -> str:
    """The fingerprint of the harness's training modules and, given a method class, its module, and
    given the dotted names of the run's model-family modules, theirs (names outside ``suite`` and
    ``methods``, e.g. a user's model file, are not code of the suite: their source is hashed into
    the run's identity instead)."""
    held, key = _held.get(), (method_cls, tuple(model_modules), root)
    if held is not None and key in held:
        return held[key]
    entries = [root / p for p in TRAINING_ENTRIES]
    if method_cls is not None:
        own = module_path(method_cls.__module__, root)
        entries.append(own or Path(sys.modules[method_cls.__module__].__file__).resolve())
    entries += [p for p in (module_path(m, root) for m in model_modules) if p is not None]
    digest = code_digest(entries, root)
    if held is not None:
        held[key] = digest
    return digest
