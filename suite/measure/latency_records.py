"""Stored latency reports (``suite latency --runs-dir DIR``), read back by the leaderboard.

One JSON file per (setting, target, processor, instruction set, threads, torch version) under
``DIR/latency/<setting>/``: a measurement on another machine, thread count or torch is another
record beside the first (records made before the instruction set was recorded keep their names), while the same measurement taken again replaces its own record (the
newer timing of the same thing). The file is the report ``suite latency --json`` prints plus the
date it was measured, written atomically.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from suite.store.files import content_hash, read_json_record, write_json
from suite.store.results import Unreadable

IDENTITY = ("setting", "ratios", "processor", "threads", "torch")  # what makes a record another record
# ...and the instruction set, which a model name does not say (``suite.measure.metrics.instruction_set``);
# a report without it (older) is named by the fields above alone; and the setting's alignment
# (``--round-to``) where it has one, which a report of the counts as given does not name
LATER_IDENTITY = ("isa", "round_to")


def record_path(runs_dir: Path, rep: dict) -> Path:
    """Where the record of this report lives (setting names are safe file names: NAME_RE)."""
    key = {k: rep[k] for k in IDENTITY} | {k: rep[k] for k in LATER_IDENTITY if rep.get(k) is not None}
    return Path(runs_dir) / "latency" / rep["setting"] / f"{content_hash(key)}.json"


def store(runs_dir: Path, rep: dict) -> Path:
    """Write ``rep`` with the date (UTC) as its record; returns the file."""
    path = record_path(runs_dir, rep)
    write_json(path, {**rep, "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")})
    return path


def load(runs_dir: Path, unreadable: list[Unreadable] | None = None) -> list[tuple[Path, dict]]:
    """Every record under ``runs_dir/latency`` with its file, in path order. Writes are atomic, so a
    file that is not a JSON object means someone edited it: it is left out and appended to
    ``unreadable`` (when given), so that the pages and the terminal name it as they name a damaged run."""
    records = []
    for path in sorted((Path(runs_dir) / "latency").glob("*/*.json")):
        rec, problem = read_json_record(path)
        if not problem:
            records.append((path, rec))
        elif unreadable is not None:
            unreadable.append(damaged(path, problem))
    return records


def damaged(path: Path, problem: str) -> Unreadable:
    """A record file that cannot be shown, with what is wrong and the fix."""
    return Unreadable(
        path,
        problem,
        listed=False,
        what="latency record",
        page=path.parent.name,
        fix="restore the file, or delete it and 'suite latency' with its setting, ratios and --runs-dir measures it again",
    )
