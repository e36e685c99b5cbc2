"""The run description: one frozen, typed object that says what a run is.

A run is defined by what can change its result: the data and what selects it, the model and the
per-layer ratios its target resolves to, the baseline it starts from, the method with the
hyperparameters it reads, the budget (protocol and recipes), the numerics, the seed. Everything
else the suite knows about a run (a setting's description, its other targets, the method's name on
a page, the code that trained it) is presentation or provenance, recorded beside it.

From this one object come:

- ``identity()``: the JSON object whose hash names the run folder (``name``); every published run
  keeps its folder, so each field says under which key it enters and whether it is left out at its
  default (a field added later with ``omit_default`` renames no stored run);
- ``comparison()``: the one key of "which runs are comparable" (the identity minus what a method
  and a seed choose), used by the summary, ``suite results``, the leaderboard and the findings;

A stored ``config.json`` is read back through the job it records (``suite.store.migrate.job_of``:
its setting's definition, method, hyperparameters, seed, baseline, budget and numerics), whose
description is built by the same code that named the folder. The config cannot be read as a
description field by field: it records the method's full hyperparameters (the identity holds only
those that define a result) and the provenance beside them.

Adding a field that defines results is one change here (a field with its metadata) plus its test:
identity, name and comparison key follow from the metadata.
(Modelled on open_lth's ``foundations/desc.py``; written here because no library names runs.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from suite.store.files import content_hash
from suite.training.numerics import Numerics


def spec_field(
    key: str | None = None, *, default=dataclasses.MISSING, omit_default: bool = False, method_side: bool = False
):
    """A field of a spec and how it enters the identity: under ``key`` (default: its name), left
    out when it equals ``default`` and ``omit_default`` is set, and (``method_side``) chosen per
    method or seed, so left out of the comparison key."""
    meta = {"key": key, "omit_default": omit_default, "method_side": method_side}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class Spec:
    """A frozen dataclass whose fields enter the identity by their metadata (``spec_field``)."""

    def _entries(self, comparison: bool):
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if isinstance(value, Spec):
                yield from value._entries(comparison)
                continue
            if comparison and meta.get("method_side"):
                continue
            if meta.get("omit_default") and value == f.default:
                continue
            yield meta.get("key") or f.name, value

    def identity(self) -> dict:
        return dict(self._entries(comparison=False))


@dataclass(frozen=True)
class DataSpec(Spec):
    """The data a run sees: its fingerprint covers the files and what selects them (train/test
    limits, a search's validation split), so two selections are two runs."""

    fingerprint: str = spec_field("data")
    dataset: str = spec_field()
    train_limit: int | None = spec_field(default=None)


@dataclass(frozen=True)
class ModelSpec(Spec):
    """The architecture before pruning and the per-layer ratios its target resolves to (two
    spellings of the same layers are one run); a user's model file adds its source digest."""

    name: str = spec_field("model")
    layers: dict = spec_field()
    granularity: str = spec_field()
    code: str | None = spec_field("model_code", default=None, omit_default=True)
    # kept filter counts rounded down to multiples of this (the layers already say so; named too)
    round_to: int = spec_field(default=1, omit_default=True)


@dataclass(frozen=True)
class BaselineSpec(Spec):
    """Where every method of a comparison starts: the setting's trained baseline (its recipe and
    seed) or a user's ``--baseline`` file (its weights' digest)."""

    recipe: dict | None = None
    seed: int = 0
    weights: str | None = None

    def _entries(self, comparison: bool):
        yield (
            "baseline",
            ({"weights": self.weights} if self.weights is not None else {"recipe": self.recipe, "seed": self.seed}),
        )


@dataclass(frozen=True)
class MethodSpec(Spec):
    """The method and the hyperparameters it reads; the prune recipe only for a method that trains
    before it chooses (a one-shot method never reads it, so changing it renames none of its runs)."""

    name: str = spec_field("method", method_side=True)
    hparams: dict = spec_field(method_side=True)
    prune: dict | None = spec_field(default=None, omit_default=True, method_side=True)


@dataclass(frozen=True)
class BudgetSpec(Spec):
    """What a run may train after the baseline: the protocol, the fine-tuning recipe and, under an
    equal-sample protocol, the samples every row of the comparison reaches."""

    protocol: str = spec_field(default="paper")
    finetune: dict = spec_field(default={})
    total_samples: int | None = None

    def _entries(self, comparison: bool):
        yield "protocol", self.protocol
        yield "finetune", self.finetune
        if self.protocol == "total":  # named even when None: the total runs stored before samples were
            yield "total_samples", self.total_samples  # counted keep the folders `suite migrate` gave them


@dataclass(frozen=True)
class NumericsSpec(Spec):
    """How every pass computes (``suite.training.numerics``): only what differs from fp32,
    contiguous and eager enters the identity, so every run stored before the options keeps its name."""

    precision: str = spec_field(default="fp32", omit_default=True)
    channels_last: bool = spec_field(default=False, omit_default=True)
    compile: bool = spec_field(default=False, omit_default=True)

    @classmethod
    def of(cls, numerics: Numerics) -> NumericsSpec:
        return cls(numerics.precision, numerics.channels_last, numerics.compile)

    def numerics(self) -> Numerics:
        return Numerics(self.precision, self.channels_last, self.compile)


@dataclass(frozen=True)
class RunDescription(Spec):
    """What defines one run's result. ``name`` is its folder's hash."""

    data: DataSpec
    model: ModelSpec
    baseline: BaselineSpec
    method: MethodSpec
    budget: BudgetSpec
    numerics: NumericsSpec = NumericsSpec()
    seed: int = spec_field(default=0, method_side=True)
    smoke: bool = spec_field(default=False)

    @property
    def name(self) -> str:
        return content_hash(self.identity())

    def comparison(self) -> str:
        """The key of the runs this one is compared with: same data, model and layers, baseline,
        budget and numerics; any method, hyperparameters and seed."""
        return content_hash(dict(self._entries(comparison=True)))
