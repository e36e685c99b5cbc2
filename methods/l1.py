"""One-shot baselines: L1 filter pruning (Li et al. 2017), random filters, and weight magnitude."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Hparams, Method, Pruning
from methods.criteria import l1_smallest_filters, smallest_weights_mask
from methods.registry import register
from suite.models.ratios import n_pruned


@register
class L1(Method):
    """Per layer, remove the filters of smallest L1 norm (the same rule GReg-1 picks with); in a
    group of coupled convs, the channels of smallest summed L1 over the group's convs."""

    name = "l1"
    summary = "Li et al. 2017: one-shot removal of the smallest-L1 filters per layer"

    def prune(self, model, task, hp):
        return Pruning(filters=l1_smallest_filters(model, task.layer_ratios, task.groups))


@dataclass(frozen=True)
class RandomHparams(Hparams):
    """The draw is seeded by the run's seed (and this offset), so it is reproducible."""

    seed_offset: int = 0


@register
class RandomFilters(Method):
    """A sanity floor (as in ShrinkBench): the same number of filters, chosen at random."""

    name = "random"
    Hparams = RandomHparams
    summary = "random filters per layer, same counts as l1 (sanity floor)"

    def prune(self, model, task, hp):
        g = torch.Generator().manual_seed(task.seed * 7919 + hp.seed_offset)
        out = {}
        for name, r in task.layer_ratios.items():
            n = task.group(model, name).size
            out[name] = sorted(torch.randperm(n, generator=g)[: n_pruned(r, n)].tolist())
        return Pruning(filters=out)


@register
class Magnitude(Method):
    """Unstructured one-shot baseline: per layer, zero the smallest-|w| weights."""

    name = "magnitude"
    granularity = "weight"
    summary = "one-shot unstructured pruning of the smallest-magnitude weights per layer"

    def prune(self, model, task, hp):
        return Pruning(
            masks={n: smallest_weights_mask(model.get_submodule(n).weight, r) for n, r in task.layer_ratios.items()}
        )
