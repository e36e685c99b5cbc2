"""The method interface: typed hyperparameters with a search space, the task a method receives,
and the choice it returns.

A method decides *what goes*; the harness (suite/) removes it, fine-tunes and measures, so every
method is measured by one path. A method never writes a result or trains a baseline.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from suite.errors import SuiteError


def searchable(default, low, high, log=False, **kw):
    """A hyperparameter field with an Optuna range: ``searchable(1e-4, 1e-5, 1e-3, log=True)``."""
    return field(default=default, metadata={"space": (low, high, log)}, **kw)


def presentation(default):
    """A hyperparameter that changes what is logged, never a trained number (e.g. a log cadence):
    it stays out of a run's identity, so changing it does not orphan stored runs."""
    return field(default=default, metadata={"defines": False})


@dataclass(frozen=True)
class Hparams:
    """Base of every method's hyperparameters: frozen, JSON-serialisable, defaults = the paper's."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "hparams") -> Hparams:
        """Build from a dict, refusing unknown fields and wrong types with a one-line error."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise SuiteError(
                f"{where}: unknown field(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known: {', '.join(fields) or '(none)'}"
            )
        clean = {}
        for k, v in d.items():
            want = type(getattr(cls(), k))
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise SuiteError(f"{where}: {k} must be {want.__name__}, got {v!r}")
            if want is float and not math.isfinite(v):  # JSON reads NaN and Infinity as floats
                raise SuiteError(f"{where}: {k} must be a finite number, got {v!r}")
            clean[k] = v
        hp = cls(**clean)
        try:
            hp.check()
        except SuiteError as e:
            raise SuiteError(f"{where}: {e}") from None
        return hp

    def check(self) -> None:
        """Range checks; subclasses raise SuiteError for values that cannot work."""

    @classmethod
    def presentation_fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls) if f.metadata.get("defines") is False}

    @classmethod
    def space(cls) -> dict[str, tuple]:
        """{field: (low, high, log)} for the fields Optuna may tune."""
        return {f.name: f.metadata["space"] for f in dataclasses.fields(cls) if "space" in f.metadata}

    @classmethod
    def suggest(cls, trial, base: Hparams | None = None, space: dict | None = None) -> Hparams:
        """Draw hyperparameters from an Optuna trial over ``space`` (default: the class's own)."""
        base = base or cls()
        values = base.to_dict()
        for name, (low, high, log) in (space or cls.space()).items():
            if isinstance(values[name], int):
                values[name] = trial.suggest_int(name, int(low), int(high), log=log)
            else:
                values[name] = trial.suggest_float(name, float(low), float(high), log=log)
        return cls.from_dict(values)


@dataclass
class PruneTask:
    """What a method may use.

    ``layer_ratios`` maps layer names to ratios (already resolved from the setting's ratio string);
    ``train(hooks, desc, log_extra)`` runs the harness's training loop with the setting's
    regularization optimizer (lr_prune, batch_size_prune) until a hook ends it or ``max_iters``;
    ``batches()`` yields training batches for criteria that need gradients or activations.
    ``groups`` (a ``generic`` model, ``suite.models.groups``): for a layer name, the convs whose filters go
    with it and which of their filters each of its channels is; a name not in it is its own group.
    """

    layer_ratios: dict[str, float]
    device: torch.device
    seed: int
    max_iters: int
    train: Callable[..., Any]
    batches: Callable[[int], Any]
    example: torch.Tensor
    groups: dict = field(default_factory=dict)

    def group(self, model: nn.Module, name: str):
        """The group of a pruned layer (``suite.models.layouts.Group``): its own one-conv group by default."""
        from suite.models.layouts import single

        return self.groups.get(name) or single(name, model)


@dataclass
class Pruning:
    """What goes: filter indices per conv (structured) or {0,1} masks per layer (unstructured).

    ``info`` holds what the method wants recorded (overlaps, magnitude ratios reached, ...). What
    the method's own training consumed is counted by the harness, not reported here.
    """

    filters: dict[str, list[int]] | None = None
    masks: dict[str, torch.Tensor] | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    """A number a method wants shown beside every method's on the pages and in ``suite results``
    (e.g. GReg's kept/pruned magnitude ratio at removal), read from what its ``Pruning.info``
    records under ``key``; a per-layer record becomes one number by ``reduce`` (min or mean)."""

    key: str
    title: str
    reduce: str = "min"


class Method(ABC):
    """One pruning method. Subclasses set ``name``, ``granularity`` and ``Hparams`` and register."""

    name: ClassVar[str]
    granularity: ClassVar[str] = "filter"  # "filter" (structured) or "weight" (unstructured)
    Hparams: ClassVar[type[Hparams]] = Hparams
    summary: ClassVar[str] = ""
    # Fields of a shared Hparams class this method never reads (another variant's): not in its identity.
    unread_hparams: ClassVar[tuple[str, ...]] = ()
    # Extra columns of this method's rows, by name (results, pages): see :class:`Column`.
    columns: ClassVar[dict[str, Column]] = {}

    @abstractmethod
    def prune(self, model: nn.Module, task: PruneTask, hp: Hparams) -> Pruning:
        """Decide what goes (and, for regularization methods, train ``model`` in place first)."""

    def planned_iters(self, hp: Hparams) -> int:
        """Iterations of this method's own training passes (regularization, picking, side training,
        gradient passes for a criterion) at the setting's prune batch size, as planned before any
        early stop and without the setting's cap; 0 for a one-shot method.

        The harness counts what a run really consumed; this plan is what it needs *before* running:
        the equal-sample ``total`` budget, the dry run, progress totals, and whether a schedule can
        finish within the setting's cap at all.
        """
        return 0

    def column_values(self, info: dict) -> dict[str, float | None]:
        """This method's :attr:`columns` read from a run's ``method_info`` (None where not recorded)."""
        out = {}
        for name, col in self.columns.items():
            v = info.get(col.key)
            if isinstance(v, dict):
                values = [x for x in v.values() if isinstance(x, (int, float)) and x == x]
                v = (min(values) if col.reduce == "min" else sum(values) / len(values)) if values else None
            out[name] = float(v) if isinstance(v, (int, float)) else None
        return out

    def defining_hparams(self, hp: dict) -> dict:
        """The hyperparameters that define this method's result: all but presentation fields and
        fields this variant never reads."""
        skip = set(self.unread_hparams) | self.Hparams.presentation_fields()
        return {k: v for k, v in hp.items() if k not in skip}

    def suggest(self, trial, base: Hparams, space: dict, max_iters: int) -> Hparams:
        """Draw hyperparameters for a search trial. Methods whose schedule length depends on the
        drawn values override this so that every proposal can finish within ``max_iters``."""
        return self.Hparams.suggest(trial, base=base, space=space)


def rank_overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a & b| / |a| for two index sets: how much of one pruned set another keeps (1.0 = same)."""
    return torch.isin(a, b).float().mean().item() if a.numel() else math.nan
