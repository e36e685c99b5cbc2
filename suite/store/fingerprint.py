"""The training-code fingerprint: a hash of the source that can change a trained number.

A stored run is named by what defines it (its identity, ``suite.spec.plan``), and records beside it the
fingerprint of the code that trained it. When that code changes, the stored run is *stale*: it is
still found (nothing is recomputed behind the user's back, and nothing is lost), the leaderboard
never averages it with runs of other code, and ``suite run --recompute-stale`` trains it again.

What counts: data order and augmentation (and user data, ``suite.data.userdata``), models (and the model
registry, ``suite.models.zoo``), the training loop and evaluation (and their precision and layout,
``suite.training.numerics``), the surgery, ratio resolution (and the groups of coupled channels,
``suite.models.groups``), the method interface and the method's own module (with the shared selection
criteria). What does not: the CLI, planning, the store, pages, templates, latency timing - they
cannot change a trained weight. The hash is taken over each module's syntax tree with docstrings
removed, so editing a comment or a docstring does not make every published run stale.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Modules of the harness that can change a trained number (paths relative to the checkout).
TRAINING_CODE = ("suite/data/datasets.py", "suite/models/nets.py", "suite/training/loop.py", "suite/training/numerics.py", "suite/models/surgery.py",
                 "suite/models/ratios.py", "suite/models/zoo.py", "suite/models/groups.py", "suite/data/userdata.py", "suite/data/streaming.py",
                 "methods/base.py", "methods/criteria.py")


@functools.lru_cache(maxsize=None)
def module_digest(path: Path) -> str:
    """SHA-256 of a Python file's syntax tree without docstrings (comments are not in the tree)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def training_code(method_cls: type | None = None) -> str:
    """16 hex digits over the harness's training modules and, given a method class, its module."""
    paths = [ROOT / p for p in TRAINING_CODE if (ROOT / p).exists()]
    if method_cls is not None:
        paths.append(Path(sys.modules[method_cls.__module__].__file__).resolve())
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        h.update(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p.name}:{module_digest(p)}\n".encode())
    return h.hexdigest()[:16]
