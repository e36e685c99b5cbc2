"""The NNI 3.0 entries: exact per-layer counts, untouched input models, and nni-l1 as an
independent check of our own L1 choice."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from methods import registry
from methods.base import PruneTask
from methods.criteria import l1_smallest_filters, smallest_weights_mask
from suite.errors import SuiteError
from suite.models.nets import build_model
from suite.models.ratios import n_pruned
from suite.spec.settings import get_setting

CPU = torch.device("cpu")
FILTER_ENTRIES = ["nni-l1", "nni-l2", "nni-fpgm", "nni-slim", "nni-taylor"]


def make_task(layer_ratios, data=None, max_iters=10, n_batches=None):
    def batches(n):
        return itertools.islice(data.train_batches(32, 0, 0, CPU, stream="own"), min(n, n_batches or n))

    return PruneTask(
        layer_ratios=layer_ratios,
        device=CPU,
        seed=0,
        max_iters=max_iters,
        train=None,
        batches=batches if data is not None else None,
        example=torch.zeros(1, 1, 28, 28),
    )


def odd_net() -> nn.Module:
    """Widths 22 and 43: there k / n floors one short in float (n * (15/22) < 15), which NNI's
    int(n * sparse_ratio) would turn into one filter too few."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 22, 3, padding=1, bias=False),
        nn.BatchNorm2d(22),
        nn.ReLU(),
        nn.Conv2d(22, 43, 3, padding=1, bias=False),
        nn.BatchNorm2d(43),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(43, 10),
    )


ODD_RATIOS = {"0": 15 / 22, "3": 23 / 43}


def test_entries_registered():
    assert registry.names("nni-*") == sorted(FILTER_ENTRIES + ["nni-level"])
    assert registry.get("nni-level").granularity == "weight"
    assert all(registry.get(n).granularity == "filter" for n in FILTER_ENTRIES)


@pytest.mark.parametrize(
    "setting, model_args", [("cifar10jpg-resnet20", ("resnet20", 10)), ("fmnist-cnn4", ("cnn4", 10, 1))]
)
def test_nni_l1_matches_our_l1(setting, model_args):
    torch.manual_seed(0)
    model = build_model(*model_args)
    ratios = get_setting(setting).layer_ratios(model)
    got = registry.get("nni-l1").prune(model, make_task(ratios), registry.get("nni-l1").Hparams()).filters
    assert got == l1_smallest_filters(model, ratios)
    assert any(got.values())


@pytest.mark.parametrize("name", FILTER_ENTRIES)
def test_filter_entries_exact_counts_and_model_untouched(name, fmnist):
    model = odd_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [n for n, _ in model.named_parameters()]
    method = registry.get(name)
    choice = method.prune(model, make_task(ODD_RATIOS, fmnist, max_iters=5), method.Hparams())
    assert set(choice.filters) == set(ODD_RATIOS)
    for layer, n in (("0", 22), ("3", 43)):
        idx = choice.filters[layer]
        assert idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < n
    # 15 of 22 and 23 of 43: NNI's int(n * ratio) would give 14 and 22
    assert {k: len(v) for k, v in choice.filters.items()} == {"0": 15, "3": 23}
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [n for n, _ in model.named_parameters()] == params  # NNI's buffers swapped back
    assert not any(hasattr(m, "_nni_wrapper") for m in model.modules())
    assert choice.info.get("training_steps", 0) == (5 if method.trained else 0)
    if name == "nni-l1":
        assert choice.filters == l1_smallest_filters(model, ODD_RATIOS)


@pytest.mark.parametrize(
    "model_fn, ratios_fn",
    [
        (
            lambda: build_model("resnet20", 10),
            lambda m: get_setting("cifar10jpg-resnet20").layer_ratios(m, granularity="weight"),
        ),
        (odd_net, lambda m: {"0": 27 / 198, "3": 47 / 8514, "8": 0.3}),  # floors short without the fix
    ],
)
def test_level_masks_are_smallest_weights(model_fn, ratios_fn):
    torch.manual_seed(0)
    model = model_fn()
    ratios = ratios_fn(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = registry.get("nni-level")
    masks = method.prune(model, make_task(ratios), method.Hparams()).masks
    assert set(masks) == set(ratios)
    for layer, r in ratios.items():
        w = model.get_submodule(layer).weight
        m = masks[layer]
        assert m.shape == w.shape and set(m.unique().tolist()) <= {0.0, 1.0}
        assert int((m == 0).sum()) == n_pruned(r, w.numel())
        assert torch.equal(m, smallest_weights_mask(w, r))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_slim_targets_the_bn_after_each_conv():
    model = build_model("cnn4", 10, 1)
    assert registry.get("nni-slim").targets(model, ["features.0", "features.4"], torch.zeros(1, 1, 28, 28)) == {
        "features.0": "features.1",
        "features.4": "features.5",
    }
    with pytest.raises(SuiteError, match="BatchNorm2d"):
        registry.get("nni-slim").targets(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), ["0"], torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("name", ["nni-slim", "nni-taylor"])
def test_training_entries_on_cnn4(name, fmnist):
    model = build_model("cnn4", 10, 1)
    ratios = get_setting("fmnist-cnn4").layer_ratios(model)
    method = registry.get(name)
    hp = method.Hparams.from_dict({"training_steps": 3})
    choice = method.prune(model, make_task(ratios, fmnist, max_iters=100), hp)
    assert choice.info["training_steps"] == 3
    assert {k: len(v) for k, v in choice.filters.items()} == {
        k: n_pruned(r, model.get_submodule(k).out_channels) for k, r in ratios.items()
    }


def test_too_few_batches_is_a_one_line_error(fmnist):
    method = registry.get("nni-taylor")
    with pytest.raises(SuiteError, match="ran out after 2 of 5"):
        method.prune(odd_net(), make_task(ODD_RATIOS, fmnist, max_iters=5, n_batches=2), method.Hparams())


@pytest.mark.parametrize("name", FILTER_ENTRIES + ["nni-level"])
def test_hparams_json_and_space(name):
    cls = registry.get(name).Hparams
    hp = cls()
    assert cls.from_dict(json.loads(json.dumps(hp.to_dict()))) == hp
    for field, (low, high, _) in cls.space().items():
        assert low <= getattr(hp, field) <= high
    if name in ("nni-slim", "nni-taylor"):
        assert "training_steps" in cls.space()
        with pytest.raises(SuiteError):
            cls.from_dict({"training_steps": 0})
