"""GReg-1 and GReg-2 (Wang et al., ICLR 2021), as methods/GREG_SPEC.md states them.

The penalty is an extra gradient ``grad += lambda * w`` on conv weights, added at every iteration
of a regularization phase (the ordinary weight decay stays on); lambda grows every K_u iterations.

GReg-1: the pruned set is fixed at the start by L1 norm (exactly what ``l1`` removes); its lambda
grows by delta up to the ceiling tau, or until every layer's kept/pruned magnitude ratio reaches
``mag_ratio_limit``. GReg-2: a picking phase first grows a small penalty on all groups and
re-ranks by L1 at ``pick_ceiling``; then pruned groups grow as in GReg-1 and kept groups get the
``recover`` value.

On a model of coupled channels (a ``generic`` model, ``suite.models.groups``) a "layer" is a group: its
channels are ranked by their L1 summed over the group's convs, and the penalty falls on the
to-be-removed filters of every conv of the group (the root, a depthwise conv after it, every conv
feeding the same residual addition), each at the filter index of that channel. A group of one conv,
which is every prunable conv of the paper's nets, is exactly the paper's per-filter rule.

Lambdas are held per layer as counts of increments (pruned) and one number (kept) rather than an
[N, C] tensor: within a layer every pruned group has the same lambda and so does every kept group,
so this is the same penalty, and 10,000 float32 additions of 1e-4 would drift from the schedule.

A budget (the setting's cap) that ends inside GReg-2's picking is not refused: a smoke run's cap
of a few iterations must still run, and a cap cannot be known to fit before the run (the harness
may cap below the planned length). The pick is then forced by the current L1 ranking and the
result says so (``pick_forced``, ``pick_updates``), next to ``capped_before_done``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from methods.base import Column, Hparams, Method, PruneTask, Pruning, presentation, rank_overlap, searchable
from methods.criteria import smallest_index, smallest_weights_mask, unit_scores
from methods.registry import register
from suite.errors import SuiteError
from suite.models.layouts import single
from suite.models.ratios import n_pruned
from suite.models.surgery import batchnorm_after

# lambda is n * increment in exact arithmetic; in float64 it carries a relative error near 1e-16,
# so "lambda > tau" and "lambda >= ceiling" are decided with a 1e-9 relative margin: a lambda that
# equals tau in exact arithmetic is not above it (1.0 / 1e-4 = 10,000 increments, then one more).
# This is the spec's arithmetic ("0.01, i.e. 1000 updates"); the authors' float32 reg tensors
# drift by one update either way (above 1.0 after 10,000 additions, 0.01 reached after 1,001).
_EPS = 1e-9


def _above(x: float, limit: float) -> bool:
    return x > limit * (1 + _EPS)


def _reached(x: float, limit: float) -> bool:
    return x >= limit * (1 - _EPS)


@dataclass(frozen=True)
class GRegHparams(Hparams):
    """Defaults: the paper's CIFAR recipe (K_u 10, K_s 10,000); settings may scale them."""

    penalty_increment: float = searchable(1e-4, 1e-5, 1e-3, log=True)  # reg_granularity_prune, delta
    penalty_ceiling: float = searchable(1.0, 0.1, 10.0, log=True)  # reg_upper_limit, tau
    update_interval: int = 10  # update_reg_interval, K_u
    stabilize_iters: int = 10_000  # stabilize_reg_interval, K_s
    mag_ratio_limit: float = 1000.0
    ratio_momentum: float = 0.9
    pick_increment: float = 1e-5  # reg_granularity_pick (GReg-2)
    pick_ceiling: float = 0.01  # reg_upper_limit_pick (GReg-2)
    recover: float = -1e-4  # reg_granularity_recover (GReg-2, kept groups)
    log_every: int = presentation(100)  # iterations between log rows of lambda and magnitude ratio

    def check(self):
        if self.penalty_increment <= 0 or self.penalty_ceiling <= 0:
            raise SuiteError("penalty_increment and penalty_ceiling must be > 0")
        if self.pick_increment <= 0 or self.pick_ceiling <= 0:
            raise SuiteError("pick_increment and pick_ceiling must be > 0 (GReg-2's picking must end)")
        if self.recover > 0:
            raise SuiteError("recover must be <= 0 (the kept groups' lambda, e.g. -1e-4)")
        if not self.mag_ratio_limit > 0:
            raise SuiteError("mag_ratio_limit must be > 0 (e.g. 1000; inf disables the ratio stop)")
        if not 0 <= self.ratio_momentum < 1:
            raise SuiteError("ratio_momentum must be in [0, 1) (e.g. 0.9)")
        if self.update_interval < 1 or self.stabilize_iters < 0 or self.log_every < 1:
            raise SuiteError("update_interval and log_every must be >= 1, stabilize_iters >= 0")


def pick_updates(hp: GRegHparams) -> int:
    """GReg-2's picking updates: the first n with n * pick_increment >= pick_ceiling."""
    return max(1, math.ceil(hp.pick_ceiling * (1 - _EPS) / hp.pick_increment))


def schedule_updates(hp: GRegHparams, variant: int) -> int:
    """Penalty updates until every layer stops at its ceiling (no stop by magnitude ratio): the
    first n with n * delta > tau (GReg-1); GReg-2 adds its picking updates, after which lambda
    grows from the picking value (and the pick update itself stops a layer already above tau)."""
    start = pick_updates(hp) * hp.pick_increment if variant == 2 else 0.0
    if _above(start, hp.penalty_ceiling):
        grow = 0
    else:
        grow = math.floor((hp.penalty_ceiling * (1 + _EPS) - start) / hp.penalty_increment) + 1
    return (pick_updates(hp) if variant == 2 else 0) + grow


class _Layer:
    """One regularized unit: its pruned set, its two lambdas and its magnitude ratio.

    ``members``: (weight, rows) for every layer whose output rows the unit's channels are, the
    root first: a conv alone (rows: the identity), a group of coupled convs (each at the filter
    index of each root channel), a transformer's MLP channels (its first linear layer's rows) or
    heads (rows 2-D: a head's query, key and value rows). Unstructured: the one layer, rows None,
    every weight its own group."""

    def __init__(self, name: str, members, size: int, ratio: float, structured: bool):
        self.name, self.ratio, self.structured, self.size = name, ratio, structured, size
        self.members = [(w, None if rows is None else torch.as_tensor(rows, device=w.device)) for w, rows in members]
        self.picks = self.increments = 0  # updates of the picking phase and of the pruning phase
        self.lam_kept = 0.0
        self.picked = False
        self.done = False
        self.hist_ratio: float | None = None
        self.set_pruned(self.rank())
        self.initial = self.pruned.clone()

    def lam_pruned(self, hp: GRegHparams) -> float:
        """The pruned groups' lambda, as a product (no drift from 10^4 float additions)."""
        return self.picks * hp.pick_increment + self.increments * hp.penalty_increment

    def set_pruned(self, pruned: torch.Tensor) -> None:
        """Fix the pruned groups, and per member the {0,1} mask (1 = pruned) that applies their lambda."""
        self.pruned = pruned
        root = self.members[0][0]
        self.flat_mask = torch.zeros(self.size, dtype=root.dtype, device=root.device)
        self.flat_mask[pruned.to(root.device)] = 1
        self.masks = []
        for w, rows in self.members:
            if not self.structured:
                self.masks.append(self.flat_mask.view_as(w))
                continue
            m = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
            m[rows[pruned.to(w.device)].flatten()] = 1
            self.masks.append(m.view(-1, *([1] * (w.dim() - 1))))

    def scores(self) -> torch.Tensor:
        """Per group: |w| (unstructured), or the L1 of its rows summed over the members."""
        if not self.structured:
            return self.members[0][0].detach().abs().flatten()
        s = None
        for w, rows in self.members:
            u = unit_scores(w, rows)
            s = u if s is None else s + u
        return s

    def rank(self) -> torch.Tensor:
        """The pruned groups by the current L1 ranking (CPU LongTensor of group indices)."""
        s = self.scores()
        return smallest_index(s, n_pruned(self.ratio, s.numel()))

    def mag_ratio(self) -> float:
        """mean |kept| / mean |pruned| over groups (per-filter mean |w| for filters)."""
        s = self.scores()
        k = self.pruned.numel()
        pruned_sum, total = torch.stack([(s * self.flat_mask).sum(), s.sum()]).tolist()
        pruned = pruned_sum / k
        return (total - pruned_sum) / (s.numel() - k) / pruned if pruned > 0 else math.inf

    def update_ratio(self, momentum: float) -> None:
        r = self.mag_ratio()
        self.hist_ratio = r if self.hist_ratio is None else momentum * self.hist_ratio + (1 - momentum) * r

    def add_penalty(self, lam_pruned: float) -> None:
        """grad += lambda * w, lambda = lam_pruned on pruned groups and lam_kept on the others."""
        for (weight, _), mask in zip(self.members, self.masks):
            if lam_pruned != self.lam_kept:
                weight.grad.addcmul_(mask, weight.detach(), value=lam_pruned - self.lam_kept)
            if self.lam_kept:
                weight.grad.add_(weight.detach(), alpha=self.lam_kept)

    def state(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("picks", "increments", "lam_kept", "picked", "done", "hist_ratio", "pruned", "initial")
        }


def regularized_layers(model, layer_ratios: dict[str, float], structured: bool) -> dict[str, float]:
    """The units that carry the penalty. Structured: every unit (a conv, a group, a transformer's
    heads or MLP channels). Unstructured: the convs only, the paper's rule, even where a setting's
    ratios also prune a linear classifier (which the authors' final code regularizes too:
    methods/GREG_SPEC.md, "Deliberate differences"); a model whose pruned layers are all linear (a
    transformer) has its linear layers regularized, the only ones it prunes."""
    if structured:
        return dict(layer_ratios)
    convs = {n: r for n, r in layer_ratios.items() if isinstance(model.get_submodule(n), torch.nn.Conv2d)}
    return convs or dict(layer_ratios)


class GRegHook:
    """The training-loop hook that grows the penalty; ends the phase after stabilization.

    The schedule follows the authors' ``_update_reg``: at every K_u-th iteration (from iteration 0)
    each layer that has not stopped updates its magnitude ratio, then its lambda, then tests its
    stop rule; a stopped layer is skipped from then on (lambda and ratio frozen). When the last
    layer stops at iteration T, iterations T+1 .. T+K_s stabilize and the phase ends after T+K_s.
    """

    def __init__(
        self,
        model,
        layer_ratios: dict[str, float],
        hp: GRegHparams,
        variant: int,
        structured: bool,
        groups: dict | None = None,
    ):
        self.hp, self.variant, self.structured = hp, variant, structured
        groups = groups or {}

        def members(n):  # (weight, rows) of every conv or linear layer of the unit, and its size
            if not structured:
                w = model.get_submodule(n).weight
                return [(w, None)], w.numel()
            group = groups.get(n) or single(n, model)
            return [(model.get_submodule(m).weight, rows) for m, rows in group.members], group.size

        # The parameters themselves: the training loop updates (and, on resume, loads) them in place.
        self.layers = [
            _Layer(n, *members(n), r, structured)
            for n, r in regularized_layers(model, layer_ratios, structured).items()
        ]
        if not self.layers:
            raise SuiteError("GReg needs at least one layer with a ratio > 0")
        self.stabilize_from: int | None = None  # iteration of the update that stopped the last layer
        self.updates = 0
        self.forced_pick = False

    # -------------------------------------------------------------- the loop's calls
    def after_backward(self, model, step: int) -> None:
        if step % self.hp.update_interval == 0 and not self.all_done:
            self._update()
            self.updates += 1
            if self.all_done:
                self.stabilize_from = step
        for layer in self.layers:
            layer.add_penalty(layer.lam_pruned(self.hp))

    def after_step(self, model, step: int) -> bool:
        # ``step`` iterations are done, the last one being iteration step - 1.
        return self.stabilize_from is not None and step - 1 - self.stabilize_from >= self.hp.stabilize_iters

    @property
    def all_done(self) -> bool:
        return all(layer.done for layer in self.layers)

    # -------------------------------------------------------------- the schedule
    def _update(self) -> None:
        hp = self.hp
        for layer in self.layers:
            if layer.done:
                continue
            if self.variant == 2 and not layer.picked:
                layer.picks += 1
                layer.lam_kept = layer.lam_pruned(hp)
                if self.structured:  # while picking, the ratio follows the current ranking
                    layer.set_pruned(layer.rank())
                    layer.update_ratio(hp.ratio_momentum)
                if _reached(layer.lam_pruned(hp), hp.pick_ceiling):
                    layer.set_pruned(layer.rank())
                    layer.picked = True
            else:
                if self.structured:
                    layer.update_ratio(hp.ratio_momentum)
                layer.increments += 1
                if self.variant == 2:
                    layer.lam_kept = hp.recover
            layer.done = (self.variant == 1 or layer.picked) and (
                self._separated(layer) or _above(layer.lam_pruned(hp), hp.penalty_ceiling)
            )

    def _separated(self, layer: _Layer) -> bool:
        """The magnitude-ratio stop (structured only). GReg-1: every layer's ratio so far has
        reached the limit (the authors' ``_inc_reg`` looks at the ratios recorded until then,
        stopped layers' frozen ones included); GReg-2: this layer's own ratio."""
        if not self.structured:
            return False
        limit = self.hp.mag_ratio_limit
        if self.variant == 2:
            return layer.hist_ratio >= limit
        return all(other.hist_ratio >= limit for other in self.layers if other.hist_ratio is not None)

    def force_pick(self) -> None:
        """The budget ended inside GReg-2's picking: fix the pruned set by the current L1 ranking,
        and record that it was forced (``summary`` says so, with the picking updates that ran)."""
        for layer in self.layers:
            if not layer.picked:
                layer.set_pruned(layer.rank())
                layer.picked = True
                self.forced_pick = True

    # -------------------------------------------------------------- state and logs
    def state_dict(self) -> dict:
        return {
            "layers": [layer.state() for layer in self.layers],
            "stabilize_from": self.stabilize_from,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        for layer, s in zip(self.layers, state["layers"]):
            for k, v in s.items():
                setattr(layer, k, v)
            layer.set_pruned(layer.pruned)
        self.stabilize_from, self.updates = state["stabilize_from"], state["updates"]

    def log_row(self) -> dict:
        row = {}
        for layer in self.layers:
            row[f"lambda:{layer.name}"] = layer.lam_pruned(self.hp)
            if layer.hist_ratio is not None:
                row[f"mag_ratio:{layer.name}"] = layer.hist_ratio
        return row

    def summary(self, capped: bool) -> dict:
        info = {
            "updates": self.updates,
            "capped_before_done": capped,
            "lambda": {layer.name: layer.lam_pruned(self.hp) for layer in self.layers},
        }
        if self.structured:
            info["mag_ratio"] = {layer.name: layer.hist_ratio for layer in self.layers}
        if self.variant == 2:
            info["pick_updates"] = max(layer.picks for layer in self.layers)
            info["pick_forced"] = self.forced_pick
            if self.structured:
                info["pick_overlap_with_l1"] = {
                    layer.name: rank_overlap(layer.pruned, layer.initial) for layer in self.layers
                }
        return info


def batchnorm_record(model, layers, example) -> dict:
    """Why removal can still cost accuracy at a large magnitude ratio, per layer, read at removal
    from the batch norm that follows each conv: a batch norm rescales a shrunken channel back to
    ``|gamma| * sqrt(var / (var + eps))`` (its output scale), so the weights' kept/pruned ratio
    matters only once the pruned channels' running variance nears ``eps``; and removal also drops
    their shift ``beta``. Records the pruned channels' median ``var / eps``, the kept/pruned ratio
    of median output scales, and the pruned channels' median ``|beta|`` (layers without a batch
    norm are left out)."""
    layers = [layer for layer in layers if isinstance(model.get_submodule(layer.name), torch.nn.Conv2d)]
    if not layers:  # a transformer's heads and MLP channels: no batch norm follows them
        return {}
    try:
        bns = batchnorm_after(model, [layer.name for layer in layers], example)
    except Exception as e:  # a model torch-pruning cannot trace whole (ShuffleNetV2): no record, not no run
        return {"bn_record": f"not read: the model cannot be traced whole ({type(e).__name__})"}
    var_eps, out_ratio, beta = {}, {}, {}
    for layer in layers:
        if bns.get(layer.name) is None or not len(layer.pruned):
            continue
        bn = model.get_submodule(bns[layer.name])
        var, gamma = bn.running_var.detach().float(), bn.weight.detach().float()
        scale = gamma.abs() * torch.sqrt(var / (var + bn.eps))
        pruned = torch.zeros_like(var, dtype=torch.bool)
        pruned[layer.pruned.to(var.device)] = True
        var_eps[layer.name] = float((var[pruned] / bn.eps).median())
        low = float(scale[pruned].median())
        out_ratio[layer.name] = float(scale[~pruned].median()) / low if low > 0 else math.inf
        beta[layer.name] = float(bn.bias.detach().float()[pruned].abs().median())
    return {"bn_var_over_eps": var_eps, "bn_out_ratio": out_ratio, "bn_beta_pruned": beta} if var_eps else {}


class _GReg(Method):
    variant: int
    Hparams = GRegHparams
    # the paper's mechanism, shown on the pages: how far the penalty drove the pruned weights down
    columns = {
        "mag_ratio": Column("mag_ratio", "kept/pruned magnitude ratio at removal (smallest layer)"),
        "bn_out_ratio": Column("bn_out_ratio", "kept/pruned output scale after batch norm at removal (smallest layer)"),
    }

    @classmethod
    def planned_iters(cls, hp: GRegHparams) -> int:
        """Iterations of a regularization phase that runs to its ceiling (no early stop by magnitude
        ratio, no cap): U updates, the last at iteration (U - 1) * K_u, then K_s more."""
        return (schedule_updates(hp, cls.variant) - 1) * hp.update_interval + 1 + hp.stabilize_iters

    def suggest(self, trial, base: GRegHparams, space: dict, max_iters: int) -> GRegHparams:
        """Define-by-run: every other searched field first, then the increment delta from a range
        raised so that some ceiling of the space still fits, then the ceiling tau only up to what
        reaches its end and stabilizes within ``max_iters``. A proposal never stops at the cap."""
        values = base.to_dict()
        for name, (low, high, log) in space.items():
            if name not in ("penalty_increment", "penalty_ceiling"):
                draw = trial.suggest_int if isinstance(values[name], int) else trial.suggest_float
                values[name] = draw(name, type(values[name])(low), type(values[name])(high), log=log)
        hp = GRegHparams.from_dict(values)
        # the most updates that fit: (U - 1) * K_u + 1 + K_s <= max_iters
        most = (max_iters - 1 - hp.stabilize_iters) // hp.update_interval + 1
        start = pick_updates(hp) * hp.pick_increment if self.variant == 2 else 0.0
        grow = most - (pick_updates(hp) if self.variant == 2 else 0)  # updates left for growing
        d_low, d_high, d_log = space.get("penalty_increment", (hp.penalty_increment,) * 2 + (True,))
        t_low, t_high, t_log = space.get("penalty_ceiling", (hp.penalty_ceiling,) * 2 + (True,))
        # n growing updates reach start + (n - 1) * delta: the ceiling tau is passed by update n when
        # tau < start + n * delta, so with ``grow`` updates tau may go up to start + (grow - 1) * delta
        need = (t_low - start) / (grow - 1) if grow > 1 else math.inf
        if grow < 2 or need > d_high:
            raise SuiteError(
                f"{self.name}: no schedule of this search space fits the setting's cap of {max_iters} "
                f"iterations (K_u {hp.update_interval}, K_s {hp.stabilize_iters}, ceiling >= {t_low}): "
                f"raise [prune] max_iters, or narrow --space to larger increments or lower ceilings"
            )
        if "penalty_increment" in space:
            values["penalty_increment"] = trial.suggest_float("penalty_increment", max(d_low, need), d_high, log=d_log)
        delta = values["penalty_increment"]
        if "penalty_ceiling" in space:
            values["penalty_ceiling"] = trial.suggest_float(
                "penalty_ceiling", t_low, max(t_low, min(t_high, start + (grow - 1) * delta)), log=t_log
            )
        hp = GRegHparams.from_dict(values)
        if self.planned_iters(hp) > max_iters:  # a rounding edge: say so rather than run a capped trial
            raise SuiteError(
                f"{self.name}: drew a schedule of {self.planned_iters(hp)} iterations over the cap "
                f"{max_iters}: {values}"
            )
        return hp

    def prune(self, model, task: PruneTask, hp: GRegHparams) -> Pruning:
        structured = self.granularity == "filter"
        # Layers the setting prunes but GReg does not regularize (a ResNet's classifier under
        # unstructured ratios) keep the authors' treatment: masked by magnitude chosen at the start.
        others = {
            n: smallest_weights_mask(model.get_submodule(n).weight, r)
            for n, r in task.layer_ratios.items()
            if n not in regularized_layers(model, task.layer_ratios, structured)
        }
        hook = GRegHook(model, task.layer_ratios, hp, self.variant, structured, task.groups)
        outcome = task.train(
            hooks=(hook,), desc=f"{self.name} regularize", log_every=hp.log_every, log_extra=hook.log_row
        )
        if self.variant == 2:
            hook.force_pick()
        info = hook.summary(capped=not outcome.stopped_by_hook)
        if structured:
            info.update(batchnorm_record(model, hook.layers, task.example))
            return Pruning(filters={layer.name: layer.pruned.tolist() for layer in hook.layers}, info=info)
        masks = {}
        for layer in hook.layers:
            w = layer.members[0][0]
            m = torch.ones(w.numel(), dtype=w.dtype, device=w.device)
            m[layer.pruned.to(w.device)] = 0
            masks[layer.name] = m.view_as(w)
        if others:
            info["unregularized_layers"] = sorted(others)
        return Pruning(masks={**masks, **others}, info=info)


_GREG2_ONLY = ("pick_increment", "pick_ceiling", "recover")
_RATIO_STOP = ("mag_ratio_limit", "ratio_momentum")  # unstructured GReg stops at the ceiling only


@register
class GReg1(_GReg):
    name, variant = "greg1", 1
    unread_hparams = _GREG2_ONLY
    summary = "GReg-1: growing L2 penalty on the L1-chosen filters, then removal"


@register
class GReg2(_GReg):
    name, variant = "greg2", 2
    summary = "GReg-2: picking phase on all filters, re-rank, then growing penalty"
    # whether its picking departed from L1's choice at all (1.0: it pruned exactly what L1 would)
    columns = {**_GReg.columns, "l1_overlap": Column("pick_overlap_with_l1", "share of its pick L1 prunes too", "mean")}


@register
class GReg1Unstructured(_GReg):
    name, variant, granularity = "greg1-unstructured", 1, "weight"
    unread_hparams = _GREG2_ONLY + _RATIO_STOP
    summary = "GReg-1 at weight granularity (unstructured)"


@register
class GReg2Unstructured(_GReg):
    name, variant, granularity = "greg2-unstructured", 2, "weight"
    unread_hparams = _RATIO_STOP
    summary = "GReg-2 at weight granularity (unstructured)"
