"""What can be pruned in any model: the groups of coupled channels of torch-pruning's DependencyGraph.

A *group* is a set of output channels that must go together: a conv with its batch norm, the
depthwise conv that follows it, every conv feeding the same residual addition, the slices of a
concatenation. torch-pruning's ``DependencyGraph.get_all_groups`` finds them by tracing the model;
each group is named by its root conv (the first of its convs in the model's module order) and knows,
for every conv whose output channels it removes, which of that conv's filters each root channel is
(identity for a residual add or a depthwise conv, an offset for a concatenation).

Kept by default: the group that holds the stem (the first conv; in a ResNet that is the residual
stream of the first stage) and the classifier (the last conv or linear layer; its outputs are the
classes). Linear layers are never roots of these groups: a transformer's linear layers are units of
their own, its attention heads and MLP channels (``suite.models.transformers``), which the
``GENERIC`` layout adds to these groups.

Kept whole because a method's arbitrary filters cannot go there: a group that reaches a grouped
convolution (RegNet, ResNeXt: ``_grouped``) or MaxViT's attention (``_fixed_shape``). A model whose
channels are shuffled (ShuffleNetV2) is pruned inside its branches, each traced on its own
(``shuffled_scopes``), since torch-pruning cannot trace the shuffle.

The ``GENERIC`` layout (models from torchvision, timm or a user's file) is defined here, with the
tracing it rests on: its ratio strings are a single ratio, module-name globs, structure kinds
(``heads``, ``mlp``, ``convs``), or a FLOPs target (``suite.models.ratios``); the built-in models keep the paper's layouts (``suite.models.layouts``),
which never import this module, so this module is training code for generic models only.
"""

from __future__ import annotations

import contextlib
import fnmatch
import warnings
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch_pruning as tp
from torch import nn

from suite.errors import SuiteError
from suite.models.layouts import Group, Layout, _conv_and_linear
from suite.models.surgery import FilterChoice, remove_filters, traced
from suite.models.transformers import KINDS, fit_embedding_width, remove_units, transformer_groups, transformer_units
from suite.models.transformers import unit_size as transformer_unit_size


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
        return traced(model, example)
    except Exception as e:
        try:  # a model that fails on the input itself is the input's problem, not the tracing's
            with torch.no_grad():
                model(example)
        except Exception as plain:
            c, h, w = example.shape[1:]
            raise SuiteError(
                f"the model fails on {c}x{h}x{w} inputs before any pruning ({type(plain).__name__}: "
                f"{' '.join(str(plain).split())[:200]}): use a model built for this size, or data of the size it takes"
            ) from None
        raise SuiteError(
            f"torch-pruning cannot trace this model ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        ) from None
    finally:
        model.train(was)


@contextlib.contextmanager
def _embedding_tensors_expected():
    """torch-pruning warns, when it removes channels of a ViT, that it will slice the last dimension
    of the parameters no layer owns (the class token and position embedding): that is the embedding
    width, what the ``embed`` kind removes, so the warning is silenced here (and only it; the
    tracing, ``suite.models.surgery.traced``, silences its own)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        yield


def prunable_groups(
    model: nn.Module, example: torch.Tensor, keep_stem: bool = True, keep_classifier: bool = True
) -> dict[str, Group]:
    """{root conv name: Group} for every prunable group, in module order. A model with shuffled
    channels (``shuffled_scopes``) has its groups found inside each branch, traced on its own."""
    order = {name: i for i, name in enumerate(n for n, _ in model.named_modules())}
    scopes = shuffled_scopes(model)
    if scopes:
        out = {}
        for scope, x in _scope_inputs(model, scopes, example).items():
            branch = model.get_submodule(scope)
            last = [m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1]  # its outputs leave the branch
            found = _groups_of(dependency_graph(branch, x), branch, [last])
            out.update({f"{scope}.{r}": _prefixed(g, scope) for r, g in found.items()})
    else:
        stem, classifier = stem_and_classifier(model)
        ignored = [
            model.get_submodule(n)
            for n, keep in ((stem, keep_stem), (classifier, keep_classifier))
            if n is not None and keep
        ]
        out = _groups_of(dependency_graph(model, example), model, ignored)
    return dict(sorted(out.items(), key=lambda kv: order[kv[0]]))


def _groups_of(dg: tp.DependencyGraph, model: nn.Module, ignored: list[nn.Module]) -> dict[str, Group]:
    """The groups of a traced (sub)model, named by module names inside it."""
    name_of = {id(m): n for n, m in model.named_modules()}
    order = {name: i for i, name in enumerate(n for n, _ in model.named_modules())}
    fixed = _fixed_shape(model)
    out: dict[str, Group] = {}
    for found in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        convs = [
            item.dep.target.module
            for item in found
            if isinstance(item.dep.target.module, nn.Conv2d) and dg.is_out_channel_pruning_fn(item.dep.handler)
        ]
        root_module = min(convs, key=lambda m: order[name_of[id(m)]])  # name it by its first conv
        size = root_module.out_channels
        group = dg.get_pruning_group(root_module, tp.prune_conv_out_channels, idxs=list(range(size)))
        if any(_grouped(item.dep.target.module) or id(item.dep.target.module) in fixed for item in group):
            continue  # see _grouped and _fixed_shape: such channels stay whole
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
    return out


def _grouped(module: nn.Module) -> bool:
    """A grouped conv (G groups, not depthwise). Its channels can only go as the same positions of
    every group (what torch-pruning's pruners do), never as the arbitrary filters a method picks:
    removing others fails on real tensors ("INDICES element is out of DATA bounds", RegNet and
    ResNeXt at any ratio; on the meta device the dry surgery passed). A group that reaches one stays
    whole, until a unit can name one channel per position across groups."""
    return isinstance(module, nn.Conv2d) and 1 < module.groups < module.out_channels


def _fixed_shape(model: nn.Module) -> set[int]:
    """The layers (by id) inside torchvision's MaxViT attention, which reshapes its input to the head
    count and head width it was built with: pruning a channel it reads or writes makes the pruned
    model fail its forward ("shape '[1, 64, 49, 32]' is invalid"). The groups that reach one (the
    residual stream of every stage) stay whole, as a transformer's embedding width does; the MBConv
    blocks' inner channels prune, and the attention's heads are units of their own once the zoo has
    made them removable (``suite.models.transformers.windowwise``)."""
    from torchvision.models.maxvit import RelativePositionalMultiHeadAttention

    return {
        id(layer)
        for m in model.modules()
        if isinstance(m, RelativePositionalMultiHeadAttention)
        for layer in m.modules()
    }


def _prefixed(group: Group, scope: str) -> Group:
    return Group(f"{scope}.{group.root}", group.size, tuple((f"{scope}.{n}", idx) for n, idx in group.members))


# ----------------------------------------------------------------- shuffled channels (ShuffleNetV2)
def shuffled_scopes(model: nn.Module) -> list[str]:
    """The branches a model with a channel shuffle is pruned inside: torchvision's ShuffleNetV2
    blocks concatenate two branches and shuffle the channels with a view and a transpose, which
    torch-pruning cannot trace (its reshape mapping divides by zero: Torch-Pruning issue #14, open
    since 2020), and which ties every block's output channels to the next block's two branches.
    What can go without touching the shuffle is each block's ``branch2`` inside: its first 1x1 conv's
    filters with the depthwise conv and the last 1x1 conv's inputs (the last conv's outputs, which
    enter the concatenation, stay whole). Written here because torch-pruning has no handling of it."""
    from torchvision.models.shufflenetv2 import InvertedResidual

    return [f"{n}.branch2" for n, m in model.named_modules() if isinstance(m, InvertedResidual)]


def _scope_inputs(model: nn.Module, scopes: list[str], example: torch.Tensor) -> dict[str, torch.Tensor]:
    """One zero input per scope, shaped as what the scope receives when ``model`` runs ``example``."""
    shapes, hooks = {}, []

    def seen(scope):
        def hook(_module, args):  # returns None: a pre-hook's return value would replace the input
            shapes.setdefault(scope, args[0].shape[1:])

        return hook

    for scope in scopes:
        hooks.append(model.get_submodule(scope).register_forward_pre_hook(seen(scope)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example.to(_device(model)))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return {s: torch.zeros(1, *shapes[s], device=_device(model)) for s in scopes}


def remove_in_scopes(model: nn.Module, choice: FilterChoice, example: torch.Tensor) -> nn.Module:
    """``remove_filters`` for a model pruned inside its shuffled branches: each branch traced on its
    own and its chosen filters removed with everything coupled to them inside it."""
    scopes = shuffled_scopes(model)
    inputs = _scope_inputs(model, scopes, example)
    for scope in scopes:
        local = {n[len(scope) + 1 :]: idxs for n, idxs in choice.items() if n.startswith(scope + ".") and idxs}
        if local:
            remove_filters(model.get_submodule(scope), local, inputs[scope], coupled=True)
    outside = sorted(n for n, idxs in choice.items() if idxs and not any(n.startswith(s + ".") for s in scopes))
    if outside:
        raise SuiteError(f"{outside[0]} is outside the branches this model is pruned in (its channels are shuffled)")
    model.eval()
    return model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass(frozen=True)
class CoupledLayout(Layout):
    """Any model: a unit is a group of coupled channels, named by its first conv (the group of the
    stem and the classifier stay whole: ``prunable_groups``), or a transformer's attention heads or
    MLP channels, named by their ``qkv`` or first linear layer (``suite.models.transformers``). Takes
    one ratio for every unit, module globs, the structure kinds ``heads``/``mlp``/``convs`` as keys
    (``heads=0.5,mlp=0.3``), or a FLOPs target."""

    coupled: ClassVar[bool] = True

    def groups(self, model, example):
        convs, embedding = self._traced_groups(model, example)
        return {**convs, **embedding, **transformer_groups(model)}

    def unit_size(self, model, name):
        unit = transformer_units(model).get(name)
        return transformer_unit_size(model, unit) if unit else super().unit_size(model, name)

    def remove(self, model, choice, example):
        units = transformer_units(model)
        inner = {n: idxs for n, idxs in choice.items() if n in units}
        convs = {n: idxs for n, idxs in choice.items() if n not in units}
        remove_units(model, inner)
        if not any(convs.values()):  # heads and MLP channels only: no tracing needed
            model.eval()
            return model
        if shuffled_scopes(model):
            return remove_in_scopes(model, convs, example)
        with _embedding_tensors_expected():
            remove_filters(model, convs, example, coupled=True)
        return fit_embedding_width(model)

    @staticmethod
    def _traced_groups(model, example) -> tuple[dict[str, Group], dict[str, Group]]:
        """(the conv groups, the embedding group): ``prunable_groups``. A transformer's stem group is
        its embedding width (the channels its patch embedding writes, through every residual
        addition, LayerNorm, the class token and position embedding and the classifier's inputs;
        in Swin or ConvNeXt the first stage's width), a unit of its own that only the ``embed`` kind
        of a ratio string prunes. A CNN's stem group stays whole. For a transformer torch-pruning
        cannot trace whole (torchvision's swin_s and swin_b: a TypeError inside its tracing), none:
        its heads and MLP channels prune without tracing, and its embedding stays whole."""
        inner = transformer_units(model)
        try:
            found = prunable_groups(model, example, keep_stem=not inner)
        except SuiteError:
            if inner:
                return {}, {}
            raise
        stem, _ = stem_and_classifier(model)
        embedding = {stem: found.pop(stem)} if inner and stem in found else {}
        return found, embedding

    def _conv_groups(self, model, example) -> dict[str, Group]:
        return self._traced_groups(model, example)[0]

    def units(self, model, example):
        if example is None:
            raise ValueError("a generic model's groups need the input shape to trace it")
        convs = {root: tuple(m for m, _ in g.members) for root, g in self._conv_groups(model, example).items()}
        inner = {name: (first, second, module) for name, (_, module, first, second) in transformer_units(model).items()}
        return {**convs, **inner}

    def weight_layers(self, model):
        kept = set(stem_and_classifier(model))
        return [n for n in _conv_and_linear(model) if n not in kept]

    def resolve(self, spec, model, granularity, example):
        self._refuse_skip(spec)
        if spec.stages is not None or spec.by_index is not None:
            raise SuiteError(
                f"ratio string {spec.text!r} is a paper layout; for this model give one ratio (0.5), "
                f"module globs (features.*=0.5,classifier=0) or a FLOPs target (2.5x)"
            )
        return {n: spec.uniform for n in self.candidates(model, granularity, example) if spec.uniform > 0}

    def resolve_globs(self, spec, model, granularity, example):
        """Module globs (:meth:`Layout.resolve_globs`), where a key may also be a structure kind:
        ``heads`` (every attention module's heads), ``mlp`` (every MLP's channels) or ``convs``
        (every group of conv filters); unstructured, the weights of those layers. The last key that
        takes a unit wins, as for globs."""
        self._refuse_skip(spec)
        kinds = {kind for kind, _ in spec.globs if kind in (*KINDS, "convs", EMBED)}
        if not kinds:
            return super().resolve_globs(spec, model, granularity, example)
        inner = transformer_units(model)
        cands, embedding = self.candidates(model, granularity, example), {}
        if EMBED in kinds:  # the embedding width: a unit only when asked for (_traced_groups)
            if granularity != "filter":
                raise SuiteError(
                    f"ratio string {spec.text!r}: embed names a structure (the embedding width); for "
                    "unstructured pruning name the layers whose weights to mask"
                )
            embedding = self._traced_groups(model, example)[1]
            if not embedding:
                raise SuiteError(
                    f"ratio string {spec.text!r}: this model has no embedding width to prune (embed is a "
                    "transformer's: the channels its patch embedding writes, traced by torch-pruning)"
                )
            cands = {**cands, **{n: tuple(m for m, _ in g.members) for n, g in embedding.items()}}
        if granularity == "filter":
            kind_of = {n: inner[n][0] if n in inner else "convs" for n in cands}
            kind_of.update({n: EMBED for n in embedding})
        else:  # unstructured: a kind names the weights of its layers (heads: qkv and proj; mlp: both layers)
            kind_of = {n: "convs" for n in cands if isinstance(model.get_submodule(n), nn.Conv2d)}
            kind_of.update({layer: kind for kind, _, *layers in inner.values() for layer in layers if layer in cands})
        out: dict[str, float] = {}
        for pattern, r in spec.globs:
            if pattern in (*KINDS, "convs", EMBED):
                hit = [n for n in cands if kind_of.get(n) == pattern]
                if not hit and r > 0:
                    hint = (
                        " (heads prune in attention with a fused qkv layer, num_heads and head_dim, as timm's; "
                        "wrap nn.MultiheadAttention with suite.models.transformers.headwise)"
                        if pattern == "heads"
                        else ""
                    )
                    raise SuiteError(f"ratio string {spec.text!r}: this model has no {pattern} to prune{hint}")
                out.update({n: r for n in hit})
            elif r > 0:
                out.update(super().resolve_globs(replace(spec, globs=((pattern, r),)), model, granularity, example))
            else:  # a glob set to 0 leaves the units it matches whole
                out.update({n: 0.0 for n, mods in cands.items() if any(fnmatch.fnmatchcase(m, pattern) for m in mods)})
        return {n: r for n, r in out.items() if r > 0}

    @staticmethod
    def _refuse_skip(spec) -> None:
        """Skip lists name the paper's ResNet blocks, which this model does not have."""
        if spec.skip:
            raise SuiteError(
                f"skip lists apply to the built-in ResNets; for this model set a glob to 0, "
                f'e.g. "layer2.*=0" ({spec.text})'
            )


EMBED = "embed"  # the structure kind of a transformer's embedding width (``CoupledLayout._traced_groups``)
GENERIC = CoupledLayout()
