"""The per-layer time breakdown (torch.profiler ranges per leaf module) against what must be true
of it, on a net where the answer is unmistakable: four 128-channel convs on 16x16 inputs, the third
pruned to 16 filters. That conv does 1/8 of its multiply-adds and the fourth conv reads 1/8 of its
inputs, so both must take clearly less time; the second conv is untouched (same shapes in both),
so it must take about the same time.

Margins are wide on purpose: the machine may be shared (one thread, so no OpenMP barrier waits on
a preempted sibling thread). Each conv does ~75 M multiply-adds (milliseconds, far above the
profiler's microseconds per range), the passes alternate baseline and pruned so load changes hit
both, and each time is the fastest of 30 passes (preemption only ever adds time)."""

from __future__ import annotations

import copy
import time

import pytest
import torch

from suite.measure.layer_times import layer_times
from suite.models.nets import PlainNet, example_input
from suite.models.surgery import remove_filters

CPU = torch.device("cpu")
pytestmark = pytest.mark.alone  # layer times against a real clock: nothing may train beside them
SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def profiled():
    torch.manual_seed(0)
    base = PlainNet([128, 128, 128, 128], 3, 10).eval()  # convs: features.0, .3, .6, .9
    pruned = copy.deepcopy(base)
    remove_filters(pruned, {"features.6": list(range(112))}, example_input(3, 16))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prof = layer_times(base, pruned, SHAPE, batch=1, device=CPU, passes=40)
    finally:
        torch.set_num_threads(threads)
    return base, pruned, prof


def test_every_leaf_module_is_a_layer_in_model_order(profiled):
    base, pruned, prof = profiled
    leaves = [n for n, m in base.named_modules() if next(m.children(), None) is None]
    assert [r["layer"] for r in prof["layers"]] == leaves
    assert {r["layer"]: r["kind"] for r in prof["layers"]}["features.6"] == "Conv2d"
    assert all(r["baseline_ms"] > 0 and r["pruned_ms"] > 0 for r in prof["layers"])
    assert prof["passes"] == 40 and prof["batch"] == 1 and prof["runtime"] == "eager"
    for model in (base, pruned):  # the hooks are gone afterwards
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_pruned_layers_take_less_time_and_untouched_ones_the_same(profiled):
    _, pruned, prof = profiled
    assert pruned.features[6].out_channels == 16 and pruned.features[9].in_channels == 16
    t = {r["layer"]: (r["baseline_ms"], r["pruned_ms"]) for r in prof["layers"]}
    for layer in ("features.6", "features.9"):  # 8x fewer multiply-adds: well under 60 % of the time
        assert t[layer][1] < 0.6 * t[layer][0], (layer, t[layer])
    b, p = t["features.3"]  # the same conv on the same shapes
    assert 0.4 < p / b < 2.5, t["features.3"]


def _alone_ms(model: torch.nn.Module, names: list[str], repeats: int = 40) -> dict[str, float]:
    """Each named layer timed on its own with perf_counter, no profiler: its input captured from one
    plain forward pass, then the fastest of ``repeats`` calls (ms)."""
    inputs, handles = {}, []
    for name in names:
        handles.append(
            model.get_submodule(name).register_forward_pre_hook(
                lambda _m, args, name=name: inputs.__setitem__(name, args[0].clone())
            )
        )
    with torch.no_grad():
        model(torch.randn(1, *SHAPE))
        for h in handles:
            h.remove()
        fastest = {}
        for name in names:
            layer, x = model.get_submodule(name), inputs[name]
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                layer(x)
                times.append(1000 * (time.perf_counter() - t))
            fastest[name] = min(times)
    return fastest


def test_layer_times_agree_with_each_layer_timed_alone(profiled):
    """The profiler's per-layer times against an independent clock: each conv called on its own
    (perf_counter, no profiler, no hooks). Both are the fastest of many calls, so a busy machine
    moves neither much; the profiler adds microseconds per range to a conv of ~0.5 ms."""
    base, pruned, prof = profiled
    convs = [n for n, m in base.named_modules() if isinstance(m, torch.nn.Conv2d)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = {"baseline": _alone_ms(base, convs), "pruned": _alone_ms(pruned, convs)}
    finally:
        torch.set_num_threads(threads)
    for r in prof["layers"]:
        if r["layer"] in convs[1:]:  # the first conv (3 input channels, ~30 us) is too small to time
            for which in ("baseline", "pruned"):
                assert 0.5 < r[f"{which}_ms"] / alone[which][r["layer"]] < 2, (r, alone)


def test_layers_add_up_to_no_more_than_the_forward_pass(profiled):
    """In the fastest pass each layer took at least its fastest time, and the layers' ranges lie
    apart inside the pass's range, so the layers' fastest times add up to no more than the fastest
    pass (the pass also holds the glue between modules, and any preemption between layers)."""
    _, _, prof = profiled
    for which in ("baseline", "pruned"):
        total = sum(r[f"{which}_ms"] for r in prof["layers"])
        assert 0 < total <= prof["forward_ms"][which] + 1e-9, (which, total, prof["forward_ms"])
    # the convs dominate a net of 128-channel convs: BN, ReLU and the linear layer are a small part
    convs = sum(r["baseline_ms"] for r in prof["layers"] if r["kind"] == "Conv2d")
    assert convs > 0.7 * sum(r["baseline_ms"] for r in prof["layers"])


def test_an_attention_modules_own_operations_are_a_row_of_their_own():
    """A transformer's attention does its main work (query-key products, softmax, weighted sum)
    between its layers, in no leaf module: it is a row of its own ("own ops": its range minus its
    layers'). At 1,024 tokens of width 32 (2 heads of 16) the attention's products are about 2 x
    1024^2 x 32 = 67 M multiply-adds against the qkv layer's 1024 x 32 x 96 = 3 M, so its own time must
    dominate; with one of the two heads removed it must about halve."""
    from torch import nn

    from suite.models.transformers import HeadAttention, remove_units

    class Tokens(nn.Module):  # (B, 1, 32, 32) images -> 1,024 tokens of width 32 -> attention -> mean
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(1, 32)
            self.attn = HeadAttention(32, 2, 16)

        def forward(self, x):
            t = self.embed(x.flatten(2).transpose(1, 2))
            return self.attn(t, t, t)[0].mean(1)

    torch.manual_seed(0)
    base = Tokens().eval()
    pruned = remove_units(copy.deepcopy(base), {"attn.qkv": [1]})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prof = layer_times(base, pruned, (1, 32, 32), batch=1, device=CPU, passes=20)
    finally:
        torch.set_num_threads(threads)
    rows = {r["layer"]: r for r in prof["layers"]}
    assert rows["attn"]["kind"] == "HeadAttention (own ops)"
    assert rows["attn"]["baseline_ms"] > 3 * rows["attn.qkv"]["baseline_ms"]
    assert rows["attn"]["pruned_ms"] < 0.75 * rows["attn"]["baseline_ms"]
