"""``suite results``: every stored run as one table (text, CSV or JSON)."""

from __future__ import annotations

from pathlib import Path

from suite.errors import SuiteError

NAME = "results"


def add(sub) -> None:
    """``suite results`` and its options."""
    res = sub.add_parser("results", help="print every stored run as one table")
    res.add_argument("--runs-dir", default="runs")
    res.add_argument("--format", choices=["table", "csv", "json"], default="table")


def main(args) -> int:
    from suite.pages.reports import report_unreadable
    from suite.store.results import TABLE_COLUMNS, load_runs

    runs = Path(args.runs_dir)
    if not runs.is_dir():
        raise SuiteError(f"runs dir {runs} does not exist: run 'suite run' first or pass --runs-dir")
    unreadable = []
    frame = load_runs(runs, unreadable)
    report_unreadable(unreadable)
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=2))
    else:
        print(frame[TABLE_COLUMNS].to_string(index=False) if not frame.empty else "no stored runs")
    return 0
