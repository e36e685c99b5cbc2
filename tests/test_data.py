"""Real data: shapes, fingerprints, the validation split, deterministic tensor augmentation."""

import pytest
import torch

from suite.data import datasets, split
from suite.errors import SuiteError


def test_fashion_mnist_is_real_and_fingerprinted(fmnist):
    assert fmnist.train.x.shape == (60000, 1, 28, 28) and fmnist.test.x.shape == (10000, 1, 28, 28)
    assert fmnist.train.x.dtype == torch.uint8
    assert torch.bincount(fmnist.train.y).tolist() == [6000] * 10
    assert abs(fmnist.train.x.float().mean().item() / 255 - 0.2860) < 1e-3  # the published mean
    # the fingerprint every published fmnist run records (leaderboards/runs/baselines/fmnist-cnn4/*/meta.json):
    # a change to what it hashes would orphan them
    assert fmnist.fingerprint == "ece172613115fb18"


def test_validation_split_is_carved_from_train(fmnist):
    d = fmnist.with_validation(5000, seed=0)
    assert len(d.val) == 5000 and len(d.train) == 55000 and d.test is fmnist.test
    assert torch.equal(d.val.x, fmnist.with_validation(5000, seed=0).val.x)
    assert not torch.equal(d.val.x, fmnist.with_validation(5000, seed=1).val.x)
    # a partition of the original training images: train + val hold each (image, label) exactly as often
    keys = lambda split: sorted(zip(map(bytes, split.x.flatten(1).numpy()), split.y.tolist()))  # noqa: E731
    assert sorted(keys(d.train) + keys(d.val)) == keys(fmnist.train)
    assert torch.bincount(d.val.y, minlength=10).min() > 350  # a random draw: every class is there


def test_batches_are_a_function_of_seed_epoch_index(small_fmnist):
    cpu = torch.device("cpu")
    a = list(small_fmnist.train_batches(256, seed=3, epoch=1, device=cpu, stream="baseline"))
    b = list(small_fmnist.train_batches(256, seed=3, epoch=1, device=cpu, stream="baseline", start=5))
    assert len(a) == 8 and len(b) == 3
    assert torch.equal(a[5][0], b[0][0]) and torch.equal(a[7][1], b[2][1])
    c = list(small_fmnist.train_batches(256, seed=3, epoch=2, device=cpu, stream="baseline"))
    assert not torch.equal(a[0][1], c[0][1])


def test_augmentation_crops_and_flips(small_fmnist):
    x = small_fmnist.train.x[:64]
    g = split.batch_generator(0, 0, 0, torch.device("cpu"))
    out = small_fmnist._augment(x, g)
    plain = small_fmnist._normalise(x)
    assert out.shape == plain.shape
    changed = (out != plain).flatten(1).any(1).float().mean().item()
    assert changed > 0.5  # most images moved or flipped
    # each output is some shifted/flipped copy: its pixel sum cannot exceed the original's (zero pad)
    raw_sum = x.float().flatten(1).sum(1)
    aug_raw = out * small_fmnist.std[0] + small_fmnist.mean[0]
    assert (aug_raw.flatten(1).sum(1) * 255 <= raw_sum + 1).all()


def test_missing_data_dir_is_one_line(tmp_path):
    for name in ("fashion-mnist", "cifar10-jpg", "cifar10", "cifar100", "imagenet"):
        with pytest.raises(SuiteError) as e:
            datasets.load(name, str(tmp_path / "nothing"))
        assert "\n" not in str(e.value) and "nothing" in str(e.value)


def test_cifar10_jpg_copy(cifar_dir):
    d = datasets.load("cifar10-jpg", str(cifar_dir))
    assert d.label == "CIFAR-10 (JPEG copy)"
    assert d.train.x.shape == (50000, 3, 32, 32) and d.test.x.shape == (10000, 3, 32, 32)
    means = d.train.x.float().mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.4913, 0.4821, 0.4465]), atol=2e-3)  # data/README.md
    assert datasets.load("cifar10-jpg", str(cifar_dir)).fingerprint == d.fingerprint  # cached decode agrees
    # the fingerprint recorded by the published CIFAR-10 JPEG runs (leaderboards/runs), decoded by
    # torchvision.io before the switch to Pillow: the pixels must never change under a decoder swap
    assert d.fingerprint == "eec90e10bd2f5438"


def test_cifar10_jpg_decodes_without_deprecation_warnings(cifar_dir):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchvision.io's decoders warn once per image
        test = datasets._decode_image_folder(cifar_dir / "test")
    assert test.x.shape == (10000, 3, 32, 32) and test.x.dtype == torch.uint8
    assert torch.equal(test.x, datasets.load("cifar10-jpg", str(cifar_dir)).test.x)
