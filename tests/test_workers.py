"""Threads per worker: cores shared among the live suite workers announced in RUNS_DIR/.workers/."""

import os
import socket
import subprocess

import pytest
import torch

from suite.errors import SuiteError
from suite.running import workers as workers_mod
from suite.running.workers import Workers


@pytest.fixture(autouse=True)
def _keep_threads(monkeypatch):
    """Workers sets this process's torch threads: give the other tests theirs back; pretend 4 cores."""
    before = torch.get_num_threads()
    monkeypatch.setattr(workers_mod, "cores", lambda: 4)
    yield
    torch.set_num_threads(before)


def _announce(runs, pid, started=""):
    f = runs / ".workers" / f"{socket.gethostname()}-{pid}"
    f.write_text(started)
    return f


def test_cores_are_shared_among_live_workers_and_dead_ones_are_ignored(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with Workers(tmp_path) as w:
            assert torch.get_num_threads() == 4 and "4 threads (1 suite worker(s) on 4 cores)" == w.describe()
            _announce(tmp_path, sleeper.pid)
            dead = subprocess.Popen(["true"])
            dead.wait()
            stale = _announce(tmp_path, dead.pid)  # a worker killed with -9 leaves its file behind
            other_host = tmp_path / ".workers" / f"elsewhere-{os.getpid()}"  # another machine's cores
            other_host.write_text("")
            assert w.apply() == 2 and torch.get_num_threads() == 2
            assert not stale.exists() and other_host.exists()
            sleeper.kill()
            sleeper.wait()
            assert w.apply() == 4  # the other worker ended: its share comes back
        assert not (tmp_path / ".workers" / f"{socket.gethostname()}-{os.getpid()}").exists()
    finally:
        sleeper.kill()


def test_a_reused_pid_is_not_a_worker(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with Workers(tmp_path) as w:
            _announce(tmp_path, sleeper.pid, started="1")  # the file's process started at another time
            assert w.apply() == 4
    finally:
        sleeper.kill()


def test_three_workers_on_four_cores_get_one_thread_each_never_zero(tmp_path):
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(4)]
    try:
        with Workers(tmp_path) as w:
            for s in sleepers[:2]:
                _announce(tmp_path, s.pid)
            assert w.apply() == 1  # 4 // 3
            for s in sleepers[2:]:
                _announce(tmp_path, s.pid)
            assert w.apply() == 1  # 5 workers, 4 cores: still one thread
    finally:
        for s in sleepers:
            s.kill()


def test_threads_fixed_by_the_user(tmp_path):
    with Workers(tmp_path, threads=3) as w:
        assert w.apply() == 3 and torch.get_num_threads() == 3 and w.describe() == "3 threads (--threads)"
    with pytest.raises(SuiteError, match="--threads 0: must be >= 1"):
        Workers(tmp_path, threads=0)
