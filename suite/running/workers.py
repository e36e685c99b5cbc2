"""Threads per process when several suite workers share one machine.

torch starts with one intra-op thread per core. Two workers (or a search beside a run) on a
2-core machine then run 4 threads on 2 cores and slow each other far beyond 2x (a 5-minute
baseline took 34 minutes beside two other torch processes). So each ``suite run``/``search``/
``baseline`` announces itself with a pid file in ``RUNS_DIR/.workers/`` and, unless ``--threads``
says otherwise, takes its share of the cores: ``cores // live workers`` (at least 1). A worker
re-reads the directory before each job, so the first of two workers gives back its extra thread
when the second one starts. Files of dead processes (a ``kill -9``) are ignored and removed.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import torch

from suite.errors import SuiteError


def cores() -> int:
    """The cores this process may run on (affinity and cgroup cpusets included, where known)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _started(pid: int) -> str:
    """When ``pid`` started (Linux: clock ticks since boot), so a reused pid is not taken for a worker."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return not started or _started(pid) in ("", started)


class Workers:
    """This process's announcement in ``runs_dir/.workers/`` and its thread count.

    ``threads``: a fixed count (``--threads``); None: the share of the cores, recomputed by
    :meth:`apply`. Use as a context manager: the pid file goes away on exit.
    """

    def __init__(self, runs_dir: Path, threads: int | None = None):
        if threads is not None and threads < 1:
            raise SuiteError(f"--threads {threads}: must be >= 1 (default: the cores shared among live workers)")
        self.folder = Path(runs_dir) / ".workers"
        self.fixed = threads
        self.me = self.folder / f"{socket.gethostname()}-{os.getpid()}"  # other hosts' cores are not ours

    def __enter__(self) -> Workers:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.me.write_text(_started(os.getpid()))
        self.apply()
        return self

    def __exit__(self, *exc) -> None:
        self.me.unlink(missing_ok=True)

    def live(self) -> int:
        """Live suite workers on this host with a pid file here (this one included)."""
        host = socket.gethostname() + "-"
        n = 0
        for f in self.folder.glob(host + "*"):
            pid = f.name[len(host) :]
            with contextlib.suppress(OSError, ValueError):
                if _alive(int(pid), f.read_text().strip()):
                    n += 1
                else:
                    f.unlink(missing_ok=True)
        return max(n, 1)

    def apply(self) -> int:
        """Set torch's intra-op threads to this worker's share; returns the count."""
        n = self.fixed or max(1, cores() // self.live())
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        return n

    def describe(self) -> str:
        """For the run header: ``2 threads (1 suite worker, 2 cores)``."""
        n = torch.get_num_threads()
        how = "--threads" if self.fixed else f"{self.live()} suite worker(s) on {cores()} cores"
        return f"{n} thread{'s' if n != 1 else ''} ({how})"
