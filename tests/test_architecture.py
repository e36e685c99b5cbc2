"""The shape of the code: no import cycles between modules, a training-code fingerprint that
follows what training imports (``suite.store.fingerprint``) rather than a list kept by hand, and a
suite/ that names no method (what is a method's lives in methods/)."""

import ast
import fnmatch
import graphlib
import shutil
from pathlib import Path

import pytest

from suite.store import fingerprint

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycle(root: Path) -> list[str] | None:
    """One cycle of imports among the modules of suite/ and methods/ under ``root`` (every import
    statement counts, inside functions too), as module names, or None."""
    graph = {}
    for path in sorted(p for pkg in fingerprint.PACKAGES for p in (root / pkg).rglob("*.py")):
        graph[_module_name(path, root)] = {_module_name(q, root) for q in fingerprint.local_imports(path, root)}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return e.args[1]
    return None


def test_no_module_imports_itself_through_others():
    cycle = import_cycle(ROOT)
    assert cycle is None, "import cycle " + " -> ".join(cycle) + ": move what both sides need into a module both import"


def _write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    _write(tmp_path, "suite/__init__.py", "")
    _write(tmp_path, "suite/pkg/__init__.py", '"""A package."""\n')
    _write(
        tmp_path,
        "suite/pkg/a.py",
        "import os\n\nfrom suite.errors import SuiteError\n\ndef f():\n    from suite.pkg import b\n    return b.g\n",
    )
    _write(tmp_path, "suite/pkg/b.py", "from . import c\n")
    _write(tmp_path, "suite/pkg/c.py", "from suite.pkg.a import f\n")
    _write(tmp_path, "suite/errors.py", "class SuiteError(Exception):\n    pass\n")
    assert sorted(import_cycle(tmp_path)[:-1]) == ["suite.pkg.a", "suite.pkg.b", "suite.pkg.c"]
    assert fingerprint.local_imports(tmp_path / "suite/pkg/a.py", tmp_path) == {
        tmp_path / "suite/__init__.py",
        tmp_path / "suite/pkg/__init__.py",
        tmp_path / "suite/pkg/b.py",
        tmp_path / "suite/errors.py",
    }  # os is not ours; `from suite.pkg import b` is the module b
    (tmp_path / "suite/pkg/c.py").write_text("import math\n")
    assert import_cycle(tmp_path) is None
    # an import for annotations only never runs: no cycle, and not followed
    (tmp_path / "suite/pkg/c.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from suite.pkg.a import f\nelse:\n    import suite.errors\n"
    )
    assert import_cycle(tmp_path) is None
    assert fingerprint.local_imports(tmp_path / "suite/pkg/c.py", tmp_path) == {
        tmp_path / "suite/__init__.py",
        tmp_path / "suite/errors.py",
    }


@pytest.fixture
def tree(tmp_path):
    """A copy of the checkout's two packages, to edit."""
    for pkg in fingerprint.PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _training(root: Path) -> str:
    from methods import registry

    return fingerprint.training_code(type(registry.get("greg1")), root=root)


def _overview(root: Path) -> str:
    return fingerprint.code_digest([root / "suite/pages/overview.py"], root)


@pytest.mark.parametrize(
    "digest, importer", [(_training, "suite/training/loop.py"), (_overview, "suite/models/ratios.py")]
)
def test_a_new_helper_counts_once_imported_and_an_unrelated_module_never(tree, digest, importer):
    before = digest(tree)
    assert before == digest(ROOT)  # the same sources give the same digest wherever they lie
    _write(tree, "suite/unrelated.py", "def f():\n    return 1\n")
    _write(tree, "suite/training/helper.py", "def f():\n    return 1\n")
    assert digest(tree) == before  # no training module imports either
    (tree / importer).write_text(
        (tree / importer).read_text()
        + "\n\ndef _uses_helper():\n    from suite.training import helper\n    return helper.f()\n"
    )
    with_import = digest(tree)
    assert with_import != before
    _write(tree, "suite/training/helper.py", '"""Now documented."""\ndef f():\n    return 1  # one\n')
    assert digest(tree) == with_import  # a docstring or a comment is no change
    _write(tree, "suite/training/helper.py", "def f():\n    return 2\n")
    edited = digest(tree)
    assert edited != with_import  # the helper's code is hashed, not just its name
    _write(tree, "suite/unrelated.py", "def f():\n    return 3\n")
    assert digest(tree) == edited


def test_what_cannot_change_a_trained_number_stays_out_of_the_fingerprint():
    entries = [ROOT / p for p in fingerprint.TRAINING_ENTRIES]
    closure = {p.relative_to(ROOT).as_posix() for p in fingerprint.import_closure(entries)}
    assert {
        "suite/training/loop.py",
        "suite/data/split.py",
        "suite/models/layouts.py",
        "suite/models/size.py",
        "methods/base.py",
        "suite/training/schedule.py",
    } <= closure  # the last one through the pipeline
    # the README's promise: the numerics default renames and stales nothing; nor do the CLI, plans (which the
    # pipeline imports for annotations only), pages, timing
    assert not closure & {
        "suite/training/numerics_default.py",
        "suite/cli/commands.py",
        "suite/cli/run.py",
        "suite/cli/options.py",
        "suite/spec/plan.py",
        "suite/measure/latency.py",
        "suite/measure/metrics.py",
        "suite/running/runner.py",
        "suite/models/groups.py",  # the generic layout's: its models' runs only (next test)
        "suite/models/transformers.py",  # its heads and MLPs, imported by the generic layout only
        "suite/models/zoo.py",
    }
    assert not any(p.startswith("suite/pages/") for p in closure)
    greg = fingerprint.import_closure(entries + [ROOT / "methods/greg.py"])
    assert ROOT / "methods/greg.py" in greg and ROOT / "methods/l1.py" not in greg


def test_a_model_familys_code_stales_its_own_runs_and_no_other_familys(tree):
    """The fingerprint of a run is the shared harness, its method and its model family's modules:
    editing the generic layout's tracing (``suite/models/groups.py``) stales the runs of a
    torchvision model, and leaves those of the built-in nets (a publishing campaign) current;
    editing the shared loop stales both."""
    from methods import registry
    from suite.models import zoo
    from suite.spec.settings import get_setting

    l1 = type(registry.get("l1"))
    builtin = get_setting("fmnist-cnn4").model_code
    generic = zoo.code_modules("torchvision:resnet18")
    assert set(builtin) == {"suite.models.nets", "suite.models.layouts"}
    assert set(generic) == {"suite.models.zoo", "suite.models.groups"}

    def codes():
        return [fingerprint.training_code(l1, m, root=tree) for m in (builtin, generic)]

    before = codes()
    assert before[0] != before[1]
    groups = tree / "suite/models/groups.py"
    groups.write_text(groups.read_text() + "\n\ndef _a_new_rule():\n    return 1\n")
    after = codes()
    assert after[0] == before[0] and after[1] != before[1]
    loop = tree / "suite/training/loop.py"
    loop.write_text(loop.read_text() + "\n\ndef _a_new_rule():\n    return 1\n")
    assert all(a != b for a, b in zip(codes(), after))


def test_fingerprints_are_held_within_an_unchanging_code_block_and_never_outside_it(tree):
    """A page render takes the checkout as fixed (``unchanging_code``): a fingerprint asked for twice
    inside it is computed once, so an edit made meanwhile shows only after the block, whose cache
    is gone; without the block every call sees the files as they are."""
    loop = tree / "suite/training/loop.py"
    before = _training(tree)
    with fingerprint.unchanging_code():
        assert _training(tree) == before
        loop.write_text(loop.read_text() + "\n\ndef _a_new_rule():\n    return 1\n")
        with fingerprint.unchanging_code():  # a nested block shares the outer one's
            assert _training(tree) == before
    edited = _training(tree)
    assert edited != before
    loop.write_text(loop.read_text() + "\n\ndef _another_rule():\n    return 2\n")
    assert _training(tree) not in (before, edited)


# Optuna's sampler called "random" (suite search --sampler random) is not the method of that name
NOT_A_METHOD = {("suite/running/search.py", "random"), ("suite/cli/search.py", "random")}


def method_names_in_suite(root: Path, names: set[str]) -> list[tuple[str, int, str]]:
    """String constants of suite/'s code (docstrings aside: prose may speak of a method) that name a
    registered method or are a pattern matching one (``"greg*"``), as (file, line, text)."""
    found = []
    for path in sorted((root / "suite").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docstrings:
                continue
            text = node.value
            pattern = any(c in text for c in "*?[") and any(c.isalpha() for c in text)
            if (text in names or (pattern and any(fnmatch.fnmatchcase(n, text) for n in names))) and (
                rel,
                text,
            ) not in NOT_A_METHOD:
                found.append((rel, node.lineno, text))
    return found


def test_suite_names_no_method(tmp_path):
    """The settings took GReg's schedules as ``{"greg*": ...}`` literals; they name a budget now
    (``methods/schedules.py``). A module of suite/ that names a method again is found."""
    from methods import registry

    names = set(registry.names())
    assert method_names_in_suite(ROOT, names) == []
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "bad.py").write_text('"""Prose may say greg1."""\nOVERRIDES = {"greg*": {"x": 1}}\n')
    assert method_names_in_suite(tmp_path, names) == [("suite/bad.py", 2, "greg*")]
