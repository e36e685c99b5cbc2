"""Run folders named by content hash, atomic writes, and a lock per job.

A job's folder is ``runs/<setting>/<method>/<hash>/``; the hash covers everything that changes
the result, so a finished job is found instead of recomputed, and a killed one resumes from the
checkpoints inside its folder.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

from suite.errors import SuiteError

# Bump when the training recipe's code changes results (loop, data order, augmentation, models):
# every cached baseline and run then gets a new hash and is recomputed.
RECIPE_VERSION = 1


def content_hash(obj) -> str:
    """A short, stable hash of a JSON-able object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path):
    try:
        return json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except (OSError, json.JSONDecodeError) as e:
        raise SuiteError(f"{path} is unreadable ({e}); delete its run folder to recompute it") from None
    except KeyTwice as e:
        raise SuiteError(f"{path} gives the key {e} twice; delete its run folder to recompute it") from None


def read_json_object(path: Path) -> dict:
    """``path``'s JSON object, or ``{}`` when it is missing, not JSON or not an object (a list, a
    number, null): for readers of the store that skip what they cannot read (writes are atomic, so
    a damaged file means someone edited it) rather than stop, as pages and listings do. Every
    record the suite writes is an object, so an empty dict is how a reader recognises "nothing"."""
    return read_json_record(path)[0]


_JSON_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _unfinished_token(rest: str) -> bool:
    """Whether ``rest``, the text from where the JSON decoder stopped, is nothing or the beginning
    of one literal or number: what a file cut mid-write leaves behind."""
    return (
        not rest
        or any(lit.startswith(rest) for lit in ("true", "false", "null"))
        or bool(re.fullmatch(r"-?\d*\.?\d*(?:[eE][+-]?\d*)?", rest))
    )


class KeyTwice(ValueError):
    """A key given twice in one JSON object (its repr is the message)."""


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.loads``' object hook for records and for files a user writes: a key given twice is an
    error where the decoder would keep the last value without a word. The suite never writes one,
    so in a stored record it means a hand edit."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise KeyTwice(repr(key))
        seen[key] = value
    return seen


KEY_TWICE = "a key given twice"  # how read_json_record's problem begins for such a file: a reader may add its fix


def read_json_record(path: Path) -> tuple[dict, str | None]:
    """``path``'s JSON object and None, or ``{}`` and what is wrong with the file in a few words
    ("missing", "empty", "truncated JSON", "not JSON (Expecting value at line 3 column 5)", "a JSON
    list, not a record", "unreadable (Permission denied)", "a key given twice ('top1')"): a reader that skips a damaged record
    must still be able to say which one and why, or a run disappears from every table unnoticed."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}, "missing"
    except UnicodeDecodeError:
        return {}, "not text (not UTF-8)"
    except OSError as e:
        return {}, f"unreadable ({e.strerror or type(e).__name__})"
    try:
        data = json.loads(text, object_pairs_hook=unique_keys)
    except KeyTwice as e:
        return {}, f"{KEY_TWICE} ({e})"
    except json.JSONDecodeError as e:
        if not text.strip():
            return {}, "empty"
        # cut short: the decoder stops at the end of the text, inside a string that never closes, or
        # at the start of a last token that is the beginning of a literal or a number ("tr", "0.")
        rest = text[e.pos :].rstrip()
        if e.msg.startswith("Unterminated string") or _unfinished_token(rest):
            return {}, "truncated JSON"
        return {}, f"not JSON ({e.msg} at line {e.lineno} column {e.colno})"
    if not isinstance(data, dict):
        return {}, f"a JSON {_JSON_KINDS.get(type(data), type(data).__name__)}, not a record"
    return data, None


def write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue())


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True):
    """An exclusive fcntl lock on the file ``path`` (created if missing), released on exit or death.

    Yields True when held; with ``wait=False`` yields False at once if another process holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def job_lock(folder: Path, wait: bool = True):
    """An exclusive lock on a run or baseline ``folder`` (its .lock file): one worker per job."""
    with file_lock(folder / ".lock", wait) as held:
        yield held


def check_writable(folder: Path, what: str = "runs dir", option: str = "--runs-dir") -> None:
    """Create ``folder`` if needed and prove a file can be written there, or a one-line error."""
    if folder.exists() and not folder.is_dir():
        raise SuiteError(f"{what} {folder} is a file, not a folder: pass {option} DIR")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise SuiteError(f"{what} {folder} is not writable ({e.strerror}): pass {option} DIR") from None


def code_version() -> str:
    """The git commit of the suite's checkout (with '+dirty' when modified), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"
