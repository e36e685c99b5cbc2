"""What can be pruned in any model: the groups of coupled channels of torch-pruning's DependencyGraph.

A *group* is a set of output channels that must go together: a conv with its batch norm, the
depthwise conv that follows it, every conv feeding the same residual addition, the slices of a
concatenation. torch-pruning's ``DependencyGraph.get_all_groups`` finds them by tracing the model;
each group is named by its root conv (the first of its convs in the model's module order) and knows,
for every conv whose output channels it removes, which of that conv's filters each root channel is
(identity for a residual add or a depthwise conv, an offset for a concatenation).

Kept by default: the group that holds the stem (the first conv; in a ResNet that is the residual
stream of the first stage) and the classifier (the last conv or linear layer; its outputs are the
classes). Linear layers are never roots: the suite prunes conv filters.

Used for the ``generic`` family (models from torchvision, timm or a user's file), whose ratio
strings are a single ratio, module-name globs, or a FLOPs target (``suite.models.ratios``); the built-in
families keep the paper's layouts (``suite.models.nets.prunable_convs``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from suite.errors import SuiteError


@dataclass(frozen=True)
class Group:
    """``members``: (conv name, its filter index for root channel 0..size-1) for every conv whose
    output channels the group removes; the root comes first with the identity map."""

    root: str
    size: int
    members: tuple[tuple[str, tuple[int, ...]], ...]


def stem_and_classifier(model: nn.Module) -> tuple[str | None, str | None]:
    """The first conv and the last conv/linear layer, in module order."""
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return (convs[0] if convs else None), (layers[-1] if layers else None)


def dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    """The traced graph (eval mode: batch-norm statistics untouched); a model torch-pruning cannot
    trace is a one-line error naming it."""
    was = model.training
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example.to(_device(model)))
    except Exception as e:
        raise SuiteError(f"torch-pruning cannot trace this model ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from None
    finally:
        model.train(was)


def prunable_groups(model: nn.Module, example: torch.Tensor, keep_stem: bool = True,
                    keep_classifier: bool = True) -> dict[str, Group]:
    """{root conv name: Group} for every prunable group, in module order."""
    dg = dependency_graph(model, example)
    name_of = {id(m): n for n, m in model.named_modules()}
    stem, classifier = stem_and_classifier(model)
    ignored = [model.get_submodule(n) for n, keep in ((stem, keep_stem), (classifier, keep_classifier))
               if n is not None and keep]
    order = {name: i for i, name in enumerate(n for n, _ in model.named_modules())}
    out: dict[str, Group] = {}
    for found in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        convs = [item.dep.target.module for item in found if isinstance(item.dep.target.module, nn.Conv2d)
                 and dg.is_out_channel_pruning_fn(item.dep.handler)]
        root_module = min(convs, key=lambda m: order[name_of[id(m)]])  # name it by its first conv
        size = root_module.out_channels
        group = dg.get_pruning_group(root_module, tp.prune_conv_out_channels, idxs=list(range(size)))
        members = []
        for item in group:
            module = item.dep.target.module
            if not (isinstance(module, (nn.Conv2d, nn.Linear)) and dg.is_out_channel_pruning_fn(item.dep.handler)):
                continue
            index = dict(zip(item.root_idxs, item.idxs))
            if len(index) != size or any(i is None for i in index):
                continue  # a member whose channels do not map one-to-one (none in torchvision's nets)
            name = name_of[id(module)]
            if name not in (m for m, _ in members):
                members.append((name, tuple(index[j] for j in range(size))))
        root = name_of[id(root_module)]
        members.sort(key=lambda m: (m[0] != root, order[m[0]]))
        out[root] = Group(root, size, tuple(members))
    return dict(sorted(out.items(), key=lambda kv: order[kv[0]]))


def single(name: str, model: nn.Module) -> Group:
    """The one-conv group of a paper layout's prunable conv (its filters, identity map)."""
    n = model.get_submodule(name).weight.shape[0]
    return Group(name, n, ((name, tuple(range(n))),))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def dry_surgery(model: nn.Module, layer_ratios: dict[str, float], input_shape: tuple[int, ...],
                coupled: bool) -> dict:
    """Remove the first ``n_pruned(r, n)`` filters of every named conv (or group) from a copy and run
    it (on the meta device): {params, flops, pruned_params, pruned_flops, speedup}. Sizes depend only on how many go, not
    which. A surgery or forward that fails is a one-line error (a spec the model cannot take)."""
    from suite.measure.metrics import count_flops, count_params
    from suite.models.nets import example_input
    from suite.models.ratios import n_pruned
    from suite.models.surgery import remove_filters

    # On the meta device: shapes without arithmetic, so a probe costs the tracing, not the convs.
    work = copy.deepcopy(model).to("meta").eval()
    params, flops = count_params(work), count_flops(work, input_shape)
    choice = {n: list(range(n_pruned(r, work.get_submodule(n).out_channels))) for n, r in layer_ratios.items()}
    example = example_input(input_shape[0], input_shape[1:])
    try:
        remove_filters(work, choice, example, coupled=coupled)
        with torch.no_grad():
            work(example.to("meta"))
        p, f = count_params(work), count_flops(work, input_shape)
    except SuiteError:
        raise
    except Exception as e:
        raise SuiteError(f"the surgery fails on this model at these ratios ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from None
    return {"params": params, "flops": flops, "pruned_params": p, "pruned_flops": f, "speedup": flops / f,
            "param_reduction": params / p, "pruned_layers": len(layer_ratios)}


_TARGETS: dict[tuple, float] = {}


def ratio_for_speedup(model: nn.Module, target: float, uniform: "callable", input_shape: tuple[int, ...],
                      coupled: bool, tolerance: float = 0.005) -> float:
    """The uniform ratio whose real surgery gives the FLOPs speedup nearest ``target``.

    A bracketed search (speedup grows with the ratio): each probe is a dry surgery, placed by
    interpolating log-speedup inside the bracket (FLOPs fall about as (1 - r)^2, so this lands in a
    few probes), or at the bracket's middle when interpolation would not shrink it enough; it stops
    within ``tolerance`` of the target. ``uniform(r)`` maps a ratio to the layer ratios it means.
    Cached per architecture (parameter names and shapes), input shape and target."""
    import math
    key = (target, tuple(input_shape), coupled,
           tuple((n, tuple(p.shape)) for n, p in model.named_parameters()),
           tuple(sorted(uniform(0.5).items())))
    if key in _TARGETS:
        return _TARGETS[key]

    def speedup(r: float) -> float:
        return dry_surgery(model, uniform(r), input_shape, coupled)["speedup"] if r > 0 else 1.0

    lo, s_lo, hi = 0.0, 1.0, 0.99
    s_hi = speedup(hi)
    if s_hi < target:
        raise SuiteError(f"target {target:g}x is beyond reach: removing 99% of every prunable group gives "
                         f"{s_hi:.2f}x; ask for at most {s_hi:.2f}x or prune more layers")
    guess = min(max(1 - 1 / math.sqrt(target), 0.01), 0.98)  # (1 - r)^2 = 1 / target
    for _ in range(20):
        r = guess
        s = speedup(r)
        if abs(s / target - 1) <= tolerance:
            lo = hi = r
            s_lo = s_hi = s
            break
        if s >= target:
            hi, s_hi = r, s
        else:
            lo, s_lo = r, s
        if hi - lo < 1e-4:
            break
        # interpolate log-speedup linearly inside the bracket; keep clear of its ends
        t = (math.log(target) - math.log(s_lo)) / (math.log(s_hi) - math.log(s_lo))
        guess = lo + min(max(t, 0.1), 0.9) * (hi - lo)
    best = hi if abs(s_hi - target) <= abs(target - s_lo) else lo
    _TARGETS[key] = round(best, 6)
    return _TARGETS[key]
