"""Shared fixtures and helpers: small slices of the real Fashion-MNIST (never random tensors for accuracy)."""

import itertools
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from suite.data import datasets
from suite.data.datasets import TensorSplit
from suite.training.loop import train

# Under ci/test's two pytest-xdist workers ("gw0", "gw1") each worker, and every process it starts
# (suite runs in child processes, SLURM, Chromium), is pinned to a core of its own: the suite sizes
# its threads by the cores it may use, so nothing oversubscribes the 2 cores. Alone: 2 threads.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_cores[int(_XDIST_WORKER.removeprefix("gw")) % len(_cores)]})
torch.set_num_threads(1 if _XDIST_WORKER else 2)


# Test files whose tests share a module fixture that costs seconds (test_leaderboard's tiny store,
# 27 s; the latency record, 7 s; test_executors' SLURM cluster and local grid, 11 s): each runs on one
# worker, so the fixture is made once. Every other test is handed out on its own, so the long tests of
# one file spread over both workers. pytest-xdist's --dist loadgroup would do this by a mark, but under
# pytest 9.2 it groups nothing (pytest-xdist#1386: the group suffix it writes into the node id is no
# longer read), so ci/test's --dist load gets this scheduler instead, grouping by file name.
ONE_WORKER_PER_FILE = ("tests/test_leaderboard.py", "tests/test_leaderboard_latency.py", "tests/test_executors.py")


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FilesKeptTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if file in ONE_WORKER_PER_FILE else nodeid

    return FilesKeptTogether(config, log)


def needs(*markers: str):
    """Declares what a fixture needs that a laptop may lack (pyproject's markers: cluster, browser, data)
    or that it must run with nothing beside it (alone).
    Put it under ``@pytest.fixture``: every test using the fixture, even through another fixture, gets
    the markers, so `pytest -m "not cluster and not browser and not data"` leaves it out."""

    def declare(func):
        func.needs = markers
        return func

    return declare


def pytest_collection_modifyitems(items):
    for item in items:
        info = getattr(item, "_fixtureinfo", None)  # doctest items have none
        for defs in info.name2fixturedefs.values() if info else ():
            for marker in {m for d in defs for m in getattr(d.func, "needs", ())}:
                item.add_marker(marker)


@pytest.fixture(scope="session")
@needs("data")
def fmnist():
    return datasets.load("fashion-mnist")


@pytest.fixture(scope="session")
def small_fmnist(fmnist):
    """2,048 training and 1,000 test images of the real Fashion-MNIST."""
    return replace(
        fmnist,
        train=TensorSplit(fmnist.train.x[:2048], fmnist.train.y[:2048]),
        test=TensorSplit(fmnist.test.x[:1000], fmnist.test.y[:1000]),
    )


@pytest.fixture(scope="session")
@needs("data")
def cifar_dir():
    d = Path(os.environ.get("GREG_CIFAR10_JPG", "/tmp/cifar10-jpg"))
    if not (d / "train").is_dir():
        pytest.skip(f"CIFAR-10 JPEG copy not unpacked in {d} (ci/setup does it)")
    return d


@pytest.fixture
def two_threads():
    """Torch at 2 threads for one test, as a record made on a 2-core machine says, even on an xdist
    worker pinned to one core (a thread count sets the roundings, not the cores it runs on)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def randomize_bn(model, seed=0):
    """Trained-like BN statistics, so a removed channel's BN shift would matter if kept."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


class QuietHook:
    """A training hook (suite.training.loop.Hook) that does nothing: tests subclass it and override the one
    call they act or look at."""

    def after_backward(self, model, step):
        pass

    def after_step(self, model, step):
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


CPU = torch.device("cpu")


def sgd_run(model, data, batch_size, steps, before=(), after=(), **train_options):
    """The training a ``PruneTask`` hands a method (its ``train``): plain SGD at a fixed 0.01, seed 0,
    on the data's own stream, for ``steps`` iterations, with the method's hooks between ``before`` and
    ``after`` (a test's own watchers)."""

    def run(hooks, desc, log_every=None, log_extra=None):
        return train(
            model,
            data,
            lr=lambda e: 0.01,
            batch_size=batch_size,
            momentum=0.9,
            weight_decay=5e-4,
            device=CPU,
            seed=0,
            stream="own",
            total_steps=steps,
            hooks=(*before, *hooks, *after),
            eval_split=None,
            log_every=log_every,
            log_extra=log_extra,
            **train_options,
        )

    return run


def own_batches(data, batch_size):
    """A ``PruneTask``'s ``batches``: the first n batches of the data's own stream, epoch after epoch."""

    def batches(n):
        stream = itertools.chain.from_iterable(
            data.train_batches(batch_size, 0, e, CPU, stream="own") for e in itertools.count()
        )
        return itertools.islice(stream, n)

    return batches
