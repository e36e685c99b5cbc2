"""Shared fixtures: small slices of the real Fashion-MNIST (never random tensors for accuracy)."""
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from suite import data as datasets
from suite.data import TensorSplit

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fmnist():
    return datasets.load("fashion-mnist")


@pytest.fixture(scope="session")
def small_fmnist(fmnist):
    """2,048 training and 1,000 test images of the real Fashion-MNIST."""
    return replace(fmnist, train=TensorSplit(fmnist.train.x[:2048], fmnist.train.y[:2048]),
                   test=TensorSplit(fmnist.test.x[:1000], fmnist.test.y[:1000]))


@pytest.fixture(scope="session")
def cifar_dir():
    d = Path(os.environ.get("GREG_CIFAR10_JPG", "/tmp/cifar10-jpg"))
    if not (d / "train").is_dir():
        pytest.skip(f"CIFAR-10 JPEG copy not unpacked in {d} (ci/setup does it)")
    return d
