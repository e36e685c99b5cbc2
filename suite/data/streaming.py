"""Image sets too large to hold in memory, read by DataLoader workers that persist across epochs.

ImageNet (``suite.data.datasets``) and a user's large ImageFolder (``suite.data.userdata``) stream the same way,
with the in-memory path's guarantees:

- Every sample's randomness is a pure function of (stream seed, epoch, position in the epoch). The
  sampler hands a worker an (image index, sample seed) key and the worker draws that image's
  transforms under that seed, so a batch depends neither on which worker decoded it, nor on how many
  workers there are, nor on where an interrupted epoch resumed. That is also what lets the workers
  live as long as the dataset (``persistent_workers``) instead of starting again every epoch and
  every evaluation.
- When the workers only decode (``on_device``), the per-sample crop, flip and normalisation run on
  the training device, whole batches at a time, with the in-memory path's own code
  (``Data._augment``). ImageNet's random-resized crop needs the full-size image, so it stays in the
  workers.
- On CUDA, batches land in pinned memory and are copied to the device without blocking.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class _Keyed(Dataset):
    """``dataset[index]`` drawn under torch's RNG seeded with the key's seed (torchvision's random
    transforms draw from it), leaving the caller's RNG as it was."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class _Keys(Sampler):
    """The keys of the pass about to start: set before each pass, since the loader outlives passes."""

    def __init__(self):
        self.keys: list[tuple[int, int]] = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class Streamed:
    """A train and a test set of (image, label) read by workers. ``on_device``: the workers give uint8
    [C, H, W] images and the :class:`suite.data.split.Data` holding this set augments and normalises them;
    otherwise they give finished float tensors."""

    def __init__(self, train_set: Dataset, test_set: Dataset, on_device: bool, workers: int | None = None):
        self.train_set, self.test_set, self.on_device = train_set, test_set, on_device
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._loaders: dict[tuple, tuple[DataLoader, _Keys]] = {}

    def __len__(self) -> int:
        return len(self.train_set)

    def train(
        self, batch_size: int, order: torch.Tensor, seeds: torch.Tensor, start: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Full batches of ``order`` from batch ``start`` on; sample ``order[k]`` is drawn with ``seeds[k]``."""
        keys = list(zip(order[start * batch_size :].tolist(), seeds[start * batch_size :].tolist()))
        yield from self._pass("train", keys, batch_size, device)

    def test(self, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self._pass("test", [(i, 0) for i in range(len(self.test_set))], batch_size, device)

    def _pass(self, split: str, keys: list, batch_size: int, device: torch.device):
        loader, sampler = self._loader(split, batch_size, device)
        sampler.keys = keys
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def _loader(self, split: str, batch_size: int, device: torch.device) -> tuple[DataLoader, _Keys]:
        """One loader per (split, batch size, device type), made at its first pass and kept."""
        k = (split, batch_size, device.type)
        if k not in self._loaders:
            sampler = _Keys()
            dataset = _Keyed(self.train_set if split == "train" else self.test_set)
            loader = DataLoader(
                dataset,
                batch_size,
                sampler=sampler,
                drop_last=split == "train",
                num_workers=self.workers,
                persistent_workers=True,
                pin_memory=device.type == "cuda",
            )
            self._loaders[k] = loader, sampler
        return self._loaders[k]
