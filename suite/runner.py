"""Plan, run and summarise comparisons: setting x method x seed -> stored runs.

Every job starts from the setting's shared baseline, lets the method choose what goes, applies
the choice with the one surgery, fine-tunes with the setting's recipe and measures. A job is
named by the hash of everything that changes its result, so a finished job is never recomputed
and a killed one resumes from the checkpoints in its folder.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from methods import registry
from methods.base import Pruning, PruneTask
from suite import data as datasets
from suite.baseline import Baseline, get_baseline
from suite.data import Data
from suite.errors import SuiteError
from suite.measure import count_flops, count_params, evaluate, latency, latency_record, processor
from suite.models import example_input
from suite.settings import Setting
from suite.store import (RECIPE_VERSION, code_version, content_hash, job_lock, read_json, write_csv,
                         write_atomic, write_json)
from suite.surgery import MaskKeeper, remove_filters, sparsity
from suite.train import load_checkpoint, save_atomic, train

SMOKE_STEPS = 20  # every phase of a --smoke run is cut to this many iterations
PROTOCOLS = ("paper", "total")


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
    user_baseline: str | None = None  # the key of a --baseline file; None: the setting's trained one

    def identity(self, data_fingerprint: str) -> dict:
        """Everything that changes the result; its hash names the run folder."""
        ident = {"setting": self.setting.to_dict(), "method": self.method, "hparams": self.hparams,
                 "seed": self.seed, "baseline_seed": self.baseline_seed, "protocol": self.protocol,
                 "smoke": self.smoke, "data": data_fingerprint, "recipe_version": RECIPE_VERSION}
        if self.user_baseline is not None:  # only then: the trained baseline's runs keep their folders
            ident["user_baseline"] = self.user_baseline
        return ident

    def folder(self, runs_dir: Path, data_fingerprint: str) -> Path:
        return runs_dir / self.setting.name / self.method / content_hash(self.identity(data_fingerprint))


def resolve_hparams(setting: Setting, method: str, user: dict | None) -> dict:
    """The method's defaults, then the setting's budget overrides, then the user's values."""
    cls = registry.get(method).Hparams
    values = {**cls().to_dict(), **setting.overrides_for(method), **(user or {})}
    return cls.from_dict(values, where=f"hparams of {method}").to_dict()


def plan(setting: Setting, methods: list[str], seeds: list[int], *, protocol: str = "paper",
         smoke: bool = False, user_hparams: dict | None = None, sources: dict | None = None,
         baseline_seed: int = 0) -> list[Job]:
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
        jobs.append(Job(setting, method, resolve_hparams(setting, method, user), seed, baseline_seed,
                        protocol, smoke, source))
    return jobs


def nominal_reg_iters(setting: Setting, hparams: dict | None = None) -> int:
    """The regularization budget a GReg-1 run can spend at this setting: ceil(tau/delta)+1 updates
    every K_u iterations, then K_s to stabilize, capped by the setting's max_iters. Under the
    ``total`` protocol every method's regularization + fine-tuning adds up to fine-tune + this
    (with the setting's defaults). ``hparams``: the same for given GReg hyperparameters."""
    hp = hparams or resolve_hparams(setting, "greg1", None)
    updates = math.ceil(hp["penalty_ceiling"] / hp["penalty_increment"]) + 1
    return min(updates * hp["update_interval"] + hp["stabilize_iters"], setting.prune.max_iters)


@dataclass
class JobResult:
    job: Job
    folder: Path
    result: dict
    cached: bool = False
    log: list = field(default_factory=list)


class Runner:
    """Runs jobs of one setting against one loaded dataset, storing each under ``runs_dir``."""

    def __init__(self, setting: Setting, data: Data, runs_dir: Path, device: torch.device,
                 baseline: Baseline | None = None):
        """With ``data.val`` present (a search), accuracies during the job are measured on the
        validation split and the test top-1 is only stored; otherwise everything is on test."""
        self.setting, self.data, self.runs_dir, self.device = setting, data, runs_dir, device
        self.user_baseline = baseline
        self.eval_split = "val" if data.val is not None else "test"
        self.on_epoch_end = None  # called with each fine-tune epoch's log row (a search's trial pruner)
        self._baselines: dict[tuple, Baseline] = {}

    def baseline(self, job: Job) -> Baseline:
        if self.user_baseline is not None:
            return self.user_baseline
        key = (job.baseline_seed, job.smoke)
        if key not in self._baselines:
            self._baselines[key] = get_baseline(self.setting, self.data, job.baseline_seed, self.runs_dir,
                                                self.device, smoke=job.smoke)
        return self._baselines[key]

    def stored(self, job: Job) -> dict | None:
        path = job.folder(self.runs_dir, self.data.fingerprint) / "result.json"
        if path.exists():
            result = read_json(path)
            if result.get("status") in ("done", "smoke"):
                return result
        return None

    def run(self, job: Job, propagate: tuple[type[BaseException], ...] = ()) -> JobResult:
        """Run (or find) one job. Exceptions of the ``propagate`` types (a trial pruner's stop) are
        recorded as status "stopped" and re-raised; any other failure is recorded and returned."""
        folder = job.folder(self.runs_dir, self.data.fingerprint)
        with job_lock(folder):  # a second process waits here, then finds the result
            cached = self.stored(job)
            if cached is not None:
                return JobResult(job, folder, cached, cached=True)
            twin = self._paper_twin(job, folder)
            if twin is not None:
                return twin
            log: list[dict] = []
            config = {**job.identity(self.data.fingerprint), "data_label": self.data.label,
                      "data_source": self.data.source, "torch": torch.__version__, "device": str(self.device),
                      "processor": processor(self.device),
                      "code_version": code_version(), "hparams_source": job.hparams_source}
            write_json(folder / "config.json", config)
            t0 = time.time()
            try:
                base = self.baseline(job)  # trained once, shared: not part of this job's wall time
                t0 = time.time()
                result = self._execute(job, base, folder, log)
                result["status"] = "smoke" if job.smoke else "done"
            except propagate as e:
                write_json(folder / "result.json", {**self._identity_fields(job), "status": "stopped",
                                                    "error": f"{type(e).__name__}: {e}".splitlines()[0]})
                raise
            except Exception as e:  # isolate (NaN, out of memory, a method error): record, go on
                result = {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0],
                          "traceback": traceback.format_exc(limit=8)}
            result.update(self._identity_fields(job))
            result["wall_seconds"] = result.get("wall_seconds", 0) + time.time() - t0
            result["finished_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            write_csv(folder / "log.csv", log)
            write_json(folder / "result.json", result)
            return JobResult(job, folder, result, log=log)

    def _paper_twin(self, job: Job, folder: Path) -> JobResult | None:
        """Under ``total``, a run whose regularization already spent the whole nominal budget gets no
        extra fine-tuning, so it is the very computation of its paper-protocol twin: when that twin
        is stored, its result is taken (marked ``same_training_as``) instead of training again."""
        if job.protocol != "total":
            return None
        paper = replace(job, protocol="paper")
        twin = self.stored(paper)
        if twin is None or twin["budget"]["reg_iters"] < nominal_reg_iters(self.setting):
            return None
        twin_folder = paper.folder(self.runs_dir, self.data.fingerprint)
        write_json(folder / "config.json", {**read_json(twin_folder / "config.json"),
                                            **job.identity(self.data.fingerprint)})
        if (twin_folder / "log.csv").exists():
            write_atomic(folder / "log.csv", (twin_folder / "log.csv").read_text())
        result = {**twin, **self._identity_fields(job), "budget": {**twin["budget"], "protocol": "total"},
                  "same_training_as": twin_folder.name, "code_version": twin["code_version"]}
        write_json(folder / "result.json", result)
        return JobResult(job, folder, result, cached=True)

    def _identity_fields(self, job: Job) -> dict:
        return {"setting": self.setting.name, "method": job.method, "seed": job.seed,
                "baseline_seed": job.baseline_seed, "hparams": job.hparams, "hparams_source": job.hparams_source, "ratios": self.setting.ratios,
                "skip": self.setting.skip, "protocol": job.protocol, "data_fingerprint": self.data.fingerprint,
                "data_label": self.data.label, "reduced_budget": self.setting.reduced,
                "eval_split": self.eval_split,
                "code_version": code_version()}

    # ------------------------------------------------------------------ the phases
    def _execute(self, job: Job, base: Baseline, folder: Path, log: list) -> dict:
        s, dev = self.setting, self.device
        method = registry.get(job.method)
        hp = method.Hparams.from_dict(job.hparams)
        model = copy.deepcopy(base.model).to(dev)
        layer_ratios = s.layer_ratios(model, granularity=method.granularity)
        shape = s.input_shape
        example = example_input(shape[0], shape[1])

        # prune: the method's choice (and its regularization), stored so a restart skips it
        pruned_file = folder / "pruned.pt"
        if pruned_file.exists():
            saved = load_checkpoint(pruned_file)
            model.load_state_dict(saved["model"])
            choice = Pruning(saved["filters"], saved["masks"], saved["reg_iters"], saved["info"])
            acc_before, reg_log = saved["acc_before_removal"], saved["log"]
        else:
            torch.manual_seed(job.seed)
            choice, reg_log = self._prune(method, model, hp, layer_ratios, job, folder, example)
            acc_before = self._top1(model)
            save_atomic({"model": model.state_dict(), "filters": choice.filters, "masks": choice.masks,
                         "reg_iters": choice.reg_iters, "info": choice.info, "acc_before_removal": acc_before,
                         "log": reg_log}, pruned_file)
        log += reg_log

        # apply: one surgery for every method
        keeper = None
        if choice.filters is not None:
            remove_filters(model, choice.filters, example)
            model.to(dev)
        else:
            keeper = MaskKeeper(model, choice.masks)
        acc_after = self._top1(model)

        # fine-tune: the setting's recipe, identical for every method
        ft = s.finetune
        ft_steps = ft.epochs * self.data.batches_per_epoch(ft.batch_size)
        if job.protocol == "total":
            ft_steps += max(0, nominal_reg_iters(s) - choice.reg_iters)
        if job.smoke:
            ft_steps = min(ft_steps, SMOKE_STEPS)
        outcome = train(model, self.data, lr=ft.lr_at, batch_size=ft.batch_size, momentum=ft.momentum,
                        weight_decay=ft.weight_decay, device=dev, seed=job.seed, total_steps=ft_steps,
                        hooks=(_MaskHook(keeper),) if keeper else (), checkpoint=folder / "finetune.ckpt",
                        desc=f"{job.method} fine-tune", eval_split=self.eval_split, on_epoch_end=self.on_epoch_end)
        log += outcome.history

        # measure
        final = evaluate(model, self.data.eval_batches("test", 500, dev), dev)
        val = evaluate(model, self.data.eval_batches("val", 500, dev), dev) if self.eval_split == "val" else None
        base_model = base.model
        params0, flops0 = count_params(base_model), count_flops(base_model, shape)
        params, flops = count_params(model), count_flops(model, shape)
        lat = {}
        for batch in (1, 64):
            repeats = 3 if job.smoke else 20
            b = latency(base_model, shape, batch, dev, warmup=2 if job.smoke else 5, repeats=repeats)
            p = latency(model, shape, batch, dev, warmup=2 if job.smoke else 5, repeats=repeats)
            lat[f"batch{batch}"] = latency_record(b, p)
        result = {
            "top1": final["top1"], "top5": final["top5"], "baseline_top1": base.top1, "baseline_key": base.key,
            "baseline_sha256": base.digest, "acc_before_removal": acc_before, "acc_after_removal": acc_after,
            "params": params, "flops": flops, "baseline_params": params0, "baseline_flops": flops0,
            "speedup": flops0 / flops, "latency_speedup": lat["batch64"]["speedup"], "latency": lat,
            "granularity": method.granularity,
            "budget": {"reg_iters": choice.reg_iters, "finetune_iters": outcome.steps,
                       "finetune_epochs": outcome.epochs_done, "total_iters": choice.reg_iters + outcome.steps,
                       "protocol": job.protocol},
            "method_info": choice.info, "finetune_seconds": outcome.seconds,
        }
        if val is not None:
            result["val_top1"] = val["top1"]
        if choice.filters is not None:
            result["pruned_filters"] = choice.filters
        else:
            result["sparsity"] = sparsity(model, choice.masks)
            result["nonzero_params"] = params - sum(int((1 - m).sum()) for m in choice.masks.values())
        save_atomic(model.state_dict(), folder / "model.pt")
        for ckpt in ("finetune.ckpt", "regularize.ckpt"):
            (folder / ckpt).unlink(missing_ok=True)
        return result

    def _prune(self, method, model, hp, layer_ratios, job: Job, folder: Path, example):
        s, dev = self.setting, self.device
        reg_log: list[dict] = []
        cap = SMOKE_STEPS if job.smoke else s.prune.max_iters

        def run_phase(hooks, desc, log_every=None, log_extra=None):
            outcome = train(model, self.data, lr=lambda e: s.prune.lr, batch_size=s.prune.batch_size,
                            momentum=s.prune.momentum, weight_decay=s.prune.weight_decay, device=dev,
                            seed=job.seed, total_steps=cap, hooks=hooks, checkpoint=folder / "regularize.ckpt",
                            eval_split=None, desc=desc, log_every=log_every, log_extra=log_extra)
            reg_log.extend(outcome.history)
            return outcome

        def batches(n):
            return itertools.islice(itertools.chain.from_iterable(
                self.data.train_batches(s.prune.batch_size, job.seed, e, dev) for e in itertools.count()), n)

        task = PruneTask(layer_ratios=layer_ratios, device=dev, seed=job.seed, max_iters=cap,
                         train=run_phase, batches=batches, example=example)
        return method.prune(model, task, hp), reg_log

    def _top1(self, model) -> float:
        return evaluate(model, self.data.eval_batches(self.eval_split, 500, self.device), self.device)["top1"]


class _MaskHook:
    """Re-applies an unstructured mask after every optimizer step."""

    def __init__(self, keeper: MaskKeeper):
        self.keeper = keeper

    def after_backward(self, model, step):
        pass

    def after_step(self, model, step):
        self.keeper.apply()
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def load_data(setting: Setting, data_dir: str | None, download: bool = False) -> Data:
    data = datasets.load(setting.dataset, data_dir, download)
    return data.limit_train(setting.train_limit) if setting.train_limit else data
