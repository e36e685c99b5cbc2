"""A user's data: an ImageFolder of real Fashion-MNIST images and a torchvision class on a data
dir, through the loaders and through ``suite run --smoke`` with a user's model file."""

import gzip
import json
import struct
from pathlib import Path

import pytest
import torch

from suite.cli.commands import main
from suite.data import userdata
from suite.errors import SuiteError
from suite.models.size import count_flops

USER_NET = Path(__file__).parent.parent / "suite" / "examples" / "mynet.py"
CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker", 9: "boot"}  # four Fashion-MNIST classes


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Caches go to a fresh suite cache dir, never into the data folder."""
    monkeypatch.setenv("GREG_SUITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _folder(fmnist, root: Path, per_class=(75, 25)) -> dict:
    """An ImageFolder of real Fashion-MNIST PNGs: train/ and test/, four class folders; returns the
    written images per split as uint8 tensors (the test's own record of what is on disk)."""
    from PIL import Image

    written = {}
    for split, part, n in (("train", fmnist.train, per_class[0]), ("test", fmnist.test, per_class[1])):
        xs = []
        for label, name in CLASSES.items():
            (root / split / name).mkdir(parents=True)
            idx = (part.y == label).nonzero().flatten()[:n]
            for j, i in enumerate(idx.tolist()):
                Image.fromarray(part.x[i, 0].numpy(), "L").save(root / split / name / f"{j:04d}.png")
                xs.append(part.x[i])
        written[split] = torch.stack(xs)
    return written


def _files(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_imagefolder_loads_grey_classes_and_stats(fmnist, tmp_path, cache):
    root = tmp_path / "fashion4"
    written = _folder(fmnist, root, (20, 5))
    before = _files(root)
    info = userdata.info(f"imagefolder:{root}")
    assert info.input_shape == (1, 28, 28) and info.num_classes == 4
    data = userdata.load(f"imagefolder:{root}")
    assert data.train.x.shape == (80, 1, 28, 28) and data.test.x.shape == (20, 1, 28, 28)
    # the pixels are the images written (class folders sorted: boot, sneaker, trouser, tshirt)
    order = sorted(CLASSES.values())
    assert sorted(data.train.y.tolist()) == sorted(sum(([order.index(c)] * 20 for c in CLASSES.values()), []))
    assert sorted(map(bytes, data.train.x.flatten(1).numpy())) == sorted(
        map(bytes, written["train"].flatten(1).numpy())
    )
    # normalisation from the training set
    pixels = written["train"].double() / 255
    assert data.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-6)
    assert data.std[0] == pytest.approx(pixels.std(unbiased=False).item(), abs=1e-6)
    assert _files(root) == before  # nothing written into the user's folder
    assert list(cache.rglob("*.pt"))
    # the same folder gives the same fingerprint; a changed image gives another one
    assert userdata.load(f"imagefolder:{root}").fingerprint == data.fingerprint
    from PIL import Image

    first = sorted((root / "train" / "boot").iterdir())[0]
    Image.new("L", (28, 28), 255).save(first)
    assert userdata.load(f"imagefolder:{root}").fingerprint != data.fingerprint
    # options change the fingerprint too (they change every trained number)
    assert userdata.load(f"imagefolder:{root}", options={"flip": False}).fingerprint != data.fingerprint


def test_imagefolder_errors(fmnist, tmp_path):
    root = tmp_path / "bad"
    (root / "train" / "a").mkdir(parents=True)
    with pytest.raises(SuiteError, match="need .*train/ and .*val/ or .*test/"):
        userdata.info(f"imagefolder:{root}")
    (root / "val" / "zzz").mkdir(parents=True)
    with pytest.raises(SuiteError, match="class folders that train/ lacks: zzz"):
        userdata.load(f"imagefolder:{root}")
    with pytest.raises(SuiteError, match="data_options.pad"):
        userdata.check_options({"pad": -1})


def _idx(path: Path, tensor: torch.Tensor) -> None:
    dims = tuple(tensor.shape)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + struct.pack(">" + "I" * len(dims), *dims))
        f.write(tensor.numpy().tobytes())


def test_torchvision_class_on_a_data_dir(fmnist, tmp_path):
    """torchvision's MNIST class on a folder of MNIST-format files (real Fashion-MNIST images)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, part, n in (("train", fmnist.train, 300), ("t10k", fmnist.test, 100)):
        _idx(raw / f"{stem}-images-idx3-ubyte.gz", part.x[:n, 0])
        _idx(raw / f"{stem}-labels-idx1-ubyte.gz", part.y[:n].to(torch.uint8))
        for kind in ("images-idx3", "labels-idx1"):  # torchvision reads the unpacked files
            p = raw / f"{stem}-{kind}-ubyte.gz"
            (raw / p.stem).write_bytes(gzip.decompress(p.read_bytes()))
    data = userdata.load("torchvision:MNIST", str(tmp_path))
    assert torch.equal(data.train.x, fmnist.train.x[:300]) and torch.equal(data.test.y, fmnist.test.y[:100])
    assert data.num_classes == 10 and data.label == "MNIST (torchvision)"
    with pytest.raises(SuiteError, match="needs --data-dir"):
        userdata.load("torchvision:MNIST", None)
    with pytest.raises(SuiteError, match="not a torchvision dataset class"):
        userdata.load("torchvision:NoSuchSet", str(tmp_path))


TOML = """
name = "my-fashion4"
dataset = "imagefolder:fashion4"
model = "{model}:build"
ratios = "0.5"
reduced = true
val_size = 20
data_options = {{ flip = false }}

[baseline]
epochs = 1
batch_size = 32
lr = {{ 0 = 0.05 }}

[finetune]
epochs = 1
batch_size = 32
lr = {{ 0 = 0.01 }}

[prune]
batch_size = 32
max_iters = 40

[method_overrides."greg*"]
update_interval = 1
penalty_increment = 0.5
stabilize_iters = 2
"""


def test_user_data_and_model_through_suite_run_smoke(fmnist, tmp_path, capsys):
    root = tmp_path / "fashion4"
    _folder(fmnist, root)
    before = _files(root)
    toml = tmp_path / "my.toml"
    toml.write_text(TOML.format(model=USER_NET))
    assert main(["list", "settings", str(toml), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["input_shape"] == [1, 28, 28] and row["num_classes"] == 4 and row["speedup"] > 1.5
    runs = tmp_path / "runs"
    assert main(["run", "--setting", str(toml), "--methods", "l1,greg1", "--smoke", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "ImageFolder fashion4" in out and "input 1x28x28" in out
    results = [json.loads(p.read_text()) for p in runs.rglob("result.json")]
    assert sorted(r["method"] for r in results) == ["greg1", "l1"]
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_net_check", USER_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flops = count_flops(module.UserNet(4, 1), (1, 28, 28))  # 4 classes, grey, 28x28: from the data
    for r in results:
        assert r["status"] == "smoke" and r["data_label"] == "ImageFolder fashion4"
        assert r["baseline_flops"] == flops and r["flops"] < flops
    assert _files(root) == before  # nothing written into the user's folder
    # an impossible target is refused at plan time, before any baseline
    assert (
        main(
            [
                "run",
                "--setting",
                str(toml),
                "--methods",
                "l1",
                "--target",
                "80x",
                "--smoke",
                "--runs-dir",
                str(tmp_path / "runs2"),
            ]
        )
        == 2
    )
    assert "beyond reach" in capsys.readouterr().err
    assert not (tmp_path / "runs2").exists()


def test_readme_example_is_the_example_file():
    """The README's "Bring your own model and data" TOML is the file the commands use."""
    import re
    import tomllib

    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Bring your own model and data") :]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    assert tomllib.loads(block) == tomllib.loads((root / "suite" / "examples" / "fashion4.toml").read_text())


def _batches(data, **kw):
    return [
        (x.clone(), y.clone()) for x, y in data.train_batches(8, 3, 1, torch.device("cpu"), stream="finetune", **kw)
    ]


def test_streamed_imagefolder_gives_the_in_memory_batches(fmnist, tmp_path, monkeypatch):
    """Above MEMORY_LIMIT an ImageFolder is read by DataLoader workers, which only decode: an epoch's
    batches, crops and flips (done on the device) and the test batches equal the in-memory path's bit
    for bit, whatever the number of workers and wherever an interrupted epoch resumes; the workers
    outlive the epoch."""
    root = tmp_path / "fashion4"
    _folder(fmnist, root, (8, 4))
    options = {"mean": [0.3], "std": [0.35], "pad": 3, "flip": True}
    held = userdata.load(f"imagefolder:{root}", options=options)
    monkeypatch.setattr(userdata, "MEMORY_LIMIT", 0)
    data = userdata.load(f"imagefolder:{root}", options=options)
    assert held.train is not None and data.train is None and data.batches_per_epoch(8) == 4
    epoch = _batches(data)
    assert len(epoch) == 4
    for (x, y), (hx, hy) in zip(epoch, _batches(held)):
        assert torch.equal(x, hx) and torch.equal(y, hy)
    assert not torch.equal(epoch[0][0], next(held.eval_batches("train", 8, torch.device("cpu")))[0])  # augmented
    loader = data.streamed._loaders["train", 8, "cpu"][0]
    pids = [w.pid for w in loader._iterator._workers]
    for (x, y), (rx, ry) in zip(epoch[2:], _batches(data, start=2), strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert [w.pid for w in loader._iterator._workers] == pids and all(w.is_alive() for w in loader._iterator._workers)
    data.streamed.workers = 1  # a fresh loader with one worker draws the same batches
    data.streamed._loaders.clear()
    assert all(torch.equal(x, ox) for (x, _), (ox, _) in zip(_batches(data), epoch, strict=True))
    test = list(data.eval_batches("test", 5, torch.device("cpu")))
    held_test = list(held.eval_batches("test", 5, torch.device("cpu")))
    assert all(torch.equal(x, hx) and torch.equal(y, hy) for (x, y), (hx, hy) in zip(test, held_test, strict=True))


def test_streamed_imagefolder_refuses_limits(fmnist, tmp_path, monkeypatch):
    """A setting's train_limit or test_limit cuts tensors held in memory: on streamed data it is
    refused in one line instead of ignored."""
    from suite.running.runner import load_data
    from suite.spec.settings import get_setting

    root = tmp_path / "fashion4"
    _folder(fmnist, root, (8, 4))
    monkeypatch.setattr(userdata, "MEMORY_LIMIT", 0)
    for field in ("train_limit", "test_limit"):
        toml = tmp_path / f"{field}.toml"
        toml.write_text(TOML.format(model=USER_NET).replace("reduced = true", f"reduced = true\n{field} = 16"))
        with pytest.raises(SuiteError, match=f"{field} applies to data held in memory; .* is streamed"):
            load_data(get_setting(str(toml)), None)


def test_imagenet_layout_streams_with_seeded_worker_transforms(fmnist, tmp_path):
    """ImageNet's random-resized crop runs in the workers (it needs the full image), under a seed per
    sample: the same epoch with one or two workers, resumed mid-epoch, gives the same batches; the
    next epoch draws other crops. Real Fashion-MNIST PNGs in ImageNet's train/ and val/ layout."""
    from suite.data.datasets import load_imagenet

    root = tmp_path / "imagenet"
    _folder(fmnist, root, (4, 2))
    (root / "test").rename(root / "val")
    data = load_imagenet(str(root))
    assert data.streamed is not None and data.batches_per_epoch(8) == 2
    epoch = _batches(data)
    assert epoch[0][0].shape == (8, 3, 224, 224)
    data.streamed.workers = 1
    data.streamed._loaders.clear()
    assert all(torch.equal(x, ox) for (x, _), (ox, _) in zip(_batches(data), epoch, strict=True))
    assert torch.equal(_batches(data, start=1)[0][0], epoch[1][0])
    other = [x for x, _ in data.train_batches(8, 3, 2, torch.device("cpu"), stream="finetune")]
    assert not any(torch.equal(a, b) for a in other for b, _ in epoch)
    assert sum(len(y) for _, y in data.eval_batches("test", 3, torch.device("cpu"))) == 8
