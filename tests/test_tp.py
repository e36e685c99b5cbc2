"""The Torch-Pruning entries: exact per-layer counts on the paper's nets and a torchvision ResNet,
the surgery accepts every choice, tp-l1 is l1's choice, and every sample of their own passes is
seen by the harness (planned_iters x batch).

ResNet cases train on random pixels: they check which filters and how many, never an accuracy."""

from __future__ import annotations

import pytest
import torch
from conftest import CPU, own_batches, sgd_run

from methods import registry
from methods.base import PruneTask
from methods.criteria import l1_smallest_filters
from suite.data.datasets import Data, TensorSplit
from suite.models.layouts import RESNET
from suite.models.nets import build_model, example_input
from suite.models.ratios import n_pruned, parse_ratios, resolve
from suite.models.surgery import remove_filters
from suite.spec.settings import get_setting

ENTRIES = [
    "tp-bn-scale",
    "tp-fpgm",
    "tp-group-norm",
    "tp-growing-reg",
    "tp-hessian",
    "tp-l1",
    "tp-l2",
    "tp-lamp",
    "tp-taylor",
]
BATCH = 16


def _random_pixels(channels: int, size: int) -> Data:
    g = torch.Generator().manual_seed(0)
    split = TensorSplit(
        torch.randint(0, 256, (64, channels, size, size), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (64,), generator=g),
    )
    return Data(
        "random", "random pixels", 10, split, split, (0.5,) * channels, (0.25,) * channels, 0, False, "random", "test"
    )


def _model(kind: str):
    """(model, layer ratios, input channels, image size) for the three nets under test."""
    torch.manual_seed(0)
    if kind == "cnn4":
        model = build_model("cnn4", 10, 1)
        return model, get_setting("fmnist-cnn4").layer_ratios(model), 1, 28
    if kind == "resnet20":
        model = build_model("resnet20", 10)
        return model, get_setting("cifar10jpg-resnet20").layer_ratios(model), 3, 32
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    return model, resolve(parse_ratios("[0,0.5,0.6,0.4,0.3,0]"), model, RESNET), 3, 32


def counting_task(model, data, ratios, channels, size, max_iters=1000):
    """A PruneTask whose train and batches run the suite's loop and batches, counting every sample
    the way the harness does (suite.running.runner._prune)."""
    seen, train_own, own = {"samples": 0}, sgd_run(model, data, BATCH, max_iters), own_batches(data, BATCH)

    def run(hooks, desc, log_every=None, log_extra=None):
        out = train_own(hooks, desc, log_every, log_extra)
        seen["samples"] += out.steps * BATCH
        return out

    def batches(n):
        for x, y in own(n):
            seen["samples"] += len(y)
            yield x, y

    return PruneTask(ratios, CPU, 0, max_iters, run, batches, example_input(channels, size)), seen


def _short(method, **kw):
    """The entry's defaults with its own passes cut to a few iterations."""
    fields = method.Hparams().to_dict()
    short = {k: v for k, v in (("sparse_iters", 3), ("batches", 2), ("update_interval", 1)) if k in fields}
    return method.Hparams.from_dict({**short, **kw})


def test_entries_listed():
    assert registry.names("tp-*") == ENTRIES
    assert all(registry.get(n).granularity == "filter" for n in ENTRIES)


@pytest.mark.parametrize("kind", ["cnn4", "resnet20", "resnet18"])
@pytest.mark.parametrize("name", ENTRIES)
def test_exact_counts_counted_samples_and_surgery(name, kind, small_fmnist):
    model, ratios, channels, size = _model(kind)
    data = small_fmnist if kind == "cnn4" else _random_pixels(channels, size)
    method = registry.get(name)
    hp = _short(method)
    task, seen = counting_task(model, data, ratios, channels, size)
    choice = method.prune(model, task, hp)
    widths = {n: model.get_submodule(n).out_channels for n in ratios}
    assert set(choice.filters) == set(ratios)
    for layer, idx in choice.filters.items():
        assert idx == sorted(set(idx)) and all(0 <= i < widths[layer] for i in idx)
        assert len(idx) == n_pruned(ratios[layer], widths[layer])  # by hand: ceil(r * n), below n
    assert seen["samples"] == method.planned_iters(hp) * BATCH
    remove_filters(model, choice.filters, example_input(channels, size))
    for layer, idx in choice.filters.items():
        assert model.get_submodule(layer).out_channels == widths[layer] - len(idx)
    assert model(example_input(channels, size, batch=2)).shape == (2, 10)


@pytest.mark.parametrize("kind", ["cnn4", "resnet20", "resnet18"])
def test_tp_l1_is_l1_and_lamp_is_l2(kind):
    model, ratios, channels, size = _model(kind)
    task = PruneTask(ratios, CPU, 0, 0, None, None, example_input(channels, size))
    got = registry.get("tp-l1").prune(model, task, None).filters
    assert got == l1_smallest_filters(model, ratios) and any(got.values())
    # LAMP's normalizer keeps the order within a layer: with per-layer counts it is tp-l2's choice
    l2 = registry.get("tp-l2").prune(model, task, None).filters
    assert registry.get("tp-lamp").prune(model, task, None).filters == l2
    assert l2 != got  # group L2 is a different criterion (the assertion above is not vacuous)


def test_gradient_and_sparse_entries_leave_or_train_the_model(small_fmnist):
    """Gradient criteria score a copy (weights and BN statistics untouched); sparse learning trains
    the harness's model in place, as its phase is the method."""
    model, ratios, channels, size = _model("cnn4")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("tp-taylor", "tp-hessian"):
        registry.get(name).prune(
            model, counting_task(model, small_fmnist, ratios, channels, size)[0], _short(registry.get(name))
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    registry.get("tp-bn-scale").prune(
        model, counting_task(model, small_fmnist, ratios, channels, size)[0], _short(registry.get("tp-bn-scale"))
    )
    assert not torch.equal(before["features.5.weight"], model.state_dict()["features.5.weight"])


def test_bn_scale_penalty_is_l1_on_pruned_layers_bn_only():
    """One regularize call adds reg * sign(gamma) to the gradient of the batch norms after pruned
    convs and nothing to the first conv's (not pruned at fmnist-cnn4's ratios)."""
    from methods.tp import SparseHook, build_pruner

    model, ratios, channels, size = _model("cnn4")
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    with torch.no_grad():
        model.features[5].weight.uniform_(-1, 1)
    method = registry.get("tp-bn-scale")
    hp = method.Hparams.from_dict({"reg": 0.5})
    task = PruneTask(ratios, CPU, 0, 0, None, None, example_input(channels, size))
    pruner = build_pruner("BNScalePruner", model, task, method.importance(hp), reg=hp.reg)
    SparseHook(pruner, 1).after_backward(model, 0)
    bn = model.features[5]  # the batch norm after features.4
    assert torch.equal(bn.weight.grad, 0.5 * torch.sign(bn.weight.detach()))
    assert model.features[1].weight.grad.abs().sum() == 0  # BN of conv 0, which is not pruned


def test_growing_reg_state_round_trip():
    """A resumed phase continues from the grown penalties, not from the start."""
    from methods.tp import build_pruner

    model, ratios, channels, size = _model("cnn4")
    method = registry.get("tp-growing-reg")
    hp = method.Hparams.from_dict({"reg": 1e-4, "delta_reg": 1e-2, "update_interval": 1})
    task = PruneTask(ratios, CPU, 0, 0, None, None, example_input(channels, size))
    hook = method.hook(
        build_pruner("GrowingRegPruner", model, task, method.importance(hp), **method.pruner_args(hp)), hp
    )
    for step in (1, 2):
        hook.after_step(model, step)
    state = hook.state_dict()
    assert len(state["group_reg"]) == len(ratios)
    # the least important channel of each group grew by delta_reg per update: 1e-4 + 2 * 1e-2
    assert all(abs(float(r.max()) - (1e-4 + 2e-2)) < 1e-7 for r in state["group_reg"])
    fresh = method.hook(
        build_pruner("GrowingRegPruner", model, task, method.importance(hp), **method.pruner_args(hp)), hp
    )
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict()["group_reg"], state["group_reg"]))


@pytest.mark.parametrize(
    "name, field, value",
    [
        ("tp-bn-scale", "sparse_iters", 0),
        ("tp-taylor", "batches", 0),
        ("tp-group-norm", "alpha", -1.0),
        ("tp-growing-reg", "reg", -1e-4),
    ],
)
def test_bad_hparams_are_one_line_errors(name, field, value):
    from suite.errors import SuiteError

    with pytest.raises(SuiteError, match=field) as e:
        registry.get(name).Hparams.from_dict({field: value})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, field", [("tp-growing-reg", "sparse_iters"), ("tp-hessian", "batches")])
def test_search_proposals_fit_the_cap(name, field):
    optuna = pytest.importorskip("optuna")
    method = registry.get(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        hp = method.suggest(study.ask(), method.Hparams(), method.Hparams.space(), max_iters=150)
        assert 1 <= method.planned_iters(hp) <= 150
    from suite.errors import SuiteError

    with pytest.raises(SuiteError, match="cap"):
        method.suggest(study.ask(), method.Hparams(), {field: (200, 400, True)}, max_iters=150)
