"""The flags several commands share: where data, runs and threads are (:func:`common`), the
numerics of training (:func:`numerics`), the executors (:func:`engine`), and the examples every
``--help`` of the top level and of ``suite run`` ends with. Imports nothing of the suite that
loads torch: ``suite --help`` answers at once."""

from __future__ import annotations

import argparse

from methods.registry import DEFAULT_COMPARISON  # cheap: the registry imports the methods on first use
from suite.measure.search_kinds import DEFAULT_SEARCH, SEARCHES

DEFAULT_METHODS = ",".join(DEFAULT_COMPARISON)  # what `suite run` compares when none are named

EPILOG = """examples:
  suite list settings                          what each setting prunes, and the speedup it means
  suite list methods 'greg*'                   methods with their hyperparameters and defaults
  suite run --methods greg1,greg2,l1           the offline quick start (Fashion-MNIST, about 4 min)
  suite run --setting fmnist-cnn4 --methods greg1,greg2,l1 --seeds 3   the published CPU comparison
  suite run --setting cifar10jpg-resnet20 --data-dir /tmp/cifar10-jpg --methods 'greg*,l1' --seeds 3
  suite run --methods l1 --ratios 0.9 --dry-run   the plan: cached and new jobs, the budget
  suite results --format csv                   every stored run as one table
"""


def common(sp, runs=True):
    """--setting, --data-dir, --download, --device, --runs-dir, --threads: what every training command takes."""
    sp.add_argument(
        "--setting",
        default=None,
        help="a setting name (see 'suite list settings') or a .toml file; default: fmnist-cnn4-quick, the offline quick start (the published comparison is fmnist-cnn4)",
    )
    sp.add_argument("--data-dir", default=None, help="where the dataset lives (default: the dataset's usual place)")
    sp.add_argument("--download", action="store_true", help="download the dataset where the network allows")
    sp.add_argument("--device", default="auto", help="cuda, cpu or auto (default: cuda when present)")
    if runs:
        sp.add_argument("--runs-dir", default="runs", help="where runs are stored (default: runs/)")
    sp.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of this process (default: the cores shared among the suite "
        "workers live on this machine, announced in RUNS_DIR/.workers/); with --executor "
        "ray/slurm: the CPUs and threads of each task (default 1)",
    )


def latency_search(sp):
    """--latency-search: how a latency target's ratios are chosen (``suite run`` and ``suite latency``)."""
    sp.add_argument(
        "--latency-search",
        choices=list(SEARCHES),
        default=None,  # DEFAULT_SEARCH; given without a latency target it is an error (options.latency_target)
        help=f"with --target Nx-latency (default {DEFAULT_SEARCH}): per-unit raises, step by step, the ratio "
        "of the unit (a ResNet stage, a plain net's conv, a group of coupled convs) whose measured time "
        "saved per parameter removed is largest; spread, per unit too, counts a removed parameter the "
        "more the deeper its layer is already cut (each layer's parameters times its removed share "
        "squared), so the cut spreads over the units, deepest where time is cheapest; spread-flops "
        "counts each parameter by its multiply-adds instead (an early layer at a large resolution is "
        "not cheap to cut: the only kind that has not kept less top-1 than the uniform cut so far); "
        "uniform raises one ratio for every prunable layer: the same measured speed from a uniform "
        "cut, to compare the others with",
    )


def numerics(sp):
    """--precision, --channels-last, --compile (suite.training.numerics); see README 'Precision and speed'."""
    g = sp.add_argument_group("precision and speed (README: Precision and speed)")
    g.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default=None,
        help="autocast precision of every training and evaluation pass; weights, gradients and "
        "the optimizer stay fp32. Default fp32 everywhere; bf16 (with --channels-last) trains "
        "about 2x faster on a CPU with AMX or AVX512-BF16 or a GPU from Ampere on, but lost "
        "0.2 points of ResNet-20 baseline accuracy here (README). fp16 is for CUDA, with "
        "loss scaling. Part of the run's identity unless fp32",
    )
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="model and batches in channels-last (NHWC) memory format; part of the run's identity. Default: off",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model for training and evaluation (falls back to eager, saying "
        "why, where it does not compile); part of the run's identity",
    )


def engine(sp):
    """--executor and its engines' options (suite.running.executors); see README 'Running on a cluster'."""
    g = sp.add_argument_group("executors (README: Running on a cluster)")
    g.add_argument(
        "--executor",
        default="local",  # a name of suite.running.executors.EXECUTORS
        help="local: this process (default); ray: one Ray task per job; slurm: one array job "
        "through submitit. The runs dir must be on a disk every worker sees",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="a running Ray cluster (auto or HOST:PORT; default: start one on this machine)",
    )
    g.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the cluster's)")
    g.add_argument(
        "--slurm-time",
        type=float,
        default=4.0,
        help="hours a SLURM task may run (default 4); "
        "a task timed out or preempted is requeued and resumes from its checkpoints",
    )
    g.add_argument(
        "--wait",
        action="store_true",
        help="slurm: follow the jobs and print the summary (default: print the job ids and return)",
    )
