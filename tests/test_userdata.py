"""A user's data: an ImageFolder of real Fashion-MNIST images and a torchvision class on a data
dir, through the loaders and through ``suite run --smoke`` with a user's model file."""
import gzip
import json
import struct
from pathlib import Path

import pytest
import torch

from suite import userdata
from suite.cli import main
from suite.errors import SuiteError
from suite.measure import count_flops

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
    assert sorted(map(bytes, data.train.x.flatten(1).numpy())) == sorted(map(bytes, written["train"].flatten(1).numpy()))
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
        assert 0 <= r["top1"] <= 100
    assert _files(root) == before  # nothing written into the user's folder
    # an impossible target is refused at plan time, before any baseline
    assert main(["run", "--setting", str(toml), "--methods", "l1", "--target", "80x", "--smoke",
                 "--runs-dir", str(tmp_path / "runs2")]) == 2
    assert "beyond reach" in capsys.readouterr().err
    assert not (tmp_path / "runs2").exists()


def test_readme_example_is_the_example_file():
    """The README's "Bring your own model and data" TOML is the file the commands use."""
    import re
    import tomllib
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Bring your own model and data"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    assert tomllib.loads(block) == tomllib.loads((root / "suite" / "examples" / "fashion4.toml").read_text())


def test_streamed_imagefolder_yields_the_images_and_refuses_limits(fmnist, tmp_path, monkeypatch):
    """Above MEMORY_LIMIT an ImageFolder is streamed by DataLoader workers: one epoch holds every
    training image once (read back through the normalisation), and a setting's train_limit or
    test_limit, which only cut tensors held in memory, is refused in one line instead of ignored."""
    from suite.runner import load_data
    from suite.settings import get_setting
    root = tmp_path / "fashion4"
    written = _folder(fmnist, root, (8, 4))
    monkeypatch.setattr(userdata, "MEMORY_LIMIT", 0)
    data = userdata.load(f"imagefolder:{root}", options={"pad": 0, "flip": False})
    assert data.train is None and data.batches_per_epoch(8) == 4
    xs = torch.cat([x for x, _ in data.train_batches(8, 0, 0, torch.device("cpu"), stream="baseline")])
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    pixels = ((xs * std + mean) * 255).round().to(torch.uint8)
    assert sorted(map(bytes, pixels.flatten(1).numpy())) == sorted(map(bytes, written["train"].flatten(1).numpy()))
    for field in ("train_limit", "test_limit"):
        toml = tmp_path / f"{field}.toml"
        toml.write_text(TOML.format(model=USER_NET).replace('reduced = true', f'reduced = true\n{field} = 16'))
        with pytest.raises(SuiteError, match="is streamed"):
            load_data(get_setting(str(toml)), None)
