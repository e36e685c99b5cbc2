"""Planning a comparison: setting x method x seed -> jobs, each named by what defines its result.

A job's identity (its run folder's hash) holds what selects the data, the model, the resolved
per-layer ratios, the baseline it starts from, the method and the hyperparameters it reads, the
recipes, the seed, the budget protocol, and the precision, memory layout and compilation when
they differ from fp32, contiguous and eager (``suite.training.numerics``). Presentation (a setting's
description, its other targets, other methods' overrides, a log cadence) stays out, so editing it
orphans no run. The code that trained a run is recorded beside it (``suite.store.fingerprint``), not
hashed into its name: a run trained by older code is *stale*, found and flagged rather than
silently recomputed.

Budgets (``--budget``, a comma list; several points make a curve of top-1 against samples):
  paper        every method gets the setting's fine-tuning; a method's own training (GReg's
               regularization, a criterion's side training) comes on top, as in the paper.
  total:Nx, N  every row of the comparison trains on the same number of *samples* after the
               baseline: N times the setting's ``budget_unit`` (``1x``; a plain integer names
               the samples). A method's own training keeps its schedule and the fine-tuning gets
               the rest, on the recipe's schedule *stretched* to that length (every learning-rate
               milestone scaled by the same factor), never a tail at the last rate. A method that
               trains before it chooses may spend more of a budget on its own schedule through
               its hyperparameters (a longer GReg is another row of the same comparison).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass

from methods import registry
from methods.base import Hparams, Method
from suite.errors import SuiteError
from suite.spec.run import BaselineSpec, BudgetSpec, DataSpec, MethodSpec, ModelSpec, NumericsSpec, RunDescription
from suite.spec.settings import Setting
from suite.training import schedule
from suite.training.numerics import FP32, Numerics
from suite.training.schedule import SMOKE_STEPS

_RATIOS: dict[tuple, dict[str, float]] = {}


def layer_ratios(setting: Setting, granularity: str) -> dict[str, float]:
    """The setting's target resolved to {layer: ratio} for a granularity (each model built once)."""
    key = (
        setting.dataset,
        setting.model,
        setting.ratios,
        setting.skip,
        setting.round_to,
        granularity,
        setting.root,
        setting.data_path,
    )
    if key not in _RATIOS:
        _RATIOS[key] = setting.layer_ratios(setting.build_model(), granularity=granularity)
    return _RATIOS[key]


def prune_cap(setting: Setting, smoke: bool) -> int:
    """The most iterations a method's own training may run at this setting."""
    return schedule.prune_cap(setting.prune.max_iters, smoke)


@dataclass(frozen=True)
class Job:
    setting: Setting
    method: str
    hparams: dict  # fully resolved: defaults, then the setting's overrides, then the user's
    seed: int
    baseline_seed: int = 0
    protocol: str = "paper"
    smoke: bool = False
    hparams_source: str = "default"
    user_baseline: str | None = None  # the weights digest of a --baseline file; None: the setting's trained one
    total_samples: int | None = None  # under ``total``: the samples after the baseline every row reaches
    numerics: Numerics = FP32  # precision, memory layout, compilation of every pass (suite.training.numerics)

    @functools.cached_property
    def impl(self) -> Method:
        """The registered method, looked up once per job."""
        return registry.get(self.method)

    @functools.cached_property
    def hp(self) -> Hparams:
        """The method's hyperparameters, parsed once per job."""
        return self.impl.Hparams.from_dict(self.hparams)

    @functools.cached_property
    def _descriptions(self) -> dict[str, RunDescription]:
        return {}

    def describe(self, data_fingerprint: str) -> RunDescription:
        """The run description of this job on data with this fingerprint (``suite.spec.run``),
        built once per job and fingerprint: the folder, the record, the comparison key and the
        pipeline all ask for it."""
        if data_fingerprint not in self._descriptions:
            self._descriptions[data_fingerprint] = self._describe(data_fingerprint)
        return self._descriptions[data_fingerprint]

    def _describe(self, data_fingerprint: str) -> RunDescription:
        s, method = self.setting, self.impl
        from suite.models.zoo import source_digest

        return RunDescription(
            data=DataSpec(data_fingerprint, s.dataset, s.train_limit),
            model=ModelSpec(
                s.model,
                layer_ratios(s, method.granularity),
                method.granularity,
                source_digest(s.at_root(s.model)),
                s.round_to if method.granularity == "filter" else 1,
            ),
            baseline=(
                BaselineSpec(weights=self.user_baseline)
                if self.user_baseline is not None
                else BaselineSpec(s.baseline.to_dict(), self.baseline_seed)
            ),
            method=MethodSpec(
                self.method,
                method.defining_hparams(self.hparams),
                asdict(s.prune) if method.planned_iters(self.hp) > 0 else None,
            ),
            budget=BudgetSpec(
                self.protocol, s.finetune.to_dict(), self.total_samples if self.protocol == "total" else None
            ),
            numerics=NumericsSpec.of(self.numerics),
            seed=self.seed,
            smoke=self.smoke,
        )

    def identity(self, data_fingerprint: str) -> dict:
        """Everything that defines the result; its hash names the run folder."""
        return self.describe(data_fingerprint).identity()

    def folder(self, runs_dir, data_fingerprint: str):
        return runs_dir / self.setting.name / self.method / self.describe(data_fingerprint).name

    def planned_prune_iters(self) -> int:
        """The method's own training iterations, as planned, within the setting's cap."""
        return min(self.impl.planned_iters(self.hp), prune_cap(self.setting, self.smoke))

    def finetune_steps(self, own_samples: int, batches_per_epoch: int) -> int:
        """This job's fine-tuning iterations (``suite.training.schedule.finetune_steps``)."""
        ft = self.setting.finetune
        return schedule.finetune_steps(
            ft.epochs,
            ft.batch_size,
            batches_per_epoch,
            total_samples=self.total_samples,
            own_samples=own_samples,
            smoke=self.smoke,
        )

    def schedule_fits(self) -> bool:
        """False when the method's planned schedule is longer than the setting's cap (it will stop
        before it is done: such a run is marked capped and not ranked)."""
        return self.impl.planned_iters(self.hp) <= prune_cap(self.setting, self.smoke)


def resolve_hparams(setting: Setting, method: str, user: dict | None) -> dict:
    """The method's defaults, then the setting's budget overrides, then the user's values."""
    cls = registry.get(method).Hparams
    values = {**cls().to_dict(), **setting.overrides_for(method), **(user or {})}
    return cls.from_dict(values, where=f"hparams of {method}").to_dict()


def finetune_samples(setting: Setting, train_size: int, smoke: bool = False) -> int:
    """Samples of the setting's fine-tuning recipe (whole batches, as the loop drops the last partial one)."""
    ft = setting.finetune
    steps = ft.epochs * (train_size // ft.batch_size)
    return (min(steps, SMOKE_STEPS) if smoke else steps) * ft.batch_size


@dataclass(frozen=True)
class Budget:
    """One point of a comparison's budget curve: the paper protocol (``samples`` None) or an equal
    number of training samples after the baseline for every row (protocol ``total``)."""

    label: str  # "paper", "2x", "1500000", "total:1500000": how the command named it (error messages)
    samples: int | None = None

    @property
    def protocol(self) -> str:
        return "paper" if self.samples is None else "total"


def budget_unit(setting: Setting, train_size: int, smoke: bool = False) -> int:
    """The samples ``1x`` names: the setting's frozen ``budget_unit`` (one fine-tuning's samples
    when it has none). A smoke run's unit is its own, cut like every smoke phase."""
    if smoke:
        return finetune_samples(setting, train_size, smoke) + SMOKE_STEPS * setting.prune.batch_size
    return setting.budget_unit or finetune_samples(setting, train_size)


def budget_points(text: str) -> list[tuple[str, float | None, int | None]]:
    """The spelling of ``--budget`` checked before any data is loaded: ``paper,total:1x,2x,4x`` ->
    (label, multiple of the unit, samples) per point, each once, in the order given. ``total`` alone
    is ``total:1x``; ``Nx`` is N times the setting's unit; an integer is samples."""
    spelling = "use paper, total, total:1x,2x,4x or a number of samples (e.g. --budget paper,total:1x,2x)"
    out: list[tuple[str, float | None, int | None]] = []
    for raw in (p.strip() for p in str(text).split(",")):
        token = raw.removeprefix("total:") if raw != "total" else "1x"
        try:
            if token == "paper":
                point = ("paper", None, None)
            elif token.endswith("x"):
                factor = float(token[:-1])
                if not (math.isfinite(factor) and factor > 0):
                    raise ValueError
                point = (token, factor, None)
            else:
                samples = int(token)
                if samples < 1:
                    raise ValueError
                point = (raw, None, samples)  # as written: total:1 is one sample, not 1x
        except ValueError:
            raise SuiteError(f"--budget {text}: {raw!r} is not a budget; {spelling}") from None
        if point[1:] not in [o[1:] for o in out]:
            out.append(point)
    if not out:
        raise SuiteError(f"--budget {text!r}: names no budget; {spelling}")
    return out


def parse_budgets(text: str, setting: Setting, train_size: int, smoke: bool = False) -> list[Budget]:
    """The budget points of ``--budget`` (:func:`budget_points`), multiples resolved to samples."""
    unit = budget_unit(setting, train_size, smoke)
    points = []
    for label, factor, samples in budget_points(text):
        if factor is not None and not math.isfinite(factor * unit):  # 1e308x: no number of samples
            raise SuiteError(f"--budget {text}: {label} is more samples than a number holds; use e.g. total:2x")
        points.append(
            Budget(label, samples if samples is not None else None if factor is None else round(factor * unit))
        )
    once: dict[int | None, Budget] = {}  # each number of samples once (total:1x,909376 may be one), first name kept
    for b in points:
        once.setdefault(b.samples, b)
    return list(once.values())


def plan(
    setting: Setting,
    methods: list[str],
    seeds: list[int],
    *,
    train_size: int,
    budgets: list[Budget] = (Budget("paper"),),
    smoke: bool = False,
    user_hparams: dict | None = None,
    sources: dict | None = None,
    baseline_seed: int = 0,
    numerics: Numerics = FP32,
) -> list[Job]:
    """Jobs for every (budget, method, seed). ``user_hparams``/``sources``: per method, values over
    the defaults and where they came from ("user file", "tuned: study ..."). A budget that cannot
    hold a method's own training and one fine-tuning batch is refused here, before any work."""
    if not seeds or any(s < 0 for s in seeds):
        raise SuiteError("seeds must be non-negative integers: pass --seeds N (N >= 1) or --seed-list 0,1,2")
    jobs = []
    for budget, method, seed in itertools.product(budgets, methods, seeds):
        user = (user_hparams or {}).get(method)
        source = (sources or {}).get(method, "user file") if user else "default"
        job = Job(
            setting,
            method,
            resolve_hparams(setting, method, user),
            seed,
            baseline_seed,
            budget.protocol,
            smoke,
            source,
            total_samples=budget.samples,
            numerics=numerics,
        )
        if budget.samples is not None:
            own = job.planned_prune_iters() * setting.prune.batch_size
            if own + setting.finetune.batch_size > budget.samples:
                raise SuiteError(
                    f"--budget {budget.label} ({budget.samples:,} sample{'s' * (budget.samples != 1)}) cannot hold {method}'s own "
                    f"training ({own:,} samples) and any fine-tuning: name a larger budget"
                )
        jobs.append(job)
    return jobs
