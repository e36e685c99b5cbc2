"""Selection rules: which groups are smallest by a score (L1 norm of a filter, |w| of a weight).

They belong to the methods (a rule is a method's choice); the harness in suite/ only removes what
a method chose, whatever the rule.
"""

from __future__ import annotations

import torch
from torch import nn

from suite.models.layouts import single
from suite.models.ratios import n_pruned
from suite.models.surgery import FilterChoice


def filter_l1(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter of a conv weight [N, C, k, k] -> [N]."""
    return weight.detach().abs().flatten(1).sum(1)


def smallest_index(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (CPU LongTensor) of the ``k`` smallest scores, ties broken by index, ascending."""
    order = torch.sort(scores.detach().flatten().cpu(), stable=True).indices
    return order[: max(k, 0)].sort().values


def smallest(scores: torch.Tensor, k: int) -> list[int]:
    """:func:`smallest_index` as a list (filter choices are stored as JSON lists)."""
    return smallest_index(scores, k).tolist()


def unit_scores(weight: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Each unit's L1 norm in one layer: the L1 of its row of ``weight`` (``rows`` 1-D: a conv's filter,
    a linear layer's output) or the sum over its rows (2-D, one row of ``rows`` per unit: a head)."""
    s = filter_l1(weight)[rows]
    return s.sum(1) if s.dim() > 1 else s


def group_l1(model: nn.Module, group) -> torch.Tensor:
    """L1 norm of each channel of a group (``suite.models.layouts.Group``): the sum, over every conv or
    linear layer whose output rows go with it, of that layer's rows for the channel. A one-conv group:
    :func:`filter_l1`."""
    total = None
    for name, rows in group.members:
        w = model.get_submodule(name).weight
        s = unit_scores(w, torch.as_tensor(rows, device=w.device))
        total = s if total is None else total + s
    return total


def l1_smallest_filters(model: nn.Module, layer_ratios: dict[str, float], groups: dict | None = None) -> FilterChoice:
    """Per unit, the ``n_pruned(r, n)`` channels of smallest L1 norm (Li et al. 2017's rule): the
    ``l1`` method's choice and GReg-1's fixed pruned set. A unit named in ``groups`` (a generic
    model's coupled channels, a transformer's heads or MLP channels) ranks its channels by
    :func:`group_l1`; any other is one conv's filters."""
    out = {}
    for name, r in layer_ratios.items():
        scores = group_l1(model, (groups or {}).get(name) or single(name, model))
        out[name] = smallest(scores, n_pruned(r, scores.numel()))
    return out


def smallest_weights_mask(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """A {0,1} mask that zeroes the ``ceil(r * numel)`` smallest-magnitude weights of one layer."""
    k = n_pruned(ratio, weight.numel())
    mask = torch.ones(weight.numel(), device=weight.device, dtype=weight.dtype)
    mask[smallest_index(weight.detach().abs(), k).to(weight.device)] = 0
    return mask.view_as(weight)
