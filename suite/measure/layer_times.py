"""Where a forward pass spends its time, per named leaf module (conv, linear, batch norm, ReLU,
pool...), for a baseline and its pruned copy, so a reader sees where the speed went.

torch.profiler groups eager time by operator, not by module, so each leaf module's forward is
wrapped in a ``record_function`` range named after the module (forward pre/post hooks, removed
afterwards), and each forward pass in a range of its own. Baseline and pruned passes alternate, so
a change in the machine's load hits both alike.

A layer's time is the least it took in any pass (its time in a pass: the sum of its calls, as
torchvision's blocks call one ReLU twice); the whole forward pass's is the fastest pass. Not the
median, as the end-to-end latency uses: preemption only ever adds time, and on a shared machine
most passes are preempted somewhere (measured on a 2-core machine at load 7: one unpruned conv's
median over 30 passes was 16.2 ms in the baseline and 2.3 ms in the pruned model), so the least
is what shows a layer's own cost, as ``timeit`` advises. Ranges are read from ``prof.events()``:
``key_averages()`` gives only averages.

CPU: the ranges' wall time. CUDA: the device time of the kernels each range launched.
"""

from __future__ import annotations

import bisect
import contextlib
from collections import defaultdict

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

PASS = "#pass"  # suffix of a whole forward pass's range ("baseline#pass"); layers are "baseline/features.0"
WHOLE = "#whole"  # suffix of an attention module's range, its child layers included


def attention_modules(model: nn.Module) -> set[str]:
    """The names of a model's attention modules: those with a ``num_heads`` (``nn.MultiheadAttention``,
    the suite's ``HeadAttention``, timm's and Swin's attention) none of whose submodules has one (a
    block that stores its attention's head count is not one). Their own operations (the query-key
    products, the softmax, the weighted sum; ``nn.MultiheadAttention``'s fused input projection too)
    run between their child layers and would count as no layer's time."""
    heads = {name for name, m in model.named_modules() if hasattr(m, "num_heads")}
    return {n for n in heads if not any(o.startswith(n + ".") for o in heads if o != n)} if heads else set()


@contextlib.contextmanager
def labelled(model: nn.Module, tag: str):
    """While inside, every leaf module's forward runs in a profiler range ``tag/<module name>``, and
    every attention module's in ``tag/<module name>#whole`` (its own time: that minus its layers')."""
    handles = []
    attention = attention_modules(model)
    for name, module in model.named_modules():
        if next(module.children(), None) is not None and name not in attention:
            continue  # a container's time is its children's (plus its own glue code, left out)
        if name in attention and next(module.children(), None) is not None:
            name = f"{name}{WHOLE}"
        open_ranges: list[record_function] = []  # a stack, should a forward re-enter itself

        def enter(_module, _args, label=f"{tag}/{name or '(model)'}", stack=open_ranges):
            stack.append(record_function(label).__enter__())

        def leave(_module, _args, _out, stack=open_ranges):
            stack.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def layer_times(
    baseline: nn.Module,
    pruned: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 64,
    device: torch.device = torch.device("cpu"),
    passes: int = 20,
    warmup: int = 3,
) -> dict:
    """Eager time per leaf module of ``baseline`` and ``pruned`` at ``batch``, in ms per forward
    pass (the fastest of ``passes``), in the baseline's module order, with each model's whole
    forward pass (the fastest) for the share the layers account for."""
    models = {"baseline": baseline.to(device).eval(), "pruned": pruned.to(device).eval()}
    x = torch.randn(batch, *input_shape, device=device)  # time only: values do not matter
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for model in models.values():
        for _ in range(warmup):
            model(x)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with contextlib.ExitStack() as stack:
        for tag, model in models.items():
            stack.enter_context(labelled(model, tag))
        with profile(activities=activities) as prof:
            for _ in range(passes):
                for tag, model in models.items():
                    with record_function(tag + PASS):
                        model(x)
                        sync()
    forward, per_layer = _fastest(prof.events(), list(models), device)
    attention = attention_modules(baseline)
    kinds = {
        name or "(model)": type(m).__name__ + (" (own ops)" if name in attention else "")
        for name, m in baseline.named_modules()
    }
    order = list(kinds) + sorted(set(per_layer["pruned"]) - set(kinds))
    layers = [
        {
            "layer": name,
            "kind": kinds.get(name, "?"),
            "baseline_ms": per_layer["baseline"].get(name),
            "pruned_ms": per_layer["pruned"].get(name),
        }
        for name in order
        if name in per_layer["baseline"] or name in per_layer["pruned"]
    ]
    return {
        "runtime": "eager",
        "batch": batch,
        "passes": passes,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "forward_ms": forward,
        "layers": layers,
    }


def _fastest(events, tags: list[str], device: torch.device) -> tuple[dict, dict]:
    """From the profiler's ranges: each tag's fastest pass, and per layer its fastest time in a
    pass (the sum of its calls in that pass), in ms."""

    def ms(e) -> float:
        return (e.device_time_total if device.type == "cuda" else e.cpu_time_total) / 1000

    spans = {t: sorted((e.time_range.start, ms(e)) for e in events if e.name == t + PASS) for t in tags}
    starts = {t: [s for s, _ in spans[t]] for t in tags}
    sums = {t: [defaultdict(float) for _ in spans[t]] for t in tags}
    for e in events:
        tag, sep, layer = e.name.partition("/")
        if sep and tag in sums:
            k = bisect.bisect_right(starts[tag], e.time_range.start) - 1  # the pass this range began in
            sums[tag][k][layer] += ms(e)
    for passes in sums.values():  # an attention module's own time: its whole range minus its layers'
        for p in passes:
            for whole in [n for n in p if n.endswith(WHOLE)]:
                name = whole[: -len(WHOLE)]
                p[name] = p.pop(whole) - sum(
                    v for n, v in p.items() if n.startswith(name + ".") and not n.endswith(WHOLE)
                )
    forward = {t: min(v for _, v in spans[t]) for t in tags}
    per_layer = {
        t: {layer: min(p[layer] for p in sums[t] if layer in p) for layer in set().union(*sums[t])} for t in tags
    }
    return forward, per_layer
