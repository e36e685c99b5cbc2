"""The ``suite`` command's parser and entry point: every command of ``COMMANDS`` adds its
subcommand, and a ``SuiteError`` anywhere below ends as one line and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys

from suite.cli import baseline, flags, latency, leaderboard, listing, migrate, results, run, search
from suite.errors import SuiteError

COMMANDS = (listing, baseline, run, search, leaderboard, migrate, latency, results)  # in --help's order


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the suite's one line (``error: ...``, exit 2) like every other
    bad input, instead of the usage block plus ``suite run: error: ...``."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="suite",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=flags.EPILOG,
        description="greg-suite: compare pruning methods (GReg-1/2, L1, NNI's and Torch-Pruning's pruners) on shared settings, "
        "from one trained baseline and one fine-tuning budget.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return {c.NAME: c.main for c in COMMANDS}[args.command](args)
    except SuiteError as e:
        print(f"error: {' '.join(str(e).splitlines())}", file=sys.stderr)  # one line, whatever the input held
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output stopped (``suite list settings | head``): not an error of the
        # suite's. Python's own recipe (docs, "Note on SIGPIPE"): point stdout at devnull so that the
        # flush at exit does not raise a second time. A pipe of anything else (a worker's) is an error.
        if not _reader_gone(sys.stdout):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _reader_gone(stream) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed: poll() reports POLLERR on such a
    pipe's writing end (Linux, macOS; elsewhere: not known, False)."""
    import select

    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False
