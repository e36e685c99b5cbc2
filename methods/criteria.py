"""Selection rules: which groups are smallest by a score (L1 norm of a filter, |w| of a weight).

They belong to the methods (a rule is a method's choice); the harness in suite/ only removes what
a method chose, whatever the rule.
"""
from __future__ import annotations

import torch
from torch import nn

from suite.ratios import n_pruned
from suite.surgery import FilterChoice


def filter_l1(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter of a conv weight [N, C, k, k] -> [N]."""
    return weight.detach().abs().flatten(1).sum(1)


def smallest_index(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (CPU LongTensor) of the ``k`` smallest scores, ties broken by index, ascending."""
    order = torch.sort(scores.detach().flatten().cpu(), stable=True).indices
    return order[:max(k, 0)].sort().values


def smallest(scores: torch.Tensor, k: int) -> list[int]:
    """:func:`smallest_index` as a list (filter choices are stored as JSON lists)."""
    return smallest_index(scores, k).tolist()


def l1_smallest_filters(model: nn.Module, layer_ratios: dict[str, float]) -> FilterChoice:
    """Per layer, the ``n_pruned(r, n)`` filters of smallest L1 norm (Li et al. 2017's rule):
    the ``l1`` method's choice and GReg-1's fixed pruned set."""
    out = {}
    for name, r in layer_ratios.items():
        w = model.get_submodule(name).weight
        out[name] = smallest(filter_l1(w), n_pruned(r, w.shape[0]))
    return out


def smallest_weights_mask(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """A {0,1} mask that zeroes the ``ceil(r * numel)`` smallest-magnitude weights of one layer."""
    k = n_pruned(ratio, weight.numel())
    mask = torch.ones(weight.numel(), device=weight.device, dtype=weight.dtype)
    mask[smallest_index(weight.detach().abs(), k).to(weight.device)] = 0
    return mask.view_as(weight)
