"""One surgery for every method: physical filter removal, and masks for unstructured pruning.

Removal goes through torch-pruning's DependencyGraph, so the next conv's input channels, the
batch norm and a following linear layer shrink with the removed filters. NNI 3.0's ModelSpeedup
is not used: it fails on current torch (upstream nni#5768).
"""

from __future__ import annotations

import warnings

import torch
import torch_pruning as tp
from torch import nn

from suite.errors import SuiteError

FilterChoice = dict[str, list[int]]  # conv name -> output-filter indices to remove
MaskChoice = dict[str, torch.Tensor]  # conv/linear name -> {0,1} mask shaped like its weight


def remove_filters(model: nn.Module, choice: FilterChoice, example: torch.Tensor, coupled: bool = False) -> nn.Module:
    """Physically remove the chosen output filters of each conv, in place; returns the model.

    The paper's layouts (``coupled=False``): each conv's pruning group must stay inside {that conv,
    its batch norm, the next layer's inputs}: a group that reaches further (a residual addition)
    means the conv was not prunable, and is refused rather than silently pruning the residual
    stream. A ``generic`` model (``coupled=True``) names each group by its root conv
    (``suite.models.groups``): the indices are the root's, and every coupled layer loses the same channels.
    """
    model.eval()
    dg = traced(model, example)
    for name, idxs in choice.items():
        if not idxs:
            continue
        conv = model.get_submodule(name)
        if len(idxs) >= conv.out_channels:
            raise SuiteError(f"cannot remove all {conv.out_channels} filters of {name}")
        group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(idxs))
        if not coupled:
            _check_local(group, name, conv)
        group.prune()
    return model


def _check_local(group, name: str, conv: nn.Module) -> None:
    """Refuse a pruning group that touches more than one conv's outputs (e.g. a residual add)."""
    out_convs = [
        dep.target.module
        for dep, _ in group
        if dep.handler in (tp.prune_conv_out_channels,) and isinstance(dep.target.module, nn.Conv2d)
    ]
    if any(m is not conv for m in out_convs):
        raise SuiteError(
            f"{name}'s filters are tied to other layers' outputs (residual addition): "
            f"only the convs methods/GREG_SPEC.md names may be pruned"
        )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def traced(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    """torch-pruning's dependency graph of ``model`` run on ``example``. Its warning about a
    transformer's class token and position embedding ("unwrapped parameters": it would prune them
    with the embedding width) is silenced: that is what the ``embed`` kind of a ratio string asks for
    (``suite.models.groups``), and any other ratio keeps the stem's group whole."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        return tp.DependencyGraph().build_dependency(model, example_inputs=example.to(_device(model)))


def batchnorm_after(model: nn.Module, conv_names, example: torch.Tensor) -> dict[str, str | None]:
    """{conv name: name of the BatchNorm2d its output feeds directly, or None}, read off
    torch-pruning's traced graph (not guessed from registration order). ``model`` is traced in
    eval mode, so its batch-norm statistics are left as they were."""
    was_training = model.training
    model.eval()
    try:
        dg = traced(model, example)
    finally:
        model.train(was_training)
    name_of = {id(m): n for n, m in model.named_modules()}
    out = {}
    for name in conv_names:
        bns = [
            node.module
            for node in dg.module2node[model.get_submodule(name)].outputs
            if isinstance(node.module, nn.BatchNorm2d)
        ]
        out[name] = name_of[id(bns[0])] if len(bns) == 1 else None
    return out


# --------------------------------------------------------------------------- unstructured
class MaskKeeper:
    """Keeps pruned weights at zero; it is itself a training-loop hook (suite.training.loop.Hook) that
    re-applies the masks after every optimizer step. Its masks are fixed at construction, so it
    has no state to checkpoint."""

    def __init__(self, model: nn.Module, masks: MaskChoice):
        self.pairs = []
        for name, mask in masks.items():
            w = model.get_submodule(name).weight
            self.pairs.append((w, mask.to(w.device, w.dtype)))
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for w, m in self.pairs:
            w.mul_(m)

    def after_backward(self, model: nn.Module, step: int) -> None:
        pass

    def after_step(self, model: nn.Module, step: int) -> bool:
        self.apply()
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def sparsity(model: nn.Module, names) -> dict[str, float]:
    """Fraction of exactly-zero weights per named layer."""
    return {n: (model.get_submodule(n).weight == 0).float().mean().item() for n in names}
