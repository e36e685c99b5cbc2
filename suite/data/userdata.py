"""Data from anywhere: a user's ImageFolder, any torchvision dataset class, or a user's factory.

A dataset name (a setting's ``dataset``) is a built-in name (``suite.data.datasets.DATASETS``) or one of:
  ``imagefolder:PATH``         ``PATH/train/`` plus ``PATH/val/`` or ``PATH/test/``, one folder per class
                               (classes are train's folders, sorted, as torchvision's ImageFolder does)
  ``torchvision:CLASS``        a class of ``torchvision.datasets`` (MNIST, SVHN, STL10, ...) on the
                               data dir, with ``train=True/False`` or ``split='train'/'test'``
  ``path/to/file.py:factory``  ``factory(data_dir)`` (or ``factory()``) returns (train, test)
                               datasets of (image, label): PIL images or uint8 / [0, 1] float tensors

Channels, classes and input size come from the data: grey images stay one channel, the class count
is the number of classes found, the size is the first training image's (others are resized to it).
Normalisation is the training set's per-channel mean and std unless the setting gives them
(``data_options``); augmentation is a random crop with zero padding of 1/8 of the smaller side and a
horizontal flip (``pad``, ``flip`` in ``data_options``; digits want ``flip = false``).

Small sets are decoded once into uint8 tensors and cached under the suite's cache dir
(``$GREG_SUITE_CACHE``, else ``$XDG_CACHE_HOME/greg-suite``, else ``~/.cache/greg-suite``), never in
the user's data folder; an ImageFolder larger than ``MEMORY_LIMIT`` bytes decoded is streamed by
DataLoader workers instead. The cache key covers the source (an ImageFolder's file names, sizes and
times; a torchvision class's files; a factory's source file), so changed data is decoded again.
The fingerprint hashes the decoded tensors (a streamed set: its file list and sizes) and the options.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from suite.data.split import Data, TensorSplit, fingerprint
from suite.data.streaming import Streamed
from suite.errors import SuiteError

CACHE_VERSION = 1
MEMORY_LIMIT = 4 << 30  # decoded bytes above which an ImageFolder is streamed rather than held
OPTION_KEYS = {"mean", "std", "pad", "flip"}


def cache_root() -> Path:
    """The suite's cache dir (decoded datasets, the settings overview)."""
    if os.environ.get("GREG_SUITE_CACHE"):
        return Path(os.environ["GREG_SUITE_CACHE"])
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "greg-suite"


def is_user_dataset(name: str) -> bool:
    return isinstance(name, str) and (
        name.startswith(("imagefolder:", "torchvision:")) or re.fullmatch(r".+\.py:[A-Za-z_]\w*", name) is not None
    )


@dataclass(frozen=True)
class DataInfo:
    """What a setting needs to know before training: (C, H, W) and the class count."""

    input_shape: tuple[int, int, int]
    num_classes: int


def check_options(options: dict) -> None:
    """``data_options``: mean/std lists of positive std, pad an integer >= 0, flip a bool."""
    if not isinstance(options, dict) or set(options) - OPTION_KEYS:
        raise SuiteError(f"data_options = {options!r}: must be a table with optional keys {sorted(OPTION_KEYS)}")
    for k in ("mean", "std"):
        v = options.get(k)
        if v is not None and (
            not isinstance(v, list)
            or not v
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        ):
            raise SuiteError(f"data_options.{k} = {v!r}: must be a list of numbers, one per channel")
    if options.get("std") is not None and any(x <= 0 for x in options["std"]):
        raise SuiteError(f"data_options.std = {options['std']!r}: every entry must be > 0")
    pad = options.get("pad")
    if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or pad < 0):
        raise SuiteError(f"data_options.pad = {pad!r}: must be an integer >= 0")
    if "flip" in options and not isinstance(options["flip"], bool):
        raise SuiteError(f"data_options.flip = {options['flip']!r}: must be true or false")


# --------------------------------------------------------------------------- entry points
def info(name: str, data_dir: str | None = None) -> DataInfo:
    """Shape and classes of a user dataset. An ImageFolder is read off its folders and first image
    (no decoding); the others are decoded (and cached) to know."""
    if name.startswith("imagefolder:"):
        root = _folder_root(name)
        classes, samples, _ = _folder_listing(root)
        return DataInfo(_image_shape(samples["train"][0][0]), len(classes))
    train, _, classes, _, _ = _decoded(name, data_dir, download=False)
    return DataInfo(tuple(train.x.shape[1:]), classes)


def load(name: str, data_dir: str | None = None, download: bool = False, options: dict | None = None) -> Data:
    """A user dataset as :class:`suite.data.split.Data`, normalised by the training set unless ``options`` say."""
    options = dict(options or {})
    check_options(options)
    if name.startswith("imagefolder:"):
        root = _folder_root(name)
        classes, samples, _ = _folder_listing(root)
        shape = _image_shape(samples["train"][0][0])
        if len(samples["train"]) * math.prod(shape) > MEMORY_LIMIT:
            return _streamed(name, root, classes, samples, shape, options)
    train, test, classes, fp, source = _decoded(name, data_dir, download)
    c, h, w = train.x.shape[1:]
    mean, std = _stats(train.x, options)
    pad = options.get("pad", max(1, round(min(h, w) / 8)))
    flip = options.get("flip", True)
    return Data(
        name,
        _label(name),
        classes,
        train,
        test,
        mean,
        std,
        pad=pad,
        flip=flip,
        fingerprint=f"{fp}/{_options_digest(mean, std, pad, flip)}",
        source=source,
    )


def _label(name: str) -> str:
    if name.startswith("imagefolder:"):
        return f"ImageFolder {Path(name.split(':', 1)[1]).name}"
    if name.startswith("torchvision:"):
        return f"{name.split(':', 1)[1]} (torchvision)"
    path, factory = name.rsplit(":", 1)
    return f"{factory} ({Path(path).name})"


def _options_digest(mean, std, pad, flip) -> str:
    blob = json.dumps(
        {"mean": [round(m, 6) for m in mean], "std": [round(s, 6) for s in std], "pad": pad, "flip": flip},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _stats(x: torch.Tensor, options: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images in [0, 1] (float64, in chunks), unless given."""
    c = x.shape[1]
    for k in ("mean", "std"):
        if options.get(k) is not None and len(options[k]) != c:
            raise SuiteError(f"data_options.{k} has {len(options[k])} entries; the data has {c} channel(s)")
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(x), 4096):
        chunk = x[i : i + 4096].to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        s += chunk.sum(1)
        s2 += chunk.pow(2).sum(1)
    n = x.numel() // c
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    return (
        tuple(float(v) for v in options.get("mean") or mean.tolist()),
        tuple(float(v) for v in options.get("std") or std.tolist()),
    )


# --------------------------------------------------------------------------- ImageFolder
def _folder_root(name: str) -> Path:
    root = Path(name.split(":", 1)[1]).expanduser()
    if not (root / "train").is_dir() or not ((root / "val").is_dir() or (root / "test").is_dir()):
        raise SuiteError(f"{name}: need {root}/train/ and {root}/val/ or {root}/test/, each with one folder per class")
    return root


def _folder_listing(root: Path):
    """(classes, {"train": samples, "test": samples}, stamp): test/ is used when present, else val/.
    The evaluation split is indexed by train's classes, so a missing class cannot shift labels."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    classes, class_to_idx = find_classes(str(root / "train"))
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    extra = sorted({p.name for p in test_dir.iterdir() if p.is_dir()} - set(classes))
    if extra:
        raise SuiteError(f"{test_dir} has class folders that train/ lacks: {', '.join(extra[:5])}")
    try:
        samples = {
            "train": make_dataset(str(root / "train"), class_to_idx, IMG_EXTENSIONS),
            "test": make_dataset(str(test_dir), class_to_idx, IMG_EXTENSIONS, allow_empty=True),
        }
    except FileNotFoundError as e:
        raise SuiteError(f"imagefolder:{root}: {e}") from None
    if not samples["test"]:
        raise SuiteError(f"{test_dir} holds no images ({', '.join(IMG_EXTENSIONS)})")
    h = hashlib.sha256()
    for split, rows in samples.items():
        for p, t in rows:
            st = os.stat(p)
            h.update(f"{split}:{os.path.relpath(p, root)}:{t}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return classes, samples, h.hexdigest()


def _channels(mode: str) -> int:
    return 1 if mode in ("1", "L", "LA", "I", "I;16", "F") else 3


def _image_shape(path: str) -> tuple[int, int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return _channels(im.mode), im.height, im.width


def _decode_image(path: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """One image as uint8 [C, H, W] with Pillow: grey stays 1 channel, other sizes resized to (H, W).
    The in-memory and the streamed path both decode with this, so they see the same pixels."""
    from PIL import Image

    c, h, w = shape
    with Image.open(path) as im:
        im = im.convert("L" if c == 1 else "RGB")
        if im.size != (w, h):
            im = im.resize((w, h), Image.BILINEAR)
        return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(h, w, c).permute(2, 0, 1)


def _decode_images(paths: list[str], shape: tuple[int, int, int], desc: str) -> torch.Tensor:
    """Decode to uint8 [N, C, H, W] (see :func:`_decode_image`), with a progress bar."""
    from tqdm import tqdm

    out = torch.empty(len(paths), *shape, dtype=torch.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, disable=None)):
        out[i] = _decode_image(p, shape)
    return out


# --------------------------------------------------------------------------- decoded sets
def _decoded(name: str, data_dir: str | None, download: bool):
    """(train, test, classes, tensor fingerprint, source) of a user dataset, from the cache when
    its source has not changed since it was decoded."""
    if name.startswith("imagefolder:"):
        root = _folder_root(name)
        classes, samples, stamp = _folder_listing(root)
        shape = _image_shape(samples["train"][0][0])

        def decode():
            ys = {k: torch.tensor([t for _, t in v], dtype=torch.long) for k, v in samples.items()}
            return (
                TensorSplit(_decode_images([p for p, _ in samples["train"]], shape, "decoding train"), ys["train"]),
                TensorSplit(_decode_images([p for p, _ in samples["test"]], shape, "decoding test"), ys["test"]),
                len(classes),
            )

        return (*_cached(f"{name}|{stamp}", decode), str(root))
    if name.startswith("torchvision:"):
        return _torchvision(name.split(":", 1)[1], data_dir, download)
    return _factory(name, data_dir)


def _cached(key: str, decode):
    path = cache_root() / "data" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            if blob.get("version") == CACHE_VERSION:
                return (
                    TensorSplit(blob["train_x"], blob["train_y"]),
                    TensorSplit(blob["test_x"], blob["test_y"]),
                    blob["classes"],
                    blob["fingerprint"],
                )
        except Exception:  # a corrupt cache is rebuilt, never trusted
            pass
    train, test, classes = decode()
    fp = fingerprint(train.x, train.y, test.x, test.y)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(
            {
                "version": CACHE_VERSION,
                "train_x": train.x,
                "train_y": train.y,
                "test_x": test.x,
                "test_y": test.y,
                "classes": classes,
                "fingerprint": fp,
            },
            tmp,
        )
        os.replace(tmp, path)
    except OSError:  # an unwritable cache dir costs a decode next time, nothing else
        pass
    return train, test, classes, fp


def _to_uint8(img, where: str) -> torch.Tensor:
    """A PIL image, a uint8 tensor or a float tensor in [0, 1] -> uint8 [C, H, W]."""
    import numpy as np
    from PIL import Image

    if isinstance(img, Image.Image):
        if img.mode not in ("L", "RGB"):
            img = img.convert("L" if _channels(img.mode) == 1 else "RGB")
        a = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
        return a[None] if a.dim() == 2 else a.permute(2, 0, 1)
    if isinstance(img, torch.Tensor):
        t = img if img.dim() == 3 else img[None]
        if t.dtype == torch.uint8:
            return t
        if t.is_floating_point() and t.min() >= 0 and t.max() <= 1:
            return t.mul(255).round().to(torch.uint8)
    raise SuiteError(
        f"{where}: an image must be a PIL image, a uint8 tensor or a float tensor in [0, 1], got {type(img).__name__}"
    )


def _stack(dataset, where: str) -> TensorSplit:
    xs, ys = [], []
    for i in range(len(dataset)):
        img, label = dataset[i]
        xs.append(_to_uint8(img, where))
        ys.append(int(label))
    if not xs:
        raise SuiteError(f"{where} is empty")
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise SuiteError(f"{where}: images of different shapes {sorted(shapes)[:3]}; resize them in the dataset")
    return TensorSplit(torch.stack(xs), torch.tensor(ys, dtype=torch.long))


def _classes(dataset, train: TensorSplit, test: TensorSplit) -> int:
    named = getattr(dataset, "classes", None)
    return len(named) if named else int(max(train.y.max(), test.y.max())) + 1


def _source_stamp(root: Path) -> str:
    h = hashlib.sha256(str(root.resolve()).encode())
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith(".pt") and f.startswith("greg-suite"):
                continue
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _torchvision(cls_name: str, data_dir: str | None, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, tvd.VisionDataset)):
        raise SuiteError(
            f"torchvision:{cls_name} is not a torchvision dataset class (e.g. torchvision:MNIST, "
            f"torchvision:SVHN, torchvision:STL10)"
        )
    if not data_dir:
        raise SuiteError(
            f"torchvision:{cls_name} needs --data-dir DIR (or data_dir in the setting file): the "
            f"folder torchvision's {cls_name} reads (add --download where the network allows)"
        )
    root = Path(data_dir).expanduser()
    params = inspect.signature(cls.__init__).parameters
    if "train" in params:
        kw = [{"train": True}, {"train": False}]
    elif "split" in params:
        kw = [{"split": "train"}, {"split": "test"}]
    else:
        raise SuiteError(f"torchvision:{cls_name} takes neither train= nor split=; wrap it in a file.py:factory")
    extra = {"download": download} if "download" in params else {}

    def decode():
        try:
            parts = [cls(str(root), **k, **extra) for k in kw]
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            raise SuiteError(
                f"torchvision:{cls_name} not found in {root}: {' '.join(str(e).split())} "
                f"(add --download where the network allows)"
            ) from None
        train, test = (_stack(p, f"torchvision:{cls_name} {list(k.values())[0]}") for p, k in zip(parts, kw))
        return train, test, _classes(parts[0], train, test)

    if not root.is_dir():
        raise SuiteError(f"torchvision:{cls_name}: data dir {root} does not exist")
    return (*_cached(f"torchvision:{cls_name}|{_source_stamp(root)}", decode), str(root))


def _factory(name: str, data_dir: str | None):
    from suite.usercode import load_module

    path, factory = name.rsplit(":", 1)
    p = Path(path)
    if not p.is_file():
        raise SuiteError(f"dataset file {p} does not exist (write the dataset as path/to/file.py:factory)")
    fn = getattr(load_module(p), factory, None)
    if not callable(fn):
        raise SuiteError(f"dataset file {p} has no function {factory!r}")

    def decode():
        try:
            takes_dir = len(inspect.signature(fn).parameters) > 0
            parts = fn(data_dir) if takes_dir else fn()
        except Exception as e:
            raise SuiteError(f"{name}() failed: {type(e).__name__}: {e}") from None
        if not (isinstance(parts, (tuple, list)) and len(parts) == 2):
            raise SuiteError(f"{name} must return (train_dataset, test_dataset), got {type(parts).__name__}")
        train, test = (_stack(d, f"{name} {s}") for d, s in zip(parts, ("train", "test")))
        return train, test, _classes(parts[0], train, test)

    key = f"{p.resolve()}:{factory}|{data_dir}|{hashlib.sha256(p.read_bytes()).hexdigest()}"
    return (*_cached(key, decode), str(p.resolve()))


# --------------------------------------------------------------------------- streamed ImageFolder
class _FolderImages:
    """(uint8 image, label) of ImageFolder samples, decoded by a DataLoader worker; the crop, flip and
    normalisation are then done on the training device by the Data (``suite.data.streaming``)."""

    def __init__(self, samples: list[tuple[str, int]], shape: tuple[int, int, int]):
        self.samples, self.shape = samples, shape

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return _decode_image(path, self.shape), label


def _streamed(name: str, root: Path, classes, samples, shape, options: dict) -> Data:
    """A large ImageFolder read by DataLoader workers (``suite.data.streaming``): the same batches, crops
    and flips as the in-memory path would give; mean and std (unless given) from a seeded sample of
    5,000 training images."""
    c, h, w = shape
    if options.get("mean") is None or options.get("std") is None:
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(samples["train"]), generator=g)[:5000].tolist()
        mean, std = _stats(_decode_images([samples["train"][i][0] for i in pick], shape, "sampling stats"), options)
    else:
        mean, std = _stats(torch.zeros(1, c, 1, 1, dtype=torch.uint8), options)
    pad = options.get("pad", max(1, round(min(h, w) / 8)))
    flip = options.get("flip", True)
    h_ = hashlib.sha256()
    for split, rows in samples.items():
        for p, t in rows:
            h_.update(f"{split}:{os.path.relpath(p, root)}:{t}:{os.path.getsize(p)}\n".encode())
    return Data(
        name,
        _label(name),
        len(classes),
        None,
        None,
        mean,
        std,
        pad=pad,
        flip=flip,
        fingerprint=f"{h_.hexdigest()[:16]}/{_options_digest(mean, std, pad, flip)}",
        source=str(root),
        streamed=Streamed(
            _FolderImages(samples["train"], shape), _FolderImages(samples["test"], shape), on_device=True
        ),
    )
