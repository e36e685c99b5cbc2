"""Running jobs (planned by ``suite.spec.plan``) into stored runs.

Every job starts from the setting's shared baseline, lets the method choose what goes, applies
the choice with the one surgery, fine-tunes with the setting's recipe and measures. A job is
named by the hash of what defines its result, so a finished job is never recomputed and a killed
one resumes from the checkpoints in its folder. The harness counts every sample a method's own
passes consume, so budgets are measured, not declared.
"""
from __future__ import annotations

import copy
import itertools
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from methods import registry
from methods.base import Pruning, PruneTask
from suite.data import datasets
from suite.training.baseline import Baseline, get_baseline
from suite.data.datasets import Data
from suite.errors import SuiteError
from suite.store.fingerprint import training_code
from suite.models.groups import prunable_groups
from suite.measure.metrics import count_flops, count_params, latency, latency_record, processor
from suite.training.numerics import compile_failure
from suite.models.nets import example_input
from suite.spec.plan import SMOKE_STEPS, Job, extra_finetune_steps, layer_ratios, prune_cap
from suite.spec.settings import Setting
from suite.models.zoo import GENERIC
from suite.store.files import code_version, job_lock, read_json, write_csv, write_atomic, write_json
from suite.models.surgery import MaskKeeper, remove_filters, sparsity
from suite.training.loop import evaluate, load_checkpoint, save_atomic, train


@dataclass
class JobResult:
    job: Job
    folder: Path
    result: dict
    cached: bool = False
    log: list = field(default_factory=list)
    stale: bool = False  # stored, but trained by other training code than today's


class Runner:
    """Runs jobs of one setting against one loaded dataset, storing each under ``runs_dir``."""

    def __init__(self, setting: Setting, data: Data, runs_dir: Path, device: torch.device,
                 baseline: Baseline | None = None, recompute_stale: bool = False):
        """With ``data.val`` present (a search), accuracies during the job are measured on the
        validation split and the test top-1 is only stored; otherwise everything is on test.
        ``recompute_stale``: a stored run trained by other training code is moved aside (kept in
        its folder's ``superseded/``) and trained again, instead of being reported as stale."""
        self.setting, self.data, self.runs_dir, self.device = setting, data, runs_dir, device
        self.user_baseline = baseline
        self.recompute_stale = recompute_stale
        self.eval_split = "val" if data.val is not None else "test"
        self.on_epoch_end = None  # called with each fine-tune epoch's log row (a search's trial pruner)
        self._baselines: dict[tuple, Baseline] = {}

    def baseline(self, job: Job) -> Baseline:
        if self.user_baseline is not None:
            return self.user_baseline
        key = (job.baseline_seed, job.smoke, job.numerics)
        if key not in self._baselines:
            self._baselines[key] = get_baseline(self.setting, self.data, job.baseline_seed, self.runs_dir,
                                                self.device, smoke=job.smoke, numerics=job.numerics)
        return self._baselines[key]

    def folder(self, job: Job) -> Path:
        return job.folder(self.runs_dir, self.data.fingerprint)

    def stored(self, job: Job) -> dict | None:
        path = self.folder(job) / "result.json"
        if path.exists():
            result = read_json(path)
            if result.get("status") in ("done", "smoke"):
                return result
        return None

    @staticmethod
    def is_stale(job: Job, result: dict) -> bool:
        return result.get("training_code") != training_code(type(registry.get(job.method)))

    def run(self, job: Job, propagate: tuple[type[BaseException], ...] = ()) -> JobResult:
        """Run (or find) one job. Exceptions of the ``propagate`` types (a trial pruner's stop) are
        recorded as status "stopped" and re-raised; any other failure is recorded and returned.
        A job another process is running is waited for, then found."""
        return self._run(job, propagate, wait=True)

    def try_run(self, job: Job, propagate: tuple[type[BaseException], ...] = ()) -> JobResult | None:
        """:meth:`run`, or None at once when another process holds the job (so a worker can take
        the next free job instead of waiting)."""
        return self._run(job, propagate, wait=False)

    def _run(self, job: Job, propagate: tuple[type[BaseException], ...], wait: bool) -> JobResult | None:
        folder = self.folder(job)
        with job_lock(folder, wait) as held:
            if not held:
                return None
            cached = self.stored(job)
            if cached is not None:
                if not (self.recompute_stale and self.is_stale(job, cached)):
                    return JobResult(job, folder, cached, cached=True, stale=self.is_stale(job, cached))
                _supersede(folder, cached)
            twin = self._paper_twin(job, folder)
            if twin is not None:
                return twin
            log: list[dict] = []
            config = {**job.identity(self.data.fingerprint), **self._record(job), "data_source": self.data.source,
                      "setting_definition": self.setting.to_dict(),
                      "torch": torch.__version__, "device": str(self.device), "processor": processor(self.device)}
            write_json(folder / "config.json", config)
            t0 = time.time()
            try:
                base = self.baseline(job)  # trained once, shared: not part of this job's wall time
                t0 = time.time()
                result = self._execute(job, base, folder, log)
                result["status"] = "smoke" if job.smoke else "done"
            except propagate as e:
                write_json(folder / "result.json", {**self._record(job), "status": "stopped",
                                                    "error": f"{type(e).__name__}: {e}".splitlines()[0]})
                raise
            except Exception as e:  # isolate (NaN, out of memory, a method error): record, go on
                result = {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0],
                          "traceback": traceback.format_exc(limit=8)}
            result.update(self._record(job))
            result["wall_seconds"] = result.get("wall_seconds", 0) + time.time() - t0
            result["finished_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            write_csv(folder / "log.csv", log)
            write_json(folder / "result.json", result)
            return JobResult(job, folder, result, log=log)

    def _paper_twin(self, job: Job, folder: Path) -> JobResult | None:
        """Under ``total``, a run whose own training already spent the whole equal budget gets no
        extra fine-tuning, so it is the very computation of its paper-protocol twin: when that twin
        is stored (and trained by today's code), its result is taken (marked ``same_training_as``)."""
        if job.protocol != "total":
            return None
        paper = replace(job, protocol="paper", total_samples=None)
        twin = self.stored(paper)
        if twin is None or self.is_stale(paper, twin) or "own_samples" not in twin["budget"]:
            return None
        b = twin["budget"]
        if extra_finetune_steps(job, b["own_samples"], b["finetune_iters"]) > 0:
            return None
        twin_folder = self.folder(paper)
        write_json(folder / "config.json", {**read_json(twin_folder / "config.json"),
                                            **job.identity(self.data.fingerprint)})
        if (twin_folder / "log.csv").exists():
            write_atomic(folder / "log.csv", (twin_folder / "log.csv").read_text())
        result = {**twin, **self._record(job), "same_training_as": twin_folder.name,
                  "budget": {**b, "protocol": "total", "total_samples_target": job.total_samples},
                  "code_version": twin["code_version"]}
        write_json(folder / "result.json", result)
        return JobResult(job, folder, result, cached=True)

    def _record(self, job: Job) -> dict:
        """What every config and result carries besides the identity: names, provenance, code."""
        return {"setting": self.setting.name, "method": job.method, "seed": job.seed,
                "baseline_seed": job.baseline_seed, "hparams": job.hparams, "hparams_source": job.hparams_source,
                "ratios": self.setting.ratios, "skip": self.setting.skip, "protocol": job.protocol,
                "data_fingerprint": self.data.fingerprint, "data_label": self.data.label,
                "reduced_budget": self.setting.reduced, "eval_split": self.eval_split,
                "code_version": code_version(), "training_code": training_code(type(registry.get(job.method))),
                **job.numerics.record()}

    # ------------------------------------------------------------------ the phases
    def _execute(self, job: Job, base: Baseline, folder: Path, log: list) -> dict:
        s, dev, numerics = self.setting, self.device, job.numerics
        method = registry.get(job.method)
        hp = method.Hparams.from_dict(job.hparams)
        model = copy.deepcopy(base.model).to(dev)
        shape = s.input_shape
        example = example_input(shape[0], shape[1:])

        # prune: the method's choice (and its own training), stored so a restart skips it
        pruned_file = folder / "pruned.pt"
        if pruned_file.exists():
            saved = load_checkpoint(pruned_file)
            model.load_state_dict(saved["model"])
            choice = Pruning(saved["filters"], saved["masks"], info=saved["info"])
            acc_before, reg_log, own = saved["acc_before_removal"], saved["log"], saved["own"]
        else:
            torch.manual_seed(job.seed)
            choice, reg_log, own = self._prune(method, model, hp, job, folder, example)
            acc_before = self._top1(model, numerics)
            save_atomic({"model": model.state_dict(), "filters": choice.filters, "masks": choice.masks,
                         "info": choice.info, "acc_before_removal": acc_before, "log": reg_log, "own": own},
                        pruned_file)
        log += reg_log

        # apply: one surgery for every method
        keeper = None
        if choice.filters is not None:
            remove_filters(model, choice.filters, example, coupled=s.family == GENERIC)
            model.to(dev)
        else:
            keeper = MaskKeeper(model, choice.masks)
        acc_after = self._top1(model, numerics)

        # fine-tune: the setting's recipe, identical for every method
        ft = s.finetune
        ft_steps = ft.epochs * self.data.batches_per_epoch(ft.batch_size)
        if job.smoke:
            ft_steps = min(ft_steps, SMOKE_STEPS)
        ft_steps += extra_finetune_steps(job, own["samples"], ft_steps)
        outcome = train(model, self.data, lr=ft.lr_at, batch_size=ft.batch_size, momentum=ft.momentum,
                        weight_decay=ft.weight_decay, device=dev, seed=job.seed, stream="finetune",
                        total_steps=ft_steps, hooks=(keeper,) if keeper else (), checkpoint=folder / "finetune.ckpt",
                        desc=f"{job.method} fine-tune", eval_split=self.eval_split, on_epoch_end=self.on_epoch_end,
                        numerics=numerics)
        log += outcome.history

        # measure: accuracy in the run's numerics; size and latency of the fp32, contiguous, eager model
        final = evaluate(model, self.data.eval_batches("test", 500, dev), dev, numerics)
        val = (evaluate(model, self.data.eval_batches("val", 500, dev), dev, numerics)
               if self.eval_split == "val" else None)
        base_model = base.model
        for m in (base_model, model):
            m.to(memory_format=torch.contiguous_format)
        params0, flops0 = count_params(base_model), count_flops(base_model, shape)
        params, flops = count_params(model), count_flops(model, shape)
        lat = {}
        for batch in (1, 64):
            repeats = 3 if job.smoke else 20
            b = latency(base_model, shape, batch, dev, warmup=2 if job.smoke else 5, repeats=repeats)
            p = latency(model, shape, batch, dev, warmup=2 if job.smoke else 5, repeats=repeats)
            lat[f"batch{batch}"] = latency_record(b, p)
        ft_samples = outcome.steps * ft.batch_size
        samples = own["samples"] + ft_samples
        result = {
            "top1": final["top1"], "top5": final["top5"], "baseline_top1": base.top1, "baseline_key": base.key,
            "baseline_sha256": base.digest, "acc_before_removal": acc_before, "acc_after_removal": acc_after,
            "params": params, "flops": flops, "baseline_params": params0, "baseline_flops": flops0,
            "speedup": flops0 / flops, "latency_speedup": lat["batch64"]["speedup"], "latency": lat,
            "granularity": method.granularity,
            "budget": {
                "protocol": job.protocol, "reg_iters": own["iters"], "own_samples": own["samples"],
                "planned_own_iters": job.planned_prune_iters(), "capped": own["capped"],
                "finetune_iters": outcome.steps, "finetune_epochs": outcome.epochs_done,
                "finetune_samples": ft_samples, "samples": samples,
                "samples_x_train": samples / len(self.data.train) if self.data.train is not None else None,
                # training compute: forward + backward ~ 3 x the forward multiply-adds (FLOPs / 2) of
                # the model as it was: whole during the method's own training, pruned while fine-tuning
                "train_macs": 3 * (flops0 // 2 * own["samples"] + flops // 2 * ft_samples),
                "total_samples_target": job.total_samples},
            "method_info": choice.info, "finetune_seconds": outcome.seconds,
        }
        if val is not None:
            result["val_top1"] = val["top1"]
        if compile_failure(model):
            result["compile_failure"] = compile_failure(model)
        if choice.filters is not None:
            result["pruned_filters"] = choice.filters
        else:
            zeros = sum(int((1 - m).sum()) for m in choice.masks.values())
            result["sparsity"] = sparsity(model, choice.masks)
            result["nonzero_params"] = params - zeros
            # the achieved sparsity over every weight the method could mask (what a target of 0.9 means)
            result["weight_sparsity"] = zeros / sum(m.numel() for m in choice.masks.values())
        save_atomic(model.state_dict(), folder / "model.pt")
        for ckpt in ("finetune.ckpt", "regularize.ckpt"):
            (folder / ckpt).unlink(missing_ok=True)
        return result

    def _prune(self, method, model, hp, job: Job, folder: Path, example):
        """Let the method choose, counting every sample its own passes consume (the harness counts,
        so a method cannot under-report its budget) and whether a pass ran into the cap."""
        s, dev = self.setting, self.device
        reg_log: list[dict] = []
        cap = prune_cap(s, job.smoke)
        own = {"iters": 0, "samples": 0, "capped": not job.schedule_fits()}

        def run_phase(hooks, desc, log_every=None, log_extra=None):
            outcome = train(model, self.data, lr=lambda e: s.prune.lr, batch_size=s.prune.batch_size,
                            momentum=s.prune.momentum, weight_decay=s.prune.weight_decay, device=dev,
                            seed=job.seed, stream="regularize", total_steps=cap, hooks=hooks,
                            checkpoint=folder / "regularize.ckpt", eval_split=None, desc=desc,
                            log_every=log_every, log_extra=log_extra, expected_steps=job.planned_prune_iters() or None,
                            numerics=job.numerics)
            reg_log.extend(outcome.history)
            own["iters"] += outcome.steps
            own["samples"] += outcome.steps * s.prune.batch_size
            own["capped"] |= bool(hooks) and not outcome.stopped_by_hook
            return outcome

        def batches(n):
            stream = itertools.chain.from_iterable(
                self.data.train_batches(s.prune.batch_size, job.seed, e, dev, stream="regularize")
                for e in itertools.count())
            for x, y in itertools.islice(stream, n):
                own["iters"] += 1
                own["samples"] += len(y)
                yield x, y

        ratios = layer_ratios(s, method.granularity)
        groups = {}
        if s.family == GENERIC and method.granularity == "filter":
            groups = {n: g for n, g in prunable_groups(model, example).items() if n in ratios}
        task = PruneTask(layer_ratios=ratios, device=dev, seed=job.seed, max_iters=cap, train=run_phase,
                         batches=batches, example=example, groups=groups)
        return method.prune(model, task, hp), reg_log, own

    def _top1(self, model, numerics) -> float:
        return evaluate(model, self.data.eval_batches(self.eval_split, 500, self.device), self.device, numerics)["top1"]


def _supersede(folder: Path, result: dict) -> None:
    """Move a stale run's files into ``folder/superseded/<its training code>/``: kept, off the pages."""
    dest = folder / "superseded" / str(result.get("training_code") or "unrecorded")
    dest.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and not f.name.startswith("."):
            f.replace(dest / f.name)


def load_data(setting: Setting, data_dir: str | None, download: bool = False) -> Data:
    """The setting's data; ``data_dir`` (``--data-dir``) first, else the setting's own."""
    data = datasets.load(setting.at_root(setting.dataset), data_dir or setting.data_path, download,
                         setting.data_options or None)
    try:
        data = data.limit_train(setting.train_limit) if setting.train_limit else data
        return data.limit_test(setting.test_limit) if setting.test_limit else data
    except SuiteError as e:
        raise SuiteError(f"{setting.name}: {e}") from None
