"""``suite leaderboard``: the static HTML pages, written from the stored runs."""

from __future__ import annotations

from pathlib import Path

from suite.errors import SuiteError

NAME = "leaderboard"


def add(sub) -> None:
    """``suite leaderboard`` and its options."""
    lb = sub.add_parser(
        "leaderboard",
        help="write static HTML leaderboards from the stored runs",
        description="Write index.html and one page (+ CSV) per setting from finished runs; smoke, "
        "failed and search-trial runs are never ranked. Pages work offline.",
    )
    lb.add_argument("--runs-dir", default="runs")
    lb.add_argument("--out", default="leaderboards", help="output folder (default leaderboards/)")
    lb.add_argument(
        "--include-capped",
        action="store_true",
        help="rank runs whose own training stopped at the setting's cap before its schedule ended "
        "(marked [capped]); by default they are left out",
    )


def main(args) -> int:
    from suite.pages.leaderboard import render
    from suite.pages.reports import report_unreadable
    from suite.store.files import check_writable

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise SuiteError(f"runs dir {runs} does not exist: run 'suite run' first or pass --runs-dir")
    check_writable(Path(args.out), "--out folder", "--out")
    unreadable = []
    for path in render(runs, Path(args.out), include_capped=args.include_capped, unreadable=unreadable):
        print(path)
    report_unreadable(unreadable)
    return 0
