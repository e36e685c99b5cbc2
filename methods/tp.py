"""Torch-Pruning's criteria and sparse-learning pruners (``torch_pruning.importance`` and
``torch_pruning.pruner``) as suite entries: Torch-Pruning scores, the suite fixes the counts, the
harness removes.

How an entry chooses. A Torch-Pruning pruner (``BasePruner`` or the entry's own pruner class) is
built on the model with every layer the setting does not prune in ``ignored_layers``, so its
dependency graph, its groups and its regularizer cover exactly the pruned convs. For each pruned
conv the group rooted at its output channels (the conv, its batch norm, the next layer's input
channels) is scored by the entry's ``tp.importance`` class, and the ``n_pruned(r, n)`` lowest
scores go (``methods.criteria.smallest``: ties by index). Torch-Pruning's own ``pruner.step()`` is
not used: its per-layer ratio rounds with ``int()`` and its global mode would pick its own counts,
while every suite entry removes the setting's exact per-layer counts.

Scoring follows Torch-Pruning's benchmark configuration (``benchmarks/main.py``): group-level
importance, ``group_reduction='mean'`` over the group's layers. Exception: ``tp-l1`` scores the
first layer of the group only (``group_reduction='first'``, the conv's own weights), which is Li et
al.'s rule, so it must choose exactly what ``l1`` chooses (an independent check of our L1 path).

Within one layer a normalizer rescales every score of the layer alike, and LAMP's normalizer
(w^2 over the sum of the w^2 not smaller) is increasing in the score, so with per-layer counts
``tp-lamp`` removes what ``tp-l2`` removes; LAMP differs only under global pruning, which the suite's
fixed per-layer ratios exclude. It is listed because users look for it; the tests hold the two equal.

Gradient criteria (``tp-taylor``, ``tp-hessian``) run their passes on a deep copy in eval mode
(batch-norm statistics of the harness's model untouched), on batches from ``task.batches`` so the
harness counts them. ``tp-hessian`` is Torch-Pruning's OBD-C (``OBDCImportance``): the diagonal of
the Fisher from per-sample gradients (labels sampled from the model's own prediction, as in
Torch-Pruning's benchmark), times w^2.

Sparse-learning entries (``tp-bn-scale``, ``tp-group-norm``, ``tp-growing-reg``) train the
harness's model in place through ``task.train`` with a hook that calls the pruner's
``regularize(model)`` after every backward pass, then score the sparsified model. The suite's
loop keeps the setting's weight decay on (Torch-Pruning's scripts set it to 0 while regularizing).
"""

from __future__ import annotations

import copy
import importlib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Hparams, Method, PruneTask, Pruning, searchable
from methods.criteria import smallest
from methods.registry import register
from suite.errors import SuiteError
from suite.models.ratios import n_pruned
from suite.models.surgery import batchnorm_after


def _tp():
    # Imported on use, as NNI is: most suite commands never build a pruner.
    return importlib.import_module("torch_pruning")


@contextmanager
def _eval(model: nn.Module):
    """Trace (and score) in eval mode, so a pass leaves batch-norm running statistics as they were."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _ignored(
    model: nn.Module, layer_ratios: dict[str, float], example: torch.Tensor, groups: dict | None = None
) -> list[nn.Module]:
    """Every conv, linear and batch norm that is neither a pruned conv (or a conv coupled to one in
    its group, ``task.groups``) nor the batch norm right after one: Torch-Pruning's groups and
    regularizers then reach only the layers the setting prunes."""
    names = {m for n in layer_ratios for m, _ in (groups[n].members if groups and n in groups else [(n, None)])}
    keep = {id(model.get_submodule(n)) for n in names}
    for bn in batchnorm_after(model, names, example).values():
        if bn is not None:
            keep.add(id(model.get_submodule(bn)))
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and id(m) not in keep]


def build_pruner(cls_name: str, model: nn.Module, task: PruneTask, importance, **kw):
    """A Torch-Pruning pruner (``tp.pruner.<cls_name>``) on ``model``, traced in eval mode, with the
    layers the setting does not prune ignored. Its ratios are never used (no ``step()``)."""
    tp = _tp()
    example = task.example.to(next(model.parameters()).device)
    try:
        ignored = _ignored(model, task.layer_ratios, example, task.groups)
        with _eval(model), warnings.catch_warnings():
            # a ViT's class token and position embedding are the embedding width, to be sliced with it
            warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
            return getattr(tp.pruner, cls_name)(model, example, importance=importance, ignored_layers=ignored, **kw)
    except SuiteError:
        raise
    except Exception as e:  # its tracing fails on the model (ShuffleNetV2's channel shuffle): say so in one line
        raise SuiteError(
            f"Torch-Pruning's {cls_name} cannot trace this model whole ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:160]}); the suite's own methods prune it where it can"
        ) from None


def choose(model: nn.Module, pruner, task: PruneTask, who: str) -> dict[str, list[int]]:
    """Per pruned unit, the ``n_pruned(r, n)`` channels whose group scores lowest under the pruner's
    importance: the group rooted at the unit's layer's output rows (a conv's filters, a linear
    layer's outputs: an MLP's channels, a fused qkv layer's rows), every row scored at once; a
    channel's score is its row's, a head's the sum over its query, key and value rows."""
    tp = _tp()
    out = {}
    for name, r in task.layer_ratios.items():
        layer = model.get_submodule(name)
        if isinstance(layer, nn.Conv2d):
            rows, handler = layer.out_channels, tp.prune_conv_out_channels
        elif isinstance(layer, nn.Linear):
            rows, handler = layer.out_features, tp.prune_linear_out_channels
        else:
            raise SuiteError(f"{who} prunes conv filters and linear outputs; {name} is a {type(layer).__name__}")
        group = pruner.DG.get_pruning_group(layer, handler, idxs=list(range(rows)))
        with torch.no_grad():
            scores = pruner.estimate_importance(group)
        if scores is None or scores.numel() != rows:
            raise SuiteError(
                f"{who}: Torch-Pruning's {type(pruner.importance).__name__} gave no score for {name} "
                f"(does it have the layer this criterion reads, e.g. a BatchNorm2d after it?)"
            )
        if not torch.isfinite(scores).all():
            raise SuiteError(f"{who}: Torch-Pruning's scores for {name} are not finite")
        unit = task.group(model, name)
        index = torch.as_tensor(dict(unit.members)[name], device=scores.device)
        per_channel = scores[index].sum(1) if index.dim() > 1 else scores[index]
        out[name] = smallest(per_channel, n_pruned(r, unit.size))
    return out


def _info(pruner, **extra) -> dict:
    imp = pruner.importance
    return {
        "tp_version": _tp().__version__,
        "tp_pruner": type(pruner).__name__,
        "tp_importance": type(imp).__name__,
        "group_reduction": getattr(imp, "group_reduction", None),
        **extra,
    }


# --------------------------------------------------------------------------- one-shot magnitude criteria
class _Magnitude(Method):
    """A weight criterion: no training, no gradients."""

    importance: ClassVar[str]  # class name in tp.importance
    importance_args: ClassVar[dict] = {}

    def prune(self, model, task, hp):
        imp = getattr(_tp().importance, self.importance)(**self.importance_args)
        pruner = build_pruner("BasePruner", model, task, imp)
        return Pruning(filters=choose(model, pruner, task, self.name), info=_info(pruner))


@register
class TPL1(_Magnitude):
    """Li et al. 2017 through Torch-Pruning: the L1 norm of the conv's own filters (first layer of
    the group); the same choice as ``l1``."""

    name = "tp-l1"
    importance = "MagnitudeImportance"
    importance_args = {"p": 1, "group_reduction": "first", "normalizer": None}
    summary = "Torch-Pruning MagnitudeImportance(p=1) on the conv itself: smallest-L1 filters (Li et al. 2017)"


@register
class TPL2(_Magnitude):
    """Torch-Pruning's default criterion: the group's squared L2 norm, averaged over the conv's
    output filters, its batch norm and the next layer's input channels (DepGraph)."""

    name = "tp-l2"
    importance = "MagnitudeImportance"
    importance_args = {"p": 2}
    summary = "Torch-Pruning group L2 magnitude (conv, BN and next layer's inputs; Fang et al. 2023)"


@register
class TPFPGM(_Magnitude):
    """He et al. 2019 through Torch-Pruning: the filters nearest the others (summed distance),
    over the group's conv layers."""

    name = "tp-fpgm"
    importance = "FPGMImportance"
    importance_args = {"p": 2}
    summary = "Torch-Pruning FPGMImportance: filters nearest the geometric median (He et al. 2019)"


@register
class TPLAMP(_Magnitude):
    """Lee et al. 2021 through Torch-Pruning. With per-layer counts it removes what ``tp-l2`` does
    (LAMP's normalizer keeps the order within a layer; see the module docstring)."""

    name = "tp-lamp"
    importance = "LAMPImportance"
    importance_args = {"p": 2}
    summary = "Torch-Pruning LAMPImportance (Lee et al. 2021); per-layer counts make it tp-l2's choice"


# --------------------------------------------------------------------------- gradient criteria
@dataclass(frozen=True)
class GradientHparams(Hparams):
    """Batches of the prune batch size whose gradients the criterion accumulates."""

    batches: int = searchable(10, 1, 200, log=True)

    def check(self):
        if self.batches < 1:
            raise SuiteError("batches must be >= 1")


def _fitting(method: Method, field: str, trial, base, space: dict, max_iters: int):
    """A search draw whose own passes (``field`` iterations) finish within the cap: the field's
    range is cut at ``max_iters``, so no proposal is a capped run."""
    if field in space:
        low, high, log = space[field]
        if low > max_iters:
            raise SuiteError(
                f"{method.name}: {field} >= {low} cannot finish within the setting's cap of {max_iters} "
                f"iterations: raise [prune] max_iters or narrow --space"
            )
        space = {**space, field: (low, min(high, max_iters), log)}
    return method.Hparams.suggest(trial, base=base, space=space)


def _drain(task: PruneTask, n: int, step) -> int:
    """Run ``step(x, y)`` on ``n`` batches of ``task.batches`` (the harness counts them); refuse fewer."""
    done = 0
    for x, y in task.batches(n):
        step(x, y)
        done += 1
    if done < n:
        raise SuiteError(f"training batches ran out after {done} of {n}")
    return done


@register
class TPTaylor(Method):
    """Molchanov et al. 2019 through Torch-Pruning's GroupTaylorImportance: |w * dL/dw| summed per
    channel over the group, gradients summed over ``batches`` batches."""

    name = "tp-taylor"
    Hparams = GradientHparams
    summary = "Torch-Pruning GroupTaylorImportance: first-order Taylor |w*grad| over the group (Molchanov 2019)"

    def planned_iters(self, hp):
        return hp.batches

    def suggest(self, trial, base, space, max_iters):
        return _fitting(self, "batches", trial, base, space, max_iters)

    def prune(self, model, task, hp):
        work = copy.deepcopy(model).eval()
        work.zero_grad(set_to_none=True)
        n = min(hp.batches, task.max_iters)

        def step(x, y):
            F.cross_entropy(work(x), y).backward()  # gradients accumulate over the batches

        _drain(task, n, step)
        pruner = build_pruner("BasePruner", work, task, _tp().importance.GroupTaylorImportance())
        return Pruning(filters=choose(work, pruner, task, self.name), info=_info(pruner, batches=n))


def _hook_obdc(imp, pruner) -> list:
    """Register OBDCImportance's input and output-gradient hooks, as its ``_prepare_model`` means
    to, on every conv and linear of the groups it will score (also a group's next layer, whose
    Fisher it reads even where it only scores output channels). Hand-written because Torch-Pruning
    1.6's ``_prepare_model`` fails with its own pruners (it iterates the result of
    ``_downstream_node_as_root_if_attention``, None for every non-attention group) and hooks only
    the groups' roots. Returns the hook handles, so they come off cleanly afterwards."""
    handles = []
    for group in pruner.DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        for dep, _ in group:
            layer = dep.target.module
            if isinstance(layer, tuple(imp.target_types)) and layer not in imp.modules:
                imp.modules.append(layer)
                handles.append(layer.register_forward_pre_hook(imp._save_input))
                handles.append(layer.register_full_backward_hook(imp._save_grad_output))
    return handles


@register
class TPHessian(Method):
    """OBD-C through Torch-Pruning's OBDCImportance (Optimal Brain Damage with the Fisher diagonal
    from per-sample gradients, as in EigenDamage's C-OBD baseline): per filter, sum of F_ii * w_i^2."""

    name = "tp-hessian"
    Hparams = GradientHparams
    summary = "Torch-Pruning OBDCImportance: OBD saliency w^2 * Fisher diagonal (per-sample gradients)"

    def planned_iters(self, hp):
        return hp.batches

    def suggest(self, trial, base, space, max_iters):
        return _fitting(self, "batches", trial, base, space, max_iters)

    def prune(self, model, task, hp):
        work = copy.deepcopy(model).eval()
        with torch.no_grad():
            classes = work(task.example.to(next(work.parameters()).device)).shape[1]
        imp = _tp().importance.OBDCImportance(group_reduction="mean", num_classes=classes)
        pruner = build_pruner("BasePruner", work, task, imp)
        handles = _hook_obdc(imp, pruner)
        g = torch.Generator().manual_seed(task.seed)
        n = min(hp.batches, task.max_iters)

        def step(x, y):
            work.zero_grad(set_to_none=True)
            out = work(x)
            # the true Fisher: labels drawn from the model's own prediction (y only sets the count)
            sampled = torch.multinomial(F.softmax(out.detach().float().cpu(), 1), 1, generator=g).squeeze(1)
            F.cross_entropy(out, sampled.to(out.device)).backward()
            imp.step()

        try:
            _drain(task, n, step)
            filters = choose(work, pruner, task, self.name)
        except RuntimeError as e:  # its per-sample gradients of a linear layer that sees tokens (3-D input)
            raise SuiteError(
                f"{self.name}: Torch-Pruning's OBDCImportance fails on this model ({' '.join(str(e).split())[:120]}); "
                f"it reads per-sample gradients of 2-D layer inputs, and a transformer's linear layers see tokens"
            ) from None
        finally:
            for h in handles:
                h.remove()
        return Pruning(filters=filters, info=_info(pruner, batches=n))


# --------------------------------------------------------------------------- sparse learning
class SparseHook:
    """The training-loop hook (suite.training.loop.Hook) of a sparse-learning phase: the pruner's
    ``regularize(model)`` adds its penalty gradient after every backward pass; GrowingReg's
    ``update_reg()`` grows the penalty every ``update_interval`` iterations; the phase ends after
    ``iters`` iterations. State: GrowingReg's per-group penalties (the others have none)."""

    def __init__(self, pruner, iters: int, regularize_args: dict | None = None, update_interval: int = 0):
        self.pruner, self.iters = pruner, iters
        self.regularize_args = regularize_args or {}
        self.update_interval = update_interval

    def after_backward(self, model, step: int) -> None:
        self.pruner.regularize(model, **self.regularize_args)

    def after_step(self, model, step: int) -> bool:
        if self.update_interval and step % self.update_interval == 0:
            self.pruner.update_reg()
        return step >= self.iters

    def _groups(self):
        return list(getattr(self.pruner, "group_reg", {}).keys())

    def state_dict(self) -> dict:
        return {"group_reg": [self.pruner.group_reg[g].clone() for g in self._groups()]}

    def load_state_dict(self, state: dict) -> None:
        for g, reg in zip(self._groups(), state["group_reg"]):
            self.pruner.group_reg[g] = reg

    def log_row(self) -> dict:
        regs = [self.pruner.group_reg[g] for g in self._groups()]
        return {"max_reg": max(float(r.max()) for r in regs)} if regs else {}


def _check_sparse(hp) -> None:
    if hp.sparse_iters < 1:
        raise SuiteError("sparse_iters must be >= 1")
    if hp.reg < 0:
        raise SuiteError("reg must be >= 0")


class _Sparse(Method):
    """Sparse learning through ``task.train``, then Torch-Pruning's importance on the result."""

    pruner_class: ClassVar[str]

    def planned_iters(self, hp):
        return hp.sparse_iters

    def suggest(self, trial, base, space, max_iters):
        return _fitting(self, "sparse_iters", trial, base, space, max_iters)

    def importance(self, hp):
        raise NotImplementedError

    def pruner_args(self, hp) -> dict:
        return {"reg": hp.reg}

    def hook(self, pruner, hp) -> SparseHook:
        return SparseHook(pruner, hp.sparse_iters)

    def prune(self, model, task, hp):
        pruner = build_pruner(self.pruner_class, model, task, self.importance(hp), **self.pruner_args(hp))
        hook = self.hook(pruner, hp)
        outcome = task.train(hooks=(hook,), desc=f"{self.name} sparse learning", log_every=100, log_extra=hook.log_row)
        with _eval(model):
            filters = choose(model, pruner, task, self.name)
        return Pruning(filters=filters, info=_info(pruner, capped_before_done=not outcome.stopped_by_hook))


@dataclass(frozen=True)
class BNScaleHparams(Hparams):
    """Network Slimming's L1 penalty on batch-norm scales (lambda 1e-4 on CIFAR in Liu et al.)."""

    sparse_iters: int = searchable(2000, 100, 20000, log=True)
    reg: float = searchable(1e-4, 1e-6, 1e-2, log=True)

    def check(self):
        _check_sparse(self)


@register
class TPBNScale(_Sparse):
    """Liu et al. 2017 (Network Slimming) through Torch-Pruning's BNScalePruner: ``reg * sign(gamma)``
    on the pruned convs' batch-norm scales, then the smallest |gamma| go (per layer)."""

    name = "tp-bn-scale"
    Hparams = BNScaleHparams
    pruner_class = "BNScalePruner"
    summary = "Torch-Pruning BNScalePruner: L1 sparse learning on BN scales, then smallest |gamma| (Liu 2017)"

    def importance(self, hp):
        return _tp().importance.BNScaleImportance()


@dataclass(frozen=True)
class GroupNormHparams(Hparams):
    """DepGraph's group sparse learning: per group, ``reg * 2^(alpha * (max - imp) / (max - min))``
    times the weights, so the least important channels are pushed hardest (reg 5e-4 is
    Torch-Pruning's CIFAR ResNet-56 run)."""

    sparse_iters: int = searchable(2000, 100, 20000, log=True)
    reg: float = searchable(5e-4, 1e-5, 1e-2, log=True)
    alpha: float = searchable(4.0, 0.0, 8.0)

    def check(self):
        _check_sparse(self)
        if self.alpha < 0:
            raise SuiteError("alpha must be >= 0 (the penalty spans 2^0 .. 2^alpha)")


@register
class TPGroupNorm(_Sparse):
    """Fang et al. 2023 (DepGraph) through Torch-Pruning's GroupNormPruner and group L2 importance."""

    name = "tp-group-norm"
    Hparams = GroupNormHparams
    pruner_class = "GroupNormPruner"
    summary = "Torch-Pruning GroupNormPruner: DepGraph group sparse learning, then group L2 (Fang 2023)"

    def importance(self, hp):
        # Torch-Pruning's CIFAR benchmark: group L2, normalized by the maximum
        return _tp().importance.GroupMagnitudeImportance(p=2, normalizer="max")

    def pruner_args(self, hp):
        return {"reg": hp.reg, "alpha": hp.alpha}

    def hook(self, pruner, hp):
        # GroupNormPruner.regularize reads its base from the argument (default 2**4), not self.alpha
        return SparseHook(pruner, hp.sparse_iters, regularize_args={"alpha": 2**hp.alpha})


@dataclass(frozen=True)
class GrowingRegHparams(Hparams):
    """Torch-Pruning's growing regularization: every group starts at ``reg``; every
    ``update_interval`` iterations each channel's penalty grows by ``delta_reg`` times its
    standardized unimportance (1 for the least important channel of the group, 0 for the most)."""

    sparse_iters: int = searchable(2000, 100, 20000, log=True)
    reg: float = searchable(1e-4, 1e-6, 1e-2, log=True)
    delta_reg: float = searchable(1e-4, 1e-6, 1e-2, log=True)
    update_interval: int = 10

    def check(self):
        _check_sparse(self)
        if self.delta_reg < 0 or self.update_interval < 1:
            raise SuiteError("delta_reg must be >= 0 and update_interval >= 1")


@register
class TPGrowingReg(_Sparse):
    """Torch-Pruning's GrowingRegPruner (after Wang et al. 2021): an independent implementation of
    the GReg family to hold ``greg1``/``greg2`` against. It differs from methods/GREG_SPEC.md: the penalty
    is graded by importance rather than fixed to a pruned set, it covers the whole group, and the
    phase has a fixed length rather than a ceiling and a stabilization."""

    name = "tp-growing-reg"
    Hparams = GrowingRegHparams
    pruner_class = "GrowingRegPruner"
    summary = "Torch-Pruning GrowingRegPruner: growing L2 penalty graded by group importance (Wang 2021)"

    def importance(self, hp):
        return _tp().importance.GroupMagnitudeImportance(p=2)

    def pruner_args(self, hp):
        return {"reg": hp.reg, "delta_reg": hp.delta_reg}

    def hook(self, pruner, hp):
        return SparseHook(pruner, hp.sparse_iters, update_interval=hp.update_interval)
