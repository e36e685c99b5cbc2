"""What every dataset becomes: images held as uint8 tensors (``TensorSplit``), the ``Data`` that turns
them into normalised, augmented batches on the training device, and ``fingerprint``, the hash of the
decoded tensors that every result records.

Every batch's order and augmentation is a pure function of (purpose, seed, epoch, batch index), so
a training run interrupted mid-epoch resumes on exactly the batches it would have seen, and the
baseline, the regularization and the fine-tuning of one seed see different batch sequences.

A module of its own because both the built-in loaders (``suite.data.datasets``, which also hands a
user's dataset name to ``suite.data.userdata``) and the user loaders build these: neither imports
the other for them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from suite.data.streaming import Streamed
from suite.errors import SuiteError

# What a training pass is for. Each purpose draws its own batch order and augmentation, so the
# own training (GReg's regularization, a criterion's passes) and fine-tuning of a seed-0 job never
# replay the batches its baseline saw.
STREAMS = ("baseline", "own", "finetune")  # the baseline, a method's own training, the fine-tuning
# The seed of a method's own stream is drawn from the name the purpose had when the published runs
# were trained ("regularize"), so renaming the purpose moved no batch.
_SEED_NAME = {"own": "regularize"}


def stream_seed(seed: int, stream: str) -> int:
    """The seed of one purpose's batch stream. The baseline keeps the plain seed, so baselines
    trained (and published) before streams existed still reproduce batch for batch."""
    if stream not in STREAMS:
        raise ValueError(f"unknown batch stream {stream!r}; use one of {STREAMS}")
    if stream == "baseline":
        return seed
    name = _SEED_NAME.get(stream, stream)
    return int.from_bytes(hashlib.sha256(f"{name}/{seed}".encode()).digest()[:4], "big") & 0x7FFF_FFFF


def batch_generator(seed: int, epoch: int, index: int, device: torch.device) -> torch.Generator:
    """The RNG for one batch: a pure function of (stream seed, epoch, batch index)."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + index) % (1 << 63))
    return g


@dataclass
class TensorSplit:
    """Images as uint8 [N, C, H, W] and labels as int64 [N], held in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Data:
    """A dataset ready for training: train/test splits (and optionally val), normalisation, augmentation.

    ``label`` is what pages print ("CIFAR-10 (JPEG copy)"); ``fingerprint`` is a hash of the decoded
    tensors that every result records.
    """

    name: str
    label: str
    num_classes: int
    train: TensorSplit | None
    test: TensorSplit | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int  # random-crop padding for augmentation (0: none)
    flip: bool
    fingerprint: str
    source: str  # where the files came from
    val: TensorSplit | None = None
    streamed: Streamed | None = None  # a set too large to hold (train and test are None)

    # ------------------------------------------------------------------ batches
    def batches_per_epoch(self, batch_size: int) -> int:
        n = len(self.train) if self.train is not None else len(self.streamed)
        return n // batch_size  # the last partial batch is dropped, as in a DataLoader(drop_last=True)

    def train_batches(
        self, batch_size: int, seed: int, epoch: int, device: torch.device, *, stream: str, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, augmented batches of one epoch of ``stream`` (see STREAMS), from batch ``start`` on."""
        seed = stream_seed(seed, stream)
        cpu = torch.device("cpu")
        if self.train is None:
            order = torch.randperm(len(self.streamed), generator=batch_generator(seed, epoch, -1, cpu))
            # one seed per sample for the transforms a worker draws (see suite.data.streaming)
            sample_seeds = torch.randint(0, 2**62, (len(order),), generator=batch_generator(seed, epoch, -2, cpu))
            batches = self.streamed.train(batch_size, order, sample_seeds, start, device)
            for i, (x, y) in enumerate(batches, start):
                yield (self._augment(x, batch_generator(seed, epoch, i, device)) if self.streamed.on_device else x), y
            return
        order = torch.randperm(len(self.train), generator=batch_generator(seed, epoch, -1, cpu))
        for i in range(start, self.batches_per_epoch(batch_size)):
            idx = order[i * batch_size : (i + 1) * batch_size]
            x = self.train.x[idx].to(device, non_blocking=True)
            y = self.train.y[idx].to(device, non_blocking=True)
            yield self._augment(x, batch_generator(seed, epoch, i, device)), y

    def eval_batches(self, split: str, batch_size: int, device: torch.device):
        """Un-augmented batches of ``split`` ("test", "val" or "train") in order."""
        part = getattr(self, split)
        if part is None and split == "test" and self.streamed is not None:
            for x, y in self.streamed.test(batch_size, device):
                yield (self._normalise(x) if self.streamed.on_device else x), y
            return
        if part is None:
            raise SuiteError(
                f"dataset {self.name} has no {split!r} split"
                + (" (carve one with a validation fraction)" if split == "val" else "")
            )
        for i in range(0, len(part), batch_size):
            yield self._normalise(part.x[i : i + batch_size].to(device)), part.y[i : i + batch_size].to(device)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float().div_(255) - mean) / std

    def _augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Random crop with zero padding and horizontal flip, per sample, on the whole batch.

        Written by hand because torchvision.transforms.v2 draws one crop per call (per batch),
        not one per sample, and the per-image loop is what this pipeline exists to avoid.
        """
        b, c, h, w = x.shape
        if self.pad:
            p = self.pad
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (b,), generator=g, device=x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=g, device=x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            ci = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[bi, ci, rows, cols]
        if self.flip:
            flip = torch.rand(b, generator=g, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return self._normalise(x)

    def limit_train(self, n: int) -> Data:
        """A copy training on the first ``n`` images only (a reduced budget, recorded by the setting)."""
        self._check_held("train_limit")
        if n >= len(self.train):
            return self
        # the fingerprint says which images: a baseline trained on 1,024 images is not one on 2,048
        return dataclasses.replace(
            self, train=TensorSplit(self.train.x[:n], self.train.y[:n]), fingerprint=f"{self.fingerprint}/train[:{n}]"
        )

    def limit_test(self, n: int) -> Data:
        """A copy measured on the first ``n`` test images (a test-sized setting: evaluating 10,000
        images costs more than its whole training); the fingerprint says so, so such runs are never
        mistaken for full-test-set ones."""
        self._check_held("test_limit")
        if n >= len(self.test):
            return self
        return dataclasses.replace(
            self, test=TensorSplit(self.test.x[:n], self.test.y[:n]), fingerprint=f"{self.fingerprint}/test[:{n}]"
        )

    def _check_held(self, what: str) -> None:
        if self.streamed is not None:
            raise SuiteError(
                f"{what} applies to data held in memory; {self.name} is streamed (too large to "
                f"hold), so limit it by linking fewer images into its folders"
            )

    # ------------------------------------------------------------------ validation split
    def with_validation(self, n_val: int, seed: int = 0) -> Data:
        """A copy whose last ``n_val`` of a seeded permutation of train become ``val``.

        Search tunes on ``val`` and never sees ``test``; train shrinks by ``n_val`` images. The
        fingerprint records the split, so a search's baseline is trained without the val images.
        """
        if self.train is None:
            raise SuiteError(
                f"a validation split needs data held in memory; {self.name} is streamed "
                f"(too large to hold): search on a subset linked into a smaller folder"
            )
        if not 0 < n_val < len(self.train):
            raise SuiteError(f"validation size {n_val} must be between 1 and {len(self.train) - 1}")
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.train), generator=g)
        tr, va = order[:-n_val], order[-n_val:]
        return Data(
            self.name,
            self.label,
            self.num_classes,
            TensorSplit(self.train.x[tr], self.train.y[tr]),
            self.test,
            self.mean,
            self.std,
            self.pad,
            self.flip,
            f"{self.fingerprint}/val{n_val}@{seed}",
            self.source,
            val=TensorSplit(self.train.x[va], self.train.y[va]),
        )


def fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
