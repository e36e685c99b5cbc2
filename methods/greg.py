"""GReg-1 and GReg-2 (Wang et al., ICLR 2021), as GREG_SPEC.md states them.

The penalty is an extra gradient ``grad += lambda * w`` on conv weights, added at every iteration
of a regularization phase (the ordinary weight decay stays on); lambda grows every K_u iterations.

GReg-1: the pruned set is fixed at the start by L1 norm (exactly what ``l1`` removes); its lambda
grows by delta up to the ceiling tau, or until every layer's kept/pruned magnitude ratio reaches
``mag_ratio_limit``. GReg-2: a picking phase first grows a small penalty on all groups and
re-ranks by L1 at ``pick_ceiling``; then pruned groups grow as in GReg-1 and kept groups get the
``recover`` value.

Lambdas are held as two float64 numbers per layer (pruned, kept) rather than an [N, C] tensor:
within a layer every pruned group has the same lambda and so does every kept group, so this is
the same penalty, and 10,000 float32 additions of 1e-4 would drift from the schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from methods.base import Hparams, Method, Pruning, PruneTask, rank_overlap, searchable
from methods.criteria import filter_l1, smallest_index
from methods.registry import register
from suite.errors import SuiteError
from suite.ratios import n_pruned



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
    log_every: int = 100  # iterations between log rows of lambda and magnitude ratio

    def check(self):
        if self.penalty_increment <= 0 or self.penalty_ceiling <= 0:
            raise SuiteError("penalty_increment and penalty_ceiling must be > 0")
        if self.update_interval < 1 or self.stabilize_iters < 0 or self.log_every < 1:
            raise SuiteError("update_interval and log_every must be >= 1, stabilize_iters >= 0")


class _Layer:
    """One regularized layer: its groups' pruned set, its two lambdas and its magnitude ratio."""

    def __init__(self, name: str, weight: torch.Tensor, ratio: float, structured: bool):
        self.name, self.ratio, self.structured = name, ratio, structured
        self.lam_pruned = self.lam_kept = 0.0
        self.picked = False
        self.done = False
        self.hist_ratio: float | None = None
        self.set_pruned(self.rank(weight), weight)
        self.initial = self.pruned.clone()

    def set_pruned(self, pruned: torch.Tensor, w: torch.Tensor) -> None:
        """Fix the pruned groups, and the {0,1} mask (1 = pruned) that applies their lambda."""
        self.pruned = pruned
        groups = w.shape[0] if self.structured else w.numel()
        mask = torch.zeros(groups, dtype=w.dtype, device=w.device)
        mask[pruned.to(w.device)] = 1
        self.mask = mask.view(-1, *([1] * (w.dim() - 1))) if self.structured else mask.view_as(w)
        self.flat_mask = mask

    def scores(self, w: torch.Tensor) -> torch.Tensor:
        return filter_l1(w) if self.structured else w.detach().abs().flatten()

    def rank(self, w: torch.Tensor) -> torch.Tensor:
        """The pruned groups by the current L1 ranking (CPU LongTensor of group indices)."""
        s = self.scores(w)
        return smallest_index(s, n_pruned(self.ratio, s.numel()))

    def mag_ratio(self, w: torch.Tensor) -> float:
        """mean |kept| / mean |pruned| over groups (per-filter mean |w| for filters)."""
        s = self.scores(w)
        k = self.pruned.numel()
        pruned_sum, total = torch.stack([(s * self.flat_mask).sum(), s.sum()]).tolist()
        pruned = pruned_sum / k
        return (total - pruned_sum) / (s.numel() - k) / pruned if pruned > 0 else math.inf

    def add_penalty(self, w: torch.Tensor) -> None:
        """grad += lambda * w, lambda = lam_pruned on pruned groups and lam_kept on the others."""
        if self.lam_pruned != self.lam_kept:
            w.grad.addcmul_(self.mask, w.detach(), value=self.lam_pruned - self.lam_kept)
        if self.lam_kept:
            w.grad.add_(w.detach(), alpha=self.lam_kept)

    def state(self) -> dict:
        return {k: getattr(self, k) for k in ("lam_pruned", "lam_kept", "picked", "done", "hist_ratio",
                                              "pruned", "initial")}


class GRegHook:
    """The training-loop hook that grows the penalty; ends the phase after stabilization."""

    def __init__(self, model, layer_ratios: dict[str, float], hp: GRegHparams, variant: int, structured: bool):
        self.hp, self.variant, self.structured = hp, variant, structured
        # The parameters themselves: the training loop updates (and, on resume, loads) them in place.
        self.weights = {n: model.get_submodule(n).weight for n in layer_ratios}
        self.layers = [_Layer(n, self.weights[n], r, structured) for n, r in layer_ratios.items()]
        if not self.layers:
            raise SuiteError("GReg needs at least one layer with a ratio > 0")
        self.stable_steps = 0  # iterations since every layer stopped growing
        self.updates = 0

    # -------------------------------------------------------------- the loop's calls
    def after_backward(self, model, step: int) -> None:
        if step % self.hp.update_interval == 0 and not self.all_done:
            self._update(model)
            self.updates += 1
        for layer in self.layers:
            layer.add_penalty(self.weights[layer.name])

    def after_step(self, model, step: int) -> bool:
        if self.all_done:
            self.stable_steps += 1
        return self.all_done and self.stable_steps >= self.hp.stabilize_iters

    @property
    def all_done(self) -> bool:
        return all(layer.done for layer in self.layers)

    # -------------------------------------------------------------- the schedule
    def _update(self, model) -> None:
        hp = self.hp
        weights = self.weights
        if self.structured:
            for layer in self.layers:
                if self.variant == 2 and not layer.picked:
                    # While picking, every group has the same lambda: the ratio follows the current ranking.
                    layer.set_pruned(layer.rank(weights[layer.name]), weights[layer.name])
                r = layer.mag_ratio(weights[layer.name])
                m = hp.ratio_momentum
                layer.hist_ratio = r if layer.hist_ratio is None else m * layer.hist_ratio + (1 - m) * r
        every_layer_separated = self.structured and all(
            layer.hist_ratio >= hp.mag_ratio_limit for layer in self.layers)
        for layer in self.layers:
            if layer.done:
                continue
            w = weights[layer.name]
            if self.variant == 2 and not layer.picked:
                layer.lam_pruned = layer.lam_kept = layer.lam_pruned + hp.pick_increment
                if layer.lam_pruned >= hp.pick_ceiling - 1e-12:  # 1000 additions of 1e-5 land on 0.01
                    layer.set_pruned(layer.rank(w), w)
                    layer.picked = True
            elif self.variant == 1:
                if every_layer_separated or layer.lam_pruned > hp.penalty_ceiling:
                    layer.done = True
                else:
                    layer.lam_pruned += hp.penalty_increment
            else:
                separated = self.structured and layer.hist_ratio >= hp.mag_ratio_limit
                if separated or layer.lam_pruned > hp.penalty_ceiling:
                    layer.done = True
                else:
                    layer.lam_pruned += hp.penalty_increment
                    layer.lam_kept = hp.recover

    # -------------------------------------------------------------- state and logs
    def state_dict(self) -> dict:
        return {"layers": [layer.state() for layer in self.layers], "stable_steps": self.stable_steps,
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for layer, s in zip(self.layers, state["layers"]):
            for k, v in s.items():
                setattr(layer, k, v)
            layer.set_pruned(layer.pruned, self.weights[layer.name])
        self.stable_steps, self.updates = state["stable_steps"], state["updates"]

    def log_row(self) -> dict:
        row = {}
        for layer in self.layers:
            row[f"lambda:{layer.name}"] = layer.lam_pruned
            if layer.hist_ratio is not None:
                row[f"mag_ratio:{layer.name}"] = layer.hist_ratio
        return row

    def summary(self, capped: bool) -> dict:
        info = {"updates": self.updates, "capped_before_done": capped,
                "lambda": {layer.name: layer.lam_pruned for layer in self.layers}}
        if self.structured:
            info["mag_ratio"] = {layer.name: layer.hist_ratio for layer in self.layers}
        if self.variant == 2:
            info["pick_overlap_with_l1"] = {layer.name: rank_overlap(layer.pruned, layer.initial)
                                            for layer in self.layers if self.structured}
        return info


class _GReg(Method):
    variant: int
    Hparams = GRegHparams

    def prune(self, model, task: PruneTask, hp: GRegHparams) -> Pruning:
        structured = self.granularity == "filter"
        hook = GRegHook(model, task.layer_ratios, hp, self.variant, structured)
        outcome = task.train(hooks=(hook,), desc=f"{self.name} regularize", log_every=hp.log_every,
                             log_extra=hook.log_row)
        info = hook.summary(capped=not outcome.stopped_by_hook)
        if not all(layer.picked for layer in hook.layers) and self.variant == 2:
            # The budget ran out inside the picking phase: pick now, by the current L1 ranking.
            for layer in hook.layers:
                if not layer.picked:
                    w = model.get_submodule(layer.name).weight
                    layer.set_pruned(layer.rank(w), w)
        if structured:
            return Pruning(filters={layer.name: layer.pruned.tolist() for layer in hook.layers},
                           reg_iters=outcome.steps, info=info)
        masks = {}
        for layer in hook.layers:
            w = model.get_submodule(layer.name).weight
            m = torch.ones(w.numel(), dtype=w.dtype, device=w.device)
            m[layer.pruned.to(w.device)] = 0
            masks[layer.name] = m.view_as(w)
        return Pruning(masks=masks, reg_iters=outcome.steps, info=info)


@register
class GReg1(_GReg):
    name, variant = "greg1", 1
    summary = "GReg-1: growing L2 penalty on the L1-chosen filters, then removal"


@register
class GReg2(_GReg):
    name, variant = "greg2", 2
    summary = "GReg-2: picking phase on all filters, re-rank, then growing penalty"


@register
class GReg1Unstructured(_GReg):
    name, variant, granularity = "greg1-unstructured", 1, "weight"
    summary = "GReg-1 at weight granularity (unstructured)"


@register
class GReg2Unstructured(_GReg):
    name, variant, granularity = "greg2-unstructured", 2, "weight"
    summary = "GReg-2 at weight granularity (unstructured)"
