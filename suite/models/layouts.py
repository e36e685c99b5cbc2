"""A model's layout: which of its convs a filter ratio may touch, how the paper's ratio strings
resolve on it, and whether removing a filter must follow coupled channels.

Every model entry (``suite.models.nets.MODELS``) carries one. Ratio resolution, the surgery, the
pipeline and the latency search ask it these questions rather than branching on a family name, so
a new kind of model is one new layout, not a dozen edited branches:

  ``PLAIN``    a VGG-style net: every conv may lose filters; ``[i-j:r]`` indexes convs; a bare
               ratio spares conv 0, as the paper does for VGG-19
  ``RESNET``   the paper's ResNets (CIFAR and torchvision): only convs inside a block whose output
               does not feed the residual addition; one ratio per stage; skip lists name blocks
  ``GENERIC``  any other model (torchvision, timm, a user's file): the groups of coupled channels
               torch-pruning traces; one ratio, globs or a FLOPs target. It lives in
               ``suite.models.groups`` with its tracing, not here

The rules are the paper's (methods/GREG_SPEC.md, "Layer ratios"). Module-name globs apply to every
layout (over its ``candidates``); a FLOPs target is a search over one ratio (``suite.models.ratios``,
which parses the strings and hands the layout a ``RatioSpec``).

A layout is also where a family of models meets the shared training code: the pipeline asks the
run's layout for its groups (:meth:`Layout.groups`) and has it remove filters (:meth:`Layout.remove`),
and never imports a family's module. So the code of one family (the generic layout's tracing, a
future transformer layout) is training code only for the runs of that family: the fingerprint
(``suite.store.fingerprint``) adds a run's layout module and model module to the shared harness, and
a change made for torchvision's models leaves the built-in nets' published runs current.
May import: suite.errors, suite.models.surgery (not ratios: ratios imports the nets that carry a
layout; not groups: it imports this module).
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from suite.errors import SuiteError
from suite.models.surgery import FilterChoice, remove_filters


@dataclass(frozen=True)
class PrunableConv:
    """A conv whose output filters may be removed. ``stage``/``block`` are None for plain nets."""

    name: str
    index: int  # position among all convs of the model (plain nets: the "conv i" of a ratio string)
    stage: int | None = None  # 1-based ResNet stage (layer1 = 1)
    block: int | None = None  # 0-based block inside the stage


@dataclass(frozen=True)
class Group:
    """A unit's channels and the weights that make them: ``size`` channels (filters, coupled
    channels, MLP channels, attention heads); ``members``: (layer name, rows) for every conv or linear
    layer whose output rows the group removes, where ``rows[i]`` is channel i's row of that layer's
    weight (an int), or its rows (a tuple of ints of one length: a head's query, key and value rows).
    The root comes first."""

    root: str
    size: int
    members: tuple[tuple[str, tuple], ...]


def single(name: str, model: nn.Module) -> Group:
    """The one-conv group of a paper layout's prunable conv (its filters, identity map)."""
    n = model.get_submodule(name).weight.shape[0]
    return Group(name, n, ((name, tuple(range(n))),))


def _all_convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _conv_and_linear(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def num_stages(model: nn.Module) -> int:
    """The residual stages of a ResNet (its ``layer1``, ``layer2``, ... children)."""
    return sum(1 for n, _ in model.named_children() if n.startswith("layer"))


@dataclass(frozen=True)
class Layout(ABC):
    """The questions every layout answers (the module docstring says which layout answers what)."""

    # Removing a filter removes the channels coupled to it (residual additions, depthwise convs,
    # concatenations): the surgery follows torch-pruning's dependency graph, a unit is a group.
    coupled: ClassVar[bool] = False
    # Ratio strings give one ratio per residual stage, and skip lists (stage.block) leave blocks whole.
    per_stage: ClassVar[bool] = False

    @abstractmethod
    def units(self, model: nn.Module, example: torch.Tensor | None) -> dict[str, tuple[str, ...]]:
        """{what a filter ratio names: the module names a glob may match to select it}, in model
        order. ``example`` (one input) is needed to trace a coupled layout."""

    def weight_layers(self, model: nn.Module) -> list[str]:
        """The layers an unstructured ratio given as one number or as globs may mask."""
        return _conv_and_linear(model)

    def candidates(
        self, model: nn.Module, granularity: str, example: torch.Tensor | None
    ) -> dict[str, tuple[str, ...]]:
        """:meth:`units` for filter pruning, :meth:`weight_layers` (each alone) for weights; a model
        with none is a one-line error."""
        cands = {n: (n,) for n in self.weight_layers(model)} if granularity == "weight" else self.units(model, example)
        if not cands:
            raise SuiteError("this model has no prunable layer (only its stem and classifier, which stay whole)")
        return cands

    def groups(self, model: nn.Module, example: torch.Tensor) -> dict[str, Group]:
        """{unit: Group} where a unit's filters go with other layers' channels; none in an uncoupled
        layout (each prunable conv is its own group, ``single``)."""
        return {}

    def unit_size(self, model: nn.Module, name: str) -> int:
        """How many channels the unit ``name`` has (a conv's filters, a linear layer's outputs)."""
        return model.get_submodule(name).weight.shape[0]

    def remove(self, model: nn.Module, choice: FilterChoice, example: torch.Tensor) -> nn.Module:
        """Physically remove the chosen filters (``suite.models.surgery.remove_filters``), in place;
        a conv whose filters reach beyond itself (a residual addition) is refused."""
        return remove_filters(model, choice, example, coupled=self.coupled)

    @abstractmethod
    def resolve(self, spec, model: nn.Module, granularity: str, example: torch.Tensor | None) -> dict[str, float]:
        """{layer: ratio > 0} for a parsed ratio string (a ``suite.models.ratios.RatioSpec``) that is
        neither globs nor a FLOPs target: one ratio, a stage list or conv ranges, with its skip list."""

    def resolve_globs(self, spec, model: nn.Module, granularity: str, example: torch.Tensor | None) -> dict[str, float]:
        """{unit: ratio > 0} for module-name globs: a unit is taken by a glob matching any of its
        modules, the last matching glob wins, unmatched units stay whole."""
        cands = self.candidates(model, granularity, example)
        names = [n for n, _ in model.named_modules() if n]
        out: dict[str, float] = {}
        for pattern, r in spec.globs:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise SuiteError(
                    f"ratio string {spec.text!r}: {pattern!r} matches no module of this model "
                    f"(its first modules: {', '.join(names[:4])}, ...)"
                )
            hit = [n for n, members in cands.items() if any(fnmatch.fnmatchcase(m, pattern) for m in members)]
            if not hit and r > 0:
                raise SuiteError(
                    f"ratio string {spec.text!r}: {pattern!r} matches no prunable layer (the stem, the "
                    f"classifier and layers tied to them stay whole)"
                )
            out.update({n: r for n in hit})
        return {n: r for n, r in out.items() if r > 0}


@dataclass(frozen=True)
class PlainLayout(Layout):
    """Every conv may lose filters; ``[i-j:r]`` indexes convs (0-based), a bare ratio spares conv 0."""

    def prunable_convs(self, model: nn.Module) -> list[PrunableConv]:
        return [PrunableConv(n, i) for i, n in enumerate(_all_convs(model))]

    def units(self, model, example=None):
        return {c.name: (c.name,) for c in self.prunable_convs(model)}

    def resolve(self, spec, model, granularity, example=None):
        # weight granularity too: a plain net's unstructured ratios name the same convs
        convs = self.prunable_convs(model)
        if spec.skip:
            raise SuiteError(f"skip lists apply to ResNets only; this model is a plain net ({spec.text})")
        if spec.stages is not None:
            raise SuiteError(
                f"ratio string {spec.text!r} is a ResNet stage list; for a plain net write "
                f"[first-last:ratio], e.g. [1-{len(convs) - 1}:0.5]"
            )
        if spec.uniform is not None:
            return {c.name: spec.uniform for c in convs if c.index > 0 and spec.uniform > 0}
        out = {}
        for a, b, r in spec.by_index:
            if b >= len(convs):
                raise SuiteError(
                    f"ratio string {spec.text!r} names conv {b}, but the model has only convs 0-{len(convs) - 1}"
                )
            for c in convs[a : b + 1]:
                out[c.name] = r
        return {k: v for k, v in out.items() if v > 0}


@dataclass(frozen=True)
class ResNetLayout(Layout):
    """The first conv of a basic block, the first two of a bottleneck; never the last conv of a
    block, a downsample conv or the stem (their channels are tied by the residual addition).
    Ratio strings: ``[stem, stage 1..N, classifier]``, stem and classifier 0 for filters."""

    per_stage: ClassVar[bool] = True

    def prunable_convs(self, model: nn.Module) -> list[PrunableConv]:
        out = []
        for i, n in enumerate(_all_convs(model)):
            parts = n.split(".")
            if len(parts) != 3 or not parts[0].startswith("layer"):
                continue  # stem conv and downsample convs (layerS.B.downsample.0)
            stage, block, conv = int(parts[0][5:]), int(parts[1]), parts[2]
            block_mod = model.get_submodule(f"{parts[0]}.{parts[1]}")
            last = "conv3" if hasattr(block_mod, "conv3") else "conv2"
            if conv != last:
                out.append(PrunableConv(n, i, stage, block))
        return out

    def units(self, model, example=None):
        return {c.name: (c.name,) for c in self.prunable_convs(model)}

    def resolve(self, spec, model, granularity, example=None):
        if granularity == "weight":
            return self._resolve_weights(spec, model)
        convs = self.prunable_convs(model)
        stages = num_stages(model)
        if spec.by_index is not None:
            raise SuiteError(
                f"ratio string {spec.text!r} indexes convs; a ResNet takes one ratio per stage "
                f"plus stem and classifier, e.g. [0{',0.5' * stages},0]"
            )
        if spec.uniform is not None:
            per_stage = [spec.uniform] * stages
        else:
            if len(spec.stages) != stages + 2:
                raise SuiteError(
                    f"ratio string {spec.text!r} has {len(spec.stages)} entries; this ResNet needs "
                    f"{stages + 2} (stem, {stages} stages, classifier)"
                )
            if spec.stages[0] or spec.stages[-1]:
                raise SuiteError(
                    f"ratio string {spec.text!r}: stem and classifier entries must be 0 (their "
                    f"channels are tied to the residual stream)"
                )
            per_stage = list(spec.stages[1:-1])
        skipped = set(spec.skip)
        for s, b in skipped:
            if not any(c.stage == s and c.block == b for c in convs):
                raise SuiteError(f"skip list names block {s}.{b}, which this ResNet does not have")
        return {
            c.name: per_stage[c.stage - 1]
            for c in convs
            if per_stage[c.stage - 1] > 0 and (c.stage, c.block) not in skipped
        }

    @staticmethod
    def _resolve_weights(spec, model: nn.Module) -> dict[str, float]:
        """Unstructured: a stage entry covers every conv of the stage (downsample included), the
        stem and classifier entries the stem conv and the linear layer."""
        stages = num_stages(model)
        if spec.by_index is not None:
            raise SuiteError(f"ratio string {spec.text!r} indexes convs; a ResNet takes [stem, stages..., classifier]")
        if spec.uniform is not None:
            entries = [spec.uniform] * (stages + 2)
        elif len(spec.stages) != stages + 2:
            raise SuiteError(
                f"ratio string {spec.text!r} has {len(spec.stages)} entries; this ResNet needs "
                f"{stages + 2} (stem, {stages} stages, classifier)"
            )
        else:
            entries = list(spec.stages)
        out = {}
        for name, m in model.named_modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            first = name.split(".")[0]
            if first.startswith("layer"):
                stage = int(first[5:])
                if spec.skip and len(name.split(".")) > 1 and (stage, int(name.split(".")[1])) in spec.skip:
                    continue
                r = entries[stage]
            else:
                r = entries[-1] if isinstance(m, nn.Linear) else entries[0]
            if r > 0:
                out[name] = r
        return out


PLAIN, RESNET = PlainLayout(), ResNetLayout()
