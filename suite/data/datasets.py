"""Datasets behind one interface: batches of normalised float tensors on the training device.

Small sets (CIFAR-10/100, the CIFAR-10 JPEG copy, Fashion-MNIST) are decoded once into uint8
tensors, cached on disk as a .pt file, and augmented on tensors, whole batches at a time, on the
training device: no PIL decode per image per epoch. ImageNet is too big for memory and is read by
DataLoader workers with the standard transforms (``suite.data.streaming``). What a loader returns,
and how its batches are drawn, is ``suite.data.split``.

Each built-in dataset is a loader registered with ``@builtin(name, input_shape, classes)`` in one
registry (``DATASETS``), which also knows its shape and classes without loading it; other names
(``imagefolder:PATH``, ``torchvision:CLASS``, ``file.py:factory``) are ``suite.data.userdata``'s.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data import userdata
from suite.data.split import Data, TensorSplit, fingerprint
from suite.data.streaming import Streamed
from suite.errors import SuiteError
from suite.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
CACHE_VERSION = 1  # bump when the decoded layout changes


@dataclass(frozen=True)
class DatasetEntry:
    """A built-in dataset: ``load(data_dir, download)`` and what a setting needs before loading it."""

    name: str
    load: Callable[[str | None, bool], Data]
    info: userdata.DataInfo


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def builtin(name: str, input_shape: tuple[int, int, int], num_classes: int):
    """Decorator: register ``load(data_dir, download=False) -> Data`` as the built-in dataset ``name``."""

    def add(load: Callable[[str | None, bool], Data]):
        DATASETS.register(name)(DatasetEntry(name, load, userdata.DataInfo(input_shape, num_classes)))
        return load

    return add


# --------------------------------------------------------------------------- decoding
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
                    return (
                        TensorSplit(blob["train_x"], blob["train_y"]),
                        TensorSplit(blob["test_x"], blob["test_y"]),
                        blob["fingerprint"],
                    )
            except Exception:  # a corrupt cache is rebuilt, never trusted
                pass
    train, test = decode()
    fp = fingerprint(train.x, train.y, test.x, test.y)
    blob = {
        "version": CACHE_VERSION,
        "train_x": train.x,
        "train_y": train.y,
        "test_x": test.x,
        "test_y": test.y,
        "fingerprint": fp,
    }
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
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).view(*dims)


FMNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(folder: Path, stem: str) -> Path | None:
    for cand in (
        folder / f"{stem}.gz",
        folder / stem,
        folder / "FashionMNIST" / "raw" / f"{stem}.gz",
        folder / "FashionMNIST" / "raw" / stem,
    ):
        if cand.exists():
            return cand
    return None


@builtin("fashion-mnist", (1, 28, 28), 10)
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

            def decode():  # called at once, within this iteration (so B023 does not apply)
                return tuple(
                    TensorSplit(_read_idx(px)[:, None].clone(), _read_idx(py).long())
                    for px, py in (paths["train"], paths["test"])  # noqa: B023
                )

            train, test, fp = _cached(folder / "greg-suite-fmnist.pt", decode)
            return Data(
                "fashion-mnist",
                "Fashion-MNIST",
                10,
                train,
                test,
                FMNIST_MEAN,
                FMNIST_STD,
                pad=2,
                flip=True,
                fingerprint=fp,
                source=str(folder),
            )
    where = data_dir or FMNIST_DIRS[0]
    raise SuiteError(
        f"Fashion-MNIST not found in {where}: run 'apt-get install -y dataset-fashion-mnist' "
        f"or pass --data-dir DIR (with --download where the network allows)"
    )


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
        return (
            torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
            .view(rgb.height, rgb.width, 3)
            .permute(2, 0, 1)
        )

    folder = ImageFolder(str(root))
    xs = [
        decode(p) for p, _ in tqdm(folder.samples, desc=f"decoding {root.name}", unit="img", leave=False, disable=None)
    ]
    return TensorSplit(torch.stack(xs), torch.tensor(folder.targets, dtype=torch.long))


@builtin("cifar10-jpg", (3, 32, 32), 10)
def load_cifar10_jpg(data_dir: str | None, download: bool = False) -> Data:
    """The CIFAR-10 JPEG copy of shared/data (ImageFolder train/ and test/)."""
    root = Path(data_dir or "data/cifar10-jpg")
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise SuiteError(
            f"CIFAR-10 JPEG copy not found in {root} (need train/ and test/): unpack it with "
            f"'mkdir -p {root} && tar xzf ../shared/data/cifar10-jpg.tar.gz -C {root}'"
        )
    train, test, fp = _cached(
        root / "greg-suite-cifar10jpg.pt",
        lambda: (_decode_image_folder(root / "train"), _decode_image_folder(root / "test")),
    )
    return Data(
        "cifar10-jpg",
        "CIFAR-10 (JPEG copy)",
        10,
        train,
        test,
        IMAGENET_MEAN,
        IMAGENET_STD,
        pad=4,
        flip=True,
        fingerprint=fp,
        source=str(root),
    )


def _load_cifar(kind: str, data_dir: str | None, download: bool) -> Data:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, classes, label = (CIFAR10, 10, "CIFAR-10") if kind == "cifar10" else (CIFAR100, 100, "CIFAR-100")
    root = Path(data_dir or "data")

    def decode():
        try:
            parts = [cls(str(root), train=t, download=download) for t in (True, False)]
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise SuiteError(
                f"{label} not found in {root}: pass --data-dir to the folder holding "
                f"{cls.base_folder}/, or add --download where the network allows ({e})"
            ) from None
        return tuple(
            TensorSplit(
                torch.from_numpy(p.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(p.targets, dtype=torch.long)
            )
            for p in parts
        )

    if not (root / cls.base_folder).is_dir() and not download:
        raise SuiteError(
            f"{label} not found in {root}/{cls.base_folder}: pass --data-dir to the folder "
            f"holding it, or add --download where the network allows"
        )
    train, test, fp = _cached(root / f"greg-suite-{kind}.pt", decode)
    # The paper normalises CIFAR with the ImageNet mean/std (methods/GREG_SPEC.md, "The paper's recipes").
    return Data(
        kind,
        label,
        classes,
        train,
        test,
        IMAGENET_MEAN,
        IMAGENET_STD,
        pad=4,
        flip=True,
        fingerprint=fp,
        source=str(root),
    )


@builtin("cifar10", (3, 32, 32), 10)
def load_cifar10(data_dir: str | None, download: bool = False) -> Data:
    return _load_cifar("cifar10", data_dir, download)


@builtin("cifar100", (3, 32, 32), 100)
def load_cifar100(data_dir: str | None, download: bool = False) -> Data:
    return _load_cifar("cifar100", data_dir, download)


@builtin("imagenet", (3, 224, 224), 1000)
def load_imagenet(data_dir: str | None, download: bool = False) -> Data:
    """ImageNet as ImageFolder train/ and val/ with the standard transforms, read by DataLoader workers."""
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    root = Path(data_dir or "data/imagenet")
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise SuiteError(f"ImageNet not found in {root} (need train/ and val/ class folders): pass --data-dir")
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_set = ImageFolder(
        str(root / "train"), T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    )
    val_set = ImageFolder(str(root / "val"), T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]))
    # The fingerprint of ImageNet hashes the sorted file list and sizes, not 150 GB of bytes.
    h = hashlib.sha256()
    for p, t in train_set.samples + val_set.samples:
        h.update(f"{os.path.relpath(p, root)}:{t}:{os.path.getsize(p)}".encode())
    return Data(
        "imagenet",
        "ImageNet (ILSVRC-2012)",
        len(train_set.classes),
        None,
        None,
        IMAGENET_MEAN,
        IMAGENET_STD,
        pad=0,
        flip=False,
        fingerprint=h.hexdigest()[:16],
        source=str(root),
        streamed=Streamed(train_set, val_set, on_device=False),
    )


def info(name: str, data_dir: str | None = None) -> userdata.DataInfo:
    """Input shape and classes of a named dataset: a built-in's without loading it, a user dataset's
    from its data (``suite.data.userdata.info``)."""
    if userdata.is_user_dataset(name):
        return userdata.info(name, data_dir)
    return _builtin(name).info


def load(name: str, data_dir: str | None = None, download: bool = False, options: dict | None = None) -> Data:
    """Load a named dataset, or a user's (``suite.data.userdata``: ``imagefolder:PATH``,
    ``torchvision:CLASS``, ``file.py:factory``, with ``options`` for normalisation and augmentation);
    a missing data dir is a one-line :class:`SuiteError` saying how to get it."""
    if userdata.is_user_dataset(name):
        return userdata.load(name, data_dir, download, options)
    if options:
        raise SuiteError(f"data_options apply to user datasets; {name} has the paper's normalisation")
    return _builtin(name).load(data_dir, download)


def _builtin(name: str) -> DatasetEntry:
    try:
        return DATASETS.get(name)
    except SuiteError as e:  # its one-line "did you mean" error, with the other forms
        raise SuiteError(f"{e}; or imagefolder:PATH, torchvision:CLASS, path/to/file.py:factory") from None
