"""One surgery for every method: physical filter removal, and masks for unstructured pruning.

Removal goes through torch-pruning's DependencyGraph, so the next conv's input channels, the
batch norm and a following linear layer shrink with the removed filters. NNI 3.0's ModelSpeedup
is not used: it fails on current torch (upstream nni#5768).
"""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from suite.errors import SuiteError
from suite.ratios import n_pruned

FilterChoice = dict[str, list[int]]  # conv name -> output-filter indices to remove
MaskChoice = dict[str, torch.Tensor]  # conv/linear name -> {0,1} mask shaped like its weight


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
    """Per layer, the ``n_pruned(r, n)`` filters of smallest L1 norm (Li et al. 2017's rule).

    The harness uses it to show what a setting's ratios mean; the ``l1`` method uses it as its choice.
    """
    out = {}
    for name, r in layer_ratios.items():
        w = model.get_submodule(name).weight
        out[name] = smallest(filter_l1(w), n_pruned(r, w.shape[0]))
    return out


def remove_filters(model: nn.Module, choice: FilterChoice, example: torch.Tensor) -> nn.Module:
    """Physically remove the chosen output filters of each conv, in place; returns the model.

    Each conv's pruning group must stay inside {that conv, its batch norm, the next layer's
    inputs}: a group that reaches further (a residual addition) means the conv was not prunable,
    and is refused rather than silently pruning the residual stream.
    """
    model.eval()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example.to(_device(model)))
    for name, idxs in choice.items():
        if not idxs:
            continue
        conv = model.get_submodule(name)
        if len(idxs) >= conv.out_channels:
            raise SuiteError(f"cannot remove all {conv.out_channels} filters of {name}")
        group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(idxs))
        _check_local(group, name, conv)
        group.prune()
    return model


def _check_local(group, name: str, conv: nn.Module) -> None:
    """Refuse a pruning group that touches more than one conv's outputs (e.g. a residual add)."""
    out_convs = [dep.target.module for dep, _ in group
                 if dep.handler in (tp.prune_conv_out_channels,) and isinstance(dep.target.module, nn.Conv2d)]
    if any(m is not conv for m in out_convs):
        raise SuiteError(f"{name}'s filters are tied to other layers' outputs (residual addition): "
                         f"only the convs GREG_SPEC.md names may be pruned")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def mask_filters(model: nn.Module, choice: FilterChoice) -> nn.Module:
    """Zero the chosen filters *and* their batch-norm scale and shift, in place.

    The result computes exactly what the physically pruned model computes (a removed channel
    contributes nothing downstream), which is how the surgery is tested.
    """
    modules = dict(model.named_modules())
    names = list(modules)
    with torch.no_grad():
        for name, idxs in choice.items():
            conv = modules[name]
            conv.weight[idxs] = 0
            if conv.bias is not None:
                conv.bias[idxs] = 0
            bn = following_bn(modules, names, name, conv.out_channels)
            if bn is not None:
                bn.weight[idxs] = 0
                bn.bias[idxs] = 0
    return model


def following_bn(modules, names, conv_name, channels):
    """The batch norm registered right after ``conv_name`` (our models and torchvision's order)."""
    for n in names[names.index(conv_name) + 1:]:
        m = modules[n]
        if isinstance(m, nn.BatchNorm2d) and m.num_features == channels:
            return m
        if isinstance(m, nn.Conv2d):
            return None
    return None


# --------------------------------------------------------------------------- unstructured
class MaskKeeper:
    """Keeps pruned weights at zero: call :meth:`apply` after every optimizer step."""

    def __init__(self, model: nn.Module, masks: MaskChoice):
        self.pairs = [(model.get_submodule(n).weight, m.to(model.get_submodule(n).weight.device,
                                                            model.get_submodule(n).weight.dtype))
                      for n, m in masks.items()]
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for w, m in self.pairs:
            w.mul_(m)


def smallest_weights_mask(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """A {0,1} mask that zeroes the ``ceil(r * numel)`` smallest-magnitude weights of one layer."""
    k = n_pruned(ratio, weight.numel())
    mask = torch.ones(weight.numel(), device=weight.device, dtype=weight.dtype)
    mask[smallest_index(weight.detach().abs(), k).to(weight.device)] = 0
    return mask.view_as(weight)


def sparsity(model: nn.Module, names) -> dict[str, float]:
    """Fraction of exactly-zero weights per named layer."""
    return {n: (model.get_submodule(n).weight == 0).float().mean().item() for n in names}
