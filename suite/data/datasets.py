"""Datasets behind one interface: batches of normalised float tensors on the training device.

Small sets (CIFAR-10/100, the CIFAR-10 JPEG copy, Fashion-MNIST) are decoded once into uint8
tensors, cached on disk as a .pt file, and augmented on tensors, whole batches at a time, on the
training device: no PIL decode per image per epoch. ImageNet is too big for memory and is read by
DataLoader workers with the standard transforms (``suite.data.streaming``).

Every batch's order and augmentation is a pure function of (purpose, seed, epoch, batch index), so
a training run interrupted mid-epoch resumes on exactly the batches it would have seen, and the
baseline, the regularization and the fine-tuning of one seed see different batch sequences.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.nn import functional as F

from suite.errors import SuiteError
from suite.data.streaming import Streamed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
CACHE_VERSION = 1  # bump when the decoded layout changes


# What a training pass is for. Each purpose draws its own batch order and augmentation, so the
# regularization and fine-tuning of a seed-0 job never replay the batches its baseline saw.
STREAMS = ("baseline", "regularize", "finetune")


def stream_seed(seed: int, stream: str) -> int:
    """The seed of one purpose's batch stream. The baseline keeps the plain seed, so baselines
    trained (and published) before streams existed still reproduce batch for batch."""
    if stream not in STREAMS:
        raise ValueError(f"unknown batch stream {stream!r}; use one of {STREAMS}")
    if stream == "baseline":
        return seed
    return int.from_bytes(hashlib.sha256(f"{stream}/{seed}".encode()).digest()[:4], "big") & 0x7FFF_FFFF


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

    def train_batches(self, batch_size: int, seed: int, epoch: int, device: torch.device, *, stream: str,
                      start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
            idx = order[i * batch_size:(i + 1) * batch_size]
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
            raise SuiteError(f"dataset {self.name} has no {split!r} split"
                             + (" (carve one with a validation fraction)" if split == "val" else ""))
        for i in range(0, len(part), batch_size):
            yield self._normalise(part.x[i:i + batch_size].to(device)), part.y[i:i + batch_size].to(device)

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

    def limit_train(self, n: int) -> "Data":
        """A copy training on the first ``n`` images only (a reduced budget, recorded by the setting)."""
        self._check_held("train_limit")
        if n >= len(self.train):
            return self
        # the fingerprint says which images: a baseline trained on 1,024 images is not one on 2,048
        return dataclasses.replace(self, train=TensorSplit(self.train.x[:n], self.train.y[:n]),
                                   fingerprint=f"{self.fingerprint}/train[:{n}]")

    def limit_test(self, n: int) -> "Data":
        """A copy measured on the first ``n`` test images (a test-sized setting: evaluating 10,000
        images costs more than its whole training); the fingerprint says so, so such runs are never
        mistaken for full-test-set ones."""
        self._check_held("test_limit")
        if n >= len(self.test):
            return self
        return dataclasses.replace(self, test=TensorSplit(self.test.x[:n], self.test.y[:n]),
                                   fingerprint=f"{self.fingerprint}/test[:{n}]")

    def _check_held(self, what: str) -> None:
        if self.streamed is not None:
            raise SuiteError(f"{what} applies to data held in memory; {self.name} is streamed (too large to "
                             f"hold), so limit it by linking fewer images into its folders")

    # ------------------------------------------------------------------ validation split
    def with_validation(self, n_val: int, seed: int = 0) -> "Data":
        """A copy whose last ``n_val`` of a seeded permutation of train become ``val``.

        Search tunes on ``val`` and never sees ``test``; train shrinks by ``n_val`` images. The
        fingerprint records the split, so a search's baseline is trained without the val images.
        """
        if self.train is None:
            raise SuiteError(f"a validation split needs data held in memory; {self.name} is streamed "
                             f"(too large to hold): search on a subset linked into a smaller folder")
        if not 0 < n_val < len(self.train):
            raise SuiteError(f"validation size {n_val} must be between 1 and {len(self.train) - 1}")
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.train), generator=g)
        tr, va = order[:-n_val], order[-n_val:]
        return Data(self.name, self.label, self.num_classes,
                    TensorSplit(self.train.x[tr], self.train.y[tr]), self.test, self.mean, self.std,
                    self.pad, self.flip, f"{self.fingerprint}/val{n_val}@{seed}", self.source,
                    val=TensorSplit(self.train.x[va], self.train.y[va]))


# --------------------------------------------------------------------------- decoding
def fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_paths(cache: Path) -> tuple[Path, Path]:
    """Next to the data, else (read-only data dir) under ~/.cache keyed by the data's path."""
    key = hashlib.sha256(str(cache.resolve()).encode()).hexdigest()[:12]
    return cache, Path.home() / ".cache" / "greg-suite" / f"{key}-{cache.name}"


def _cached(cache: Path, decode: Callable[[], tuple[TensorSplit, TensorSplit]]):
    """Decode once; later calls load the .pt cache. Falls back to ~/.cache when ``cache`` is read-only."""
    paths = _cache_paths(cache)
    for path in paths:
        if path.exists():
            try:
                blob = torch.load(path, weights_only=True)
                if blob.get("version") == CACHE_VERSION:
                    return (TensorSplit(blob["train_x"], blob["train_y"]),
                            TensorSplit(blob["test_x"], blob["test_y"]), blob["fingerprint"])
            except Exception:  # a corrupt cache is rebuilt, never trusted
                pass
    train, test = decode()
    fp = fingerprint(train.x, train.y, test.x, test.y)
    blob = {"version": CACHE_VERSION, "train_x": train.x, "train_y": train.y,
            "test_x": test.x, "test_y": test.y, "fingerprint": fp}
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(blob, tmp)
            os.replace(tmp, path)
            break
        except OSError:
            continue
    return train, test, fp


def _read_idx(path: Path) -> torch.Tensor:
    """Parse an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    _, _, dtype, ndim = struct.unpack(">BBBB", raw[:4])
    if dtype != 0x08:
        raise SuiteError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).view(*dims)


FMNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.gz", folder / stem, folder / "FashionMNIST" / "raw" / f"{stem}.gz",
                 folder / "FashionMNIST" / "raw" / stem):
        if cand.exists():
            return cand
    return None


def load_fashion_mnist(data_dir: str | None, download: bool = False) -> Data:
    """Fashion-MNIST from the IDX files (Debian's dataset-fashion-mnist, or torchvision's layout)."""
    folders = [Path(data_dir)] if data_dir else [Path(d) for d in FMNIST_DIRS]
    if data_dir and download:
        from torchvision.datasets import FashionMNIST
        FashionMNIST(data_dir, train=True, download=True)
        FashionMNIST(data_dir, train=False, download=True)
    for folder in folders:
        paths = {k: [_find_idx(folder, s) for s in v] for k, v in FMNIST_FILES.items()}
        if all(p is not None for ps in paths.values() for p in ps):
            def decode():
                return tuple(TensorSplit(_read_idx(px)[:, None].clone(), _read_idx(py).long())
                             for px, py in (paths["train"], paths["test"]))
            train, test, fp = _cached(folder / "greg-suite-fmnist.pt", decode)
            return Data("fashion-mnist", "Fashion-MNIST", 10, train, test, FMNIST_MEAN, FMNIST_STD,
                        pad=2, flip=True, fingerprint=fp, source=str(folder))
    where = data_dir or FMNIST_DIRS[0]
    raise SuiteError(f"Fashion-MNIST not found in {where}: run 'apt-get install -y dataset-fashion-mnist' "
                     f"or pass --data-dir DIR (with --download where the network allows)")


def _decode_image_folder(root: Path) -> TensorSplit:
    """Decode an ImageFolder tree (class folders sorted, as torchvision does) to uint8 tensors.

    Pillow decodes: torchvision.io's decoders are deprecated since 0.29 (one DeprecationWarning per
    call). Pillow's libjpeg-turbo gives the same pixels on all 60,000 images of the JPEG copy, so the
    data fingerprint of published runs is unchanged (tests/test_data.py checks it).
    """
    from PIL import Image
    from torchvision.datasets import ImageFolder
    from tqdm import tqdm

    def decode(path: str) -> torch.Tensor:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(
            rgb.height, rgb.width, 3).permute(2, 0, 1)

    folder = ImageFolder(str(root))
    xs = [decode(p) for p, _ in tqdm(folder.samples, desc=f"decoding {root.name}", unit="img", leave=False,
                                     disable=None)]
    return TensorSplit(torch.stack(xs), torch.tensor(folder.targets, dtype=torch.long))


def load_cifar10_jpg(data_dir: str | None, download: bool = False) -> Data:
    """The CIFAR-10 JPEG copy of shared/data (ImageFolder train/ and test/)."""
    root = Path(data_dir or "data/cifar10-jpg")
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise SuiteError(f"CIFAR-10 JPEG copy not found in {root} (need train/ and test/): unpack it with "
                         f"'mkdir -p {root} && tar xzf ../shared/data/cifar10-jpg.tar.gz -C {root}'")
    train, test, fp = _cached(root / "greg-suite-cifar10jpg.pt",
                              lambda: (_decode_image_folder(root / "train"), _decode_image_folder(root / "test")))
    return Data("cifar10-jpg", "CIFAR-10 (JPEG copy)", 10, train, test, IMAGENET_MEAN, IMAGENET_STD,
                pad=4, flip=True, fingerprint=fp, source=str(root))


def _load_cifar(kind: str, data_dir: str | None, download: bool) -> Data:
    from torchvision.datasets import CIFAR10, CIFAR100
    cls, classes, label = (CIFAR10, 10, "CIFAR-10") if kind == "cifar10" else (CIFAR100, 100, "CIFAR-100")
    root = Path(data_dir or "data")

    def decode():
        try:
            parts = [cls(str(root), train=t, download=download) for t in (True, False)]
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise SuiteError(f"{label} not found in {root}: pass --data-dir to the folder holding "
                             f"{cls.base_folder}/, or add --download where the network allows ({e})") from None
        return tuple(TensorSplit(torch.from_numpy(p.data).permute(0, 3, 1, 2).contiguous(),
                                 torch.tensor(p.targets, dtype=torch.long)) for p in parts)

    if not (root / cls.base_folder).is_dir() and not download:
        raise SuiteError(f"{label} not found in {root}/{cls.base_folder}: pass --data-dir to the folder "
                         f"holding it, or add --download where the network allows")
    train, test, fp = _cached(root / f"greg-suite-{kind}.pt", decode)
    # The paper normalises CIFAR with the ImageNet mean/std (GREG_SPEC.md, "The paper's recipes").
    return Data(kind, label, classes, train, test, IMAGENET_MEAN, IMAGENET_STD, pad=4, flip=True,
                fingerprint=fp, source=str(root))


def load_imagenet(data_dir: str | None, download: bool = False) -> Data:
    """ImageNet as ImageFolder train/ and val/ with the standard transforms, read by DataLoader workers."""
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    root = Path(data_dir or "data/imagenet")
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise SuiteError(f"ImageNet not found in {root} (need train/ and val/ class folders): pass --data-dir")
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_set = ImageFolder(str(root / "train"), T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                                                             T.ToTensor(), norm]))
    val_set = ImageFolder(str(root / "val"), T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]))
    # The fingerprint of ImageNet hashes the sorted file list and sizes, not 150 GB of bytes.
    h = hashlib.sha256()
    for p, t in train_set.samples + val_set.samples:
        h.update(f"{os.path.relpath(p, root)}:{t}:{os.path.getsize(p)}".encode())
    return Data("imagenet", "ImageNet (ILSVRC-2012)", len(train_set.classes), None, None, IMAGENET_MEAN,
                IMAGENET_STD, pad=0, flip=False, fingerprint=h.hexdigest()[:16], source=str(root),
                streamed=Streamed(train_set, val_set, on_device=False))


# What a setting needs to know of a dataset without loading it: (input shape, classes).
DATASET_INFO: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "cifar10-jpg": ((3, 32, 32), 10),
    "imagenet": ((3, 224, 224), 1000), "fashion-mnist": ((1, 28, 28), 10),
}

DATASETS: dict[str, Callable[..., Data]] = {
    "cifar10": lambda d, dl: _load_cifar("cifar10", d, dl),
    "cifar100": lambda d, dl: _load_cifar("cifar100", d, dl),
    "cifar10-jpg": load_cifar10_jpg,
    "imagenet": load_imagenet,
    "fashion-mnist": load_fashion_mnist,
}


def load(name: str, data_dir: str | None = None, download: bool = False, options: dict | None = None) -> Data:
    """Load a named dataset, or a user's (``suite.data.userdata``: ``imagefolder:PATH``,
    ``torchvision:CLASS``, ``file.py:factory``, with ``options`` for normalisation and augmentation);
    a missing data dir is a one-line :class:`SuiteError` saying how to get it."""
    from suite.data import userdata
    if userdata.is_user_dataset(name):
        return userdata.load(name, data_dir, download, options)
    if options:
        raise SuiteError(f"data_options apply to user datasets; {name} has the paper's normalisation")
    if name not in DATASETS:
        raise SuiteError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or imagefolder:PATH, "
                         f"torchvision:CLASS, path/to/file.py:factory")
    return DATASETS[name](data_dir, download)
