"""``suite migrate``: stored runs renamed to today's run identity."""

from __future__ import annotations

from pathlib import Path

from suite.errors import SuiteError

NAME = "migrate"


def add(sub) -> None:
    """``suite migrate`` and its options."""
    mg = sub.add_parser(
        "migrate",
        help="rename stored runs to today's run identity (after an upgrade)",
        description="Rename every run folder whose name is not the hash of today's identity of the "
        "job its config.json records (older versions hashed presentation fields too). "
        "Nothing is deleted; running it again moves nothing.",
    )
    mg.add_argument("--runs-dir", default="runs")


def main(args) -> int:
    from suite.store.migrate import migrate

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise SuiteError(f"runs dir {runs} does not exist: pass --runs-dir")
    moved = migrate(runs)
    for old, new in moved.items():
        print(f"{old} -> {new}")
    print(f"{len(moved)} run folder(s) renamed")
    return 0
