"""NNI 3.0 pruners (``nni.compression.pruning``) as suite methods: NNI picks, the harness removes.

NNI only computes masks here. Each pruner runs on a deep copy of the model (NNI's wrappers turn
parameters into buffers and patch ``forward``; Slim and Taylor train the copy), the masks are read
off, the copy is unwrapped and discarded. The harness's model is never modified, and NNI's
ModelSpeedup is not used (it fails on current torch, upstream nni#5768).

Exact counts: one config entry per layer, ``{'op_names': [name], 'sparse_ratio': (k + 0.5) / n}``
with k = ``n_pruned(r, n)``. NNI masks ``int(n * sparse_ratio)`` groups (a floor), so k / n itself
could come out one short through float noise; k + 0.5 floors to k for any n. The count read back
from every mask is checked against k. NNI ranks with ``topk``, whose order among exactly equal
scores is unspecified (``methods.criteria.smallest`` breaks ties by index); with real-valued weights
ties do not occur.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Hparams, Method, PruneTask, Pruning, searchable
from methods.registry import register
from suite.errors import SuiteError
from suite.models.ratios import n_pruned
from suite.models.surgery import batchnorm_after


def _pruner_class(name: str):
    # Imported on use: NNI takes seconds to import and most suite commands never need it.
    return getattr(importlib.import_module("nni.compression.pruning"), name)


def _pruned_groups(mask: torch.Tensor) -> list[int]:
    """Indices along dim 0 whose mask is all zero (a mask may be shaped [N, 1, 1, 1])."""
    return (mask.reshape(mask.shape[0], -1) == 0).all(1).nonzero().flatten().tolist()


class _NNIMethod(Method):
    """Shared path: per-layer config -> NNI masks on a copy -> filter indices (or weight masks)."""

    pruner: ClassVar[str]  # class name in nni.compression.pruning
    trained: ClassVar[bool] = False  # needs training batches (an NNI TorchEvaluator)

    def targets(self, model: nn.Module, names, example: torch.Tensor) -> dict[str, str]:
        """{conv name: name of the module NNI masks}; the conv itself unless overridden.
        ``example``: an input batch, for overrides that trace the model."""
        return {n: n for n in names}

    def groups(self, layer: nn.Module) -> int:
        """Number of prunable groups of a layer: its output filters."""
        return layer.weight.shape[0]

    def prune(self, model: nn.Module, task: PruneTask, hp: Hparams) -> Pruning:
        if self.granularity == "filter":
            for name in task.layer_ratios:
                if task.group(model, name).size != model.get_submodule(name).weight.shape[0]:
                    raise SuiteError(
                        f"{self.name}: NNI's pruners rank one layer's output rows, and {name} is a unit of "
                        f"attention heads (a head is many rows of q, k and v); l1, random, greg1 and greg2 prune heads"
                    )
        targets = self.targets(model, task.layer_ratios, task.example)
        counts = {n: n_pruned(r, self.groups(model.get_submodule(n))) for n, r in task.layer_ratios.items()}
        config = [
            {"op_names": [targets[n]], "sparse_ratio": (k + 0.5) / self.groups(model.get_submodule(n))}
            for n, k in counts.items()
            if k > 0
        ]
        work = copy.deepcopy(model)
        steps = min(hp.training_steps, task.max_iters) if self.trained else 0
        extra = self.pruner_args(work, task, hp, steps) if self.trained else {}
        pruner = _pruner_class(self.pruner)(work, config, **extra)
        try:
            _, masks = pruner.compress()
        finally:
            pruner.unwrap_model()
        chosen = {}
        for name, k in counts.items():
            mask = masks.get(targets[name], {}).get("weight") if k > 0 else None
            if k > 0 and mask is None:
                raise SuiteError(
                    f"{self.name}: NNI produced no mask for {targets[name]} "
                    f"(too few training batches for {steps} steps?)"
                )
            chosen[name] = self.read(model.get_submodule(name), mask, name, k)
        info = {"nni_pruner": self.pruner, **({"training_steps": steps} if self.trained else {})}
        if self.granularity == "weight":
            return Pruning(masks=chosen, info=info)
        return Pruning(filters=chosen, info=info)

    def planned_iters(self, hp: Hparams) -> int:
        """Trained criteria pass ``training_steps`` batches through ``task.batches`` (capped by the harness)."""
        return hp.training_steps if self.trained else 0

    def read(self, layer: nn.Module, mask: torch.Tensor | None, name: str, k: int) -> list[int]:
        idx = _pruned_groups(mask) if mask is not None else []
        if len(idx) != k:
            raise RuntimeError(f"{self.name}: NNI masked {len(idx)} filters of {name}, expected {k}")
        return idx

    def pruner_args(self, work: nn.Module, task: PruneTask, hp: Hparams, steps: int) -> dict:
        raise NotImplementedError


@register
class NNIL1(_NNIMethod):
    """NNI's L1NormPruner: the independent implementation of what ``l1`` removes (same filters)."""

    name = "nni-l1"
    pruner = "L1NormPruner"
    summary = "NNI L1NormPruner: per layer, the filters of smallest L1 norm (Li et al. 2017)"


@register
class NNIL2(_NNIMethod):
    """NNI's L2NormPruner: filters ranked by L2 instead of L1 norm."""

    name = "nni-l2"
    pruner = "L2NormPruner"
    summary = "NNI L2NormPruner: per layer, the filters of smallest L2 norm"


@register
class NNIFPGM(_NNIMethod):
    """NNI's FPGMPruner (He et al. 2019): removes the filters closest to the layer's geometric
    median (smallest summed L2 distance to the other filters), i.e. the most replaceable ones."""

    name = "nni-fpgm"
    pruner = "FPGMPruner"
    summary = "NNI FPGMPruner: per layer, the filters nearest the geometric median (He et al. 2019)"


@register
class NNILevel(_NNIMethod):
    """NNI's LevelPruner: unstructured, per layer the smallest-|w| weights (an NNI twin of
    ``magnitude``). Returns {0,1} masks shaped like each weight."""

    name = "nni-level"
    granularity = "weight"
    pruner = "LevelPruner"
    summary = "NNI LevelPruner: unstructured pruning of the smallest-magnitude weights per layer"

    def groups(self, layer):
        return layer.weight.numel()

    def read(self, layer, mask, name, k):
        w = layer.weight
        out = torch.ones_like(w) if mask is None else torch.broadcast_to(mask, w.shape).to(w).clone()
        if int((out == 0).sum()) != k:
            raise RuntimeError(f"{self.name}: NNI masked {int((out == 0).sum())} weights of {name}, expected {k}")
        return out


# --------------------------------------------------------------------------- training-based
def _evaluator(work: nn.Module, task: PruneTask, lr: float, momentum: float):
    """An NNI TorchEvaluator that runs ``max_steps`` SGD steps on ``task.batches`` (cross entropy).

    NNI re-creates the (traced) optimizer for its wrapped model and patches ``training_step`` (Slim
    adds its sparsity loss) and ``optimizer.step`` (mask generation after the last step).
    """
    import nni
    from nni.compression import TorchEvaluator

    def training_step(batch, model):
        x, y = batch
        return F.cross_entropy(model(x), y)

    def training_func(model, optimizers, training_step, lr_schedulers=None, max_steps=None, max_epochs=None):
        model.train()
        done = 0
        for batch in task.batches(max_steps):
            optimizers.zero_grad()
            training_step(batch, model).backward()
            optimizers.step()
            done += 1
        if done < max_steps:
            raise SuiteError(f"training batches ran out after {done} of {max_steps} steps")

    optimizer = nni.trace(torch.optim.SGD)(work.parameters(), lr=lr, momentum=momentum)
    return TorchEvaluator(training_func, optimizer, training_step)


def _check_steps(hp) -> None:
    if hp.training_steps < 1:
        raise SuiteError("training_steps must be >= 1")


@dataclass(frozen=True)
class SlimHparams(Hparams):
    """NNI 3.0's Slim multiplies each BN scale by a factor (initialised to 1, trained by Adam at
    1e-2) under an L1 penalty ``sparsity_lambda`` (NNI's ``regular_scale``, default 1.0) while the
    model trains with SGD at ``lr``; the smallest |factors| go. A short phase, as the copy is thrown
    away and the harness fine-tunes the original model."""

    training_steps: int = searchable(100, 20, 1000, log=True)
    sparsity_lambda: float = searchable(1.0, 0.01, 100.0, log=True)
    lr: float = searchable(0.01, 1e-4, 0.1, log=True)

    def check(self):
        _check_steps(self)
        if self.sparsity_lambda < 0 or self.lr < 0:
            raise SuiteError("sparsity_lambda and lr must be >= 0")


@register
class NNISlim(_NNIMethod):
    """NNI's SlimPruner (Liu et al. 2017, Network Slimming) on the BatchNorm right after each conv;
    the masked BN channels become that conv's filters. Network Slimming ranks scales globally; the
    suite fixes per-layer ratios, so each BN gets its own ``sparse_ratio`` (NNI's per-layer mode)."""

    name = "nni-slim"
    pruner = "SlimPruner"
    trained = True
    Hparams = SlimHparams
    summary = "NNI SlimPruner: L1-sparsified BN scaling factors, smallest channels per layer (Liu et al. 2017)"

    def targets(self, model, names, example):
        bns = batchnorm_after(model, names, example)
        for n, bn in bns.items():
            if bn is None:
                raise SuiteError(f"nni-slim needs a BatchNorm2d right after each pruned conv; {n} has none")
        return bns

    def pruner_args(self, work, task, hp, steps):
        return {
            "evaluator": _evaluator(work, task, hp.lr, 0.9),
            "training_steps": steps,
            "regular_scale": hp.sparsity_lambda,
        }


@dataclass(frozen=True)
class TaylorHparams(Hparams):
    """Importance is accumulated over ``training_steps`` batches of gradients. The optimizer runs
    at lr 0 (NNI needs its steps as the clock), so the scores are those of the given model."""

    training_steps: int = searchable(20, 5, 200, log=True)

    def check(self):
        _check_steps(self)


@register
class NNITaylor(_NNIMethod):
    """NNI's TaylorPruner (Molchanov et al. 2019): per filter, sum of (w * dL/dw)^2 averaged over
    training batches; the smallest go, per layer."""

    name = "nni-taylor"
    pruner = "TaylorPruner"
    trained = True
    Hparams = TaylorHparams
    summary = "NNI TaylorPruner: first-order Taylor importance (w*grad)^2 per filter (Molchanov et al. 2019)"

    def pruner_args(self, work, task, hp, steps):
        return {"evaluator": _evaluator(work, task, 0.0, 0.0), "training_steps": steps}
