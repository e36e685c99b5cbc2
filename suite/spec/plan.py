"""Planning a comparison: setting x method x seed -> jobs, each named by what defines its result.

A job's identity (its run folder's hash) holds what selects the data, the model, the resolved
per-layer ratios, the baseline it starts from, the method and the hyperparameters it reads, the
recipes, the seed, the budget protocol, and the precision, memory layout and compilation when
they differ from fp32, contiguous and eager (``suite.training.numerics``). Presentation (a setting's
description, its other targets, other methods' overrides, a log cadence) stays out, so editing it
orphans no run. The code that trained a run is recorded beside it (``suite.store.fingerprint``), not
hashed into its name: a run trained by older code is *stale*, found and flagged rather than
silently recomputed.

Budget protocols:
  paper   every method gets the setting's fine-tuning; a method's own training (GReg's
          regularization, a criterion's side training) comes on top, as in the paper.
  total   every row sees the same number of training *samples* after the baseline: the largest
          planned own-training of any registered method of that granularity at this setting, plus
          the fine-tuning; each run's fine-tuning is extended by what its own phases left unspent.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass

from methods import registry
from methods.base import Hparams, Method
from suite.errors import SuiteError
from suite.training.numerics import FP32, Numerics
from suite.spec.run import BaselineSpec, BudgetSpec, DataSpec, MethodSpec, ModelSpec, NumericsSpec, RunDescription
from suite.spec.settings import Setting

SMOKE_STEPS = 20  # every phase of a --smoke run is cut to this many iterations
PROTOCOLS = ("paper", "total")


_RATIOS: dict[tuple, dict[str, float]] = {}


def layer_ratios(setting: Setting, granularity: str) -> dict[str, float]:
    """The setting's target resolved to {layer: ratio} for a granularity (each model built once)."""
    key = (setting.dataset, setting.model, setting.ratios, setting.skip, granularity, setting.root,
           setting.data_path)
    if key not in _RATIOS:
        _RATIOS[key] = setting.layer_ratios(setting.build_model(), granularity=granularity)
    return _RATIOS[key]


def prune_cap(setting: Setting, smoke: bool) -> int:
    """The most iterations a method's own training may run at this setting."""
    return SMOKE_STEPS if smoke else setting.prune.max_iters


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

    def describe(self, data_fingerprint: str) -> RunDescription:
        """The run description of this job on data with this fingerprint (``suite.spec.run``)."""
        s, method = self.setting, self.impl
        from suite.models.zoo import source_digest
        return RunDescription(
            data=DataSpec(data_fingerprint, s.dataset, s.train_limit),
            model=ModelSpec(s.model, layer_ratios(s, method.granularity), method.granularity,
                            source_digest(s.at_root(s.model))),
            baseline=(BaselineSpec(weights=self.user_baseline) if self.user_baseline is not None else
                      BaselineSpec(s.baseline.to_dict(), self.baseline_seed)),
            method=MethodSpec(self.method, method.defining_hparams(self.hparams),
                              asdict(s.prune) if method.planned_iters(self.hp) > 0 else None),
            budget=BudgetSpec(self.protocol, s.finetune.to_dict(),
                              self.total_samples if self.protocol == "total" else None),
            numerics=NumericsSpec.of(self.numerics), seed=self.seed, smoke=self.smoke)

    def identity(self, data_fingerprint: str) -> dict:
        """Everything that defines the result; its hash names the run folder."""
        return self.describe(data_fingerprint).identity()

    def folder(self, runs_dir, data_fingerprint: str):
        return runs_dir / self.setting.name / self.method / self.describe(data_fingerprint).name

    def planned_prune_iters(self) -> int:
        """The method's own training iterations, as planned, within the setting's cap."""
        return min(self.impl.planned_iters(self.hp), prune_cap(self.setting, self.smoke))

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


def total_samples(setting: Setting, granularity: str, train_size: int, smoke: bool = False) -> int:
    """The equal budget of the ``total`` protocol: fine-tuning plus the largest own-training any
    registered method of ``granularity`` plans at this setting with its defaults, in samples."""
    cap = prune_cap(setting, smoke)
    own = [min(m.planned_iters(m.Hparams.from_dict(resolve_hparams(setting, n, None))), cap)
           for n in registry.names() if (m := registry.get(n)).granularity == granularity]
    return finetune_samples(setting, train_size, smoke) + max(own, default=0) * setting.prune.batch_size


def plan(setting: Setting, methods: list[str], seeds: list[int], *, train_size: int, protocol: str = "paper",
         smoke: bool = False, user_hparams: dict | None = None, sources: dict | None = None,
         baseline_seed: int = 0, numerics: Numerics = FP32) -> list[Job]:
    """Jobs for every (method, seed). ``user_hparams``/``sources``: per method, values over the
    defaults and where they came from ("user file", "tuned: study ...")."""
    if protocol not in PROTOCOLS:
        raise SuiteError(f"unknown budget protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if not seeds or any(s < 0 for s in seeds):
        raise SuiteError("seeds must be non-negative integers: pass --seeds N (N >= 1) or --seed-list 0,1,2")
    jobs = []
    for method, seed in itertools.product(methods, seeds):
        user = (user_hparams or {}).get(method)
        source = (sources or {}).get(method, "user file") if user else "default"
        target = (total_samples(setting, registry.get(method).granularity, train_size, smoke)
                  if protocol == "total" else None)
        jobs.append(Job(setting, method, resolve_hparams(setting, method, user), seed, baseline_seed,
                        protocol, smoke, source, total_samples=target, numerics=numerics))
    return jobs


def extra_finetune_steps(job: Job, own_samples: int, finetune_steps: int) -> int:
    """Under ``total``: fine-tuning iterations added so that own samples + fine-tuning reach the
    job's total (rounded up to a whole batch: rows are equal to within one fine-tuning batch)."""
    if job.protocol != "total":
        return 0
    batch = job.setting.finetune.batch_size
    missing = job.total_samples - own_samples - finetune_steps * batch
    return max(0, math.ceil(missing / batch))
