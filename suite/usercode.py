"""A user's own Python file (a model factory, a dataset), imported on purpose.

Shared by the model zoo and user datasets, and kept apart from both: user datasets are training
code for every run, the zoo only for runs of its models (``suite.store.fingerprint``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from suite.errors import SuiteError


@functools.cache
def _load_module_cached(path: str, mtime_ns: int):
    spec = importlib.util.spec_from_file_location(f"greg_suite_user_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: one line saying where, not our traceback
        raise SuiteError(f"{path} failed to import: {type(e).__name__}: {e}") from None
    return module


def load_module(path: Path):
    """Import a user's Python file once per version of it (a user's own code, run on purpose)."""
    p = path.resolve()
    return _load_module_cached(str(p), p.stat().st_mtime_ns)
