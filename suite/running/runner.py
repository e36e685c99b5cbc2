"""Running jobs (planned by ``suite.spec.plan``) into stored runs: the Runner schedules, locks
and records; the phases themselves are ``suite.running.pipeline``.

A job is named by the hash of its run description (``suite.spec.run``), so a finished job is never
recomputed and a killed one resumes from the checkpoints in its folder; a job another process
holds is waited for or passed over; a failure is recorded with its message and the others go on.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from suite.data import datasets
from suite.data.datasets import Data
from suite.errors import SuiteError
from suite.measure.metrics import latency_block, machine, machines_after
from suite.running import pipeline
from suite.running.pipeline import Workspace
from suite.spec.plan import Job
from suite.spec.settings import Setting
from suite.store.files import code_version, job_lock, read_json, read_json_record, write_atomic, write_csv, write_json
from suite.store.fingerprint import training_code
from suite.store.results import checked_record
from suite.training.baseline import Baseline, get_baseline


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

    def __init__(
        self,
        setting: Setting,
        data: Data,
        runs_dir: Path,
        device: torch.device,
        baseline: Baseline | None = None,
        recompute_stale: bool = False,
    ):
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
            self._baselines[key] = get_baseline(
                self.setting,
                self.data,
                job.baseline_seed,
                self.runs_dir,
                self.device,
                smoke=job.smoke,
                numerics=job.numerics,
            )
        return self._baselines[key]

    def folder(self, job: Job) -> Path:
        return job.folder(self.runs_dir, self.data.fingerprint)

    def stored(self, job: Job) -> dict | None:
        """The job's stored finished result, None where there is none. A result.json that cannot be
        read into a run's record (cut short, a key given twice, a number written as text) is
        refused with a line naming it, as the pages name it, never reused or trained over."""
        path = self.folder(job) / "result.json"
        if not path.exists():
            return None
        result, problem = read_json_record(path)
        if not problem:
            problem = checked_record(result, path.parent)[1]
        if problem:
            raise SuiteError(f"{path} is unreadable ({problem}); delete its run folder to recompute it")
        return result if result.get("status") in ("done", "smoke") else None

    @staticmethod
    def is_stale(job: Job, result: dict) -> bool:
        return result.get("training_code") != training_code(type(job.impl), job.setting.model_code)

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
            here = machine(self.device)
            config = {
                **job.identity(self.data.fingerprint),
                **self._record(job),
                "data_source": self.data.source,
                "setting_definition": self.setting.to_dict(),
                "torch": torch.__version__,
                "device": str(self.device),
                **here,
            }
            _drop_checkpoints_of_other_code(folder, config["training_code"])
            config.update(_machines_so_far(folder, here))
            write_json(folder / "config.json", config)
            t0 = time.time()
            try:
                base = self.baseline(job)  # trained once, shared: not part of this job's wall time
                t0 = time.time()
                result, model = pipeline.execute(
                    Workspace(job, self.data, self.device, folder, self.eval_split, self.on_epoch_end), base, log
                )
                result.update(latency_block(base.model, model, self.setting.input_shape, self.device, job.smoke))
                result["status"] = "smoke" if job.smoke else "done"
            except propagate as e:
                write_json(
                    folder / "result.json",
                    {**self._record(job), "status": "stopped", "error": f"{type(e).__name__}: {e}".splitlines()[0]},
                )
                raise
            except Exception as e:  # isolate (NaN, out of memory, a method error): record, go on
                result = {
                    "status": "failed",
                    "error": f"{type(e).__name__}: {e}".splitlines()[0],
                    "traceback": traceback.format_exc(limit=8),
                }
            result.update(self._record(job), **here)
            result.update({k: config[k] for k in ("machines",) if k in config})
            result["wall_seconds"] = result.get("wall_seconds", 0) + time.time() - t0
            result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            write_csv(folder / "log.csv", log)
            write_json(folder / "result.json", result)
            return JobResult(job, folder, result, log=log)

    def _paper_twin(self, job: Job, folder: Path) -> JobResult | None:
        """Under an equal-sample budget, a run whose own training leaves exactly the recipe's
        fine-tuning is the very computation of its paper-protocol twin (the schedule stretched by
        1.0): when that twin is stored (and trained by today's code), its result is taken (marked
        ``same_training_as``)."""
        if job.protocol == "paper":
            return None
        paper = replace(job, protocol="paper", total_samples=None)
        twin = self.stored(paper)
        if twin is None or self.is_stale(paper, twin) or "own_samples" not in twin["budget"]:
            return None
        b = twin["budget"]
        if (
            job.finetune_steps(b["own_samples"], self.data.batches_per_epoch(job.setting.finetune.batch_size))
            != b["finetune_iters"]
        ):
            return None
        twin_folder = self.folder(paper)
        write_json(
            folder / "config.json", {**read_json(twin_folder / "config.json"), **job.identity(self.data.fingerprint)}
        )
        if (twin_folder / "log.csv").exists():
            write_atomic(folder / "log.csv", (twin_folder / "log.csv").read_text())
        result = {
            **twin,
            **self._record(job),
            "same_training_as": twin_folder.name,
            "budget": {**b, "protocol": job.protocol, "total_samples_target": job.total_samples},
            "code_version": twin["code_version"],
        }
        write_json(folder / "result.json", result)
        return JobResult(job, folder, result, cached=True)

    def _record(self, job: Job) -> dict:
        """What every config and result carries besides the identity: names, provenance, code."""
        family = job.setting.model_code
        return {
            "setting": self.setting.name,
            "comparison": job.describe(self.data.fingerprint).comparison(),
            "method": job.method,
            "seed": job.seed,
            "baseline_seed": job.baseline_seed,
            "hparams": job.hparams,
            "hparams_source": job.hparams_source,
            "ratios": self.setting.ratios,
            "skip": self.setting.skip,
            "protocol": job.protocol,
            "data_fingerprint": self.data.fingerprint,
            "data_label": self.data.label,
            "reduced_budget": self.setting.reduced,
            "eval_split": self.eval_split,
            "code_version": code_version(),
            "training_code": training_code(type(job.impl), family),
            "model_modules": list(family),
            **job.numerics.record(),
            # how ``--target Nx-latency`` found the ratios (runtime, batch, machine, measured speedup)
            **({"latency_target": self.setting.latency_target} if self.setting.latency_target else {}),
            **({"round_to": self.setting.round_to} if self.setting.round_to > 1 else {}),
        }


def _drop_checkpoints_of_other_code(folder: Path, code: str) -> None:
    """A killed run resumes from its checkpoints, unless other training code made them (the run was
    started before the code changed): a resumed run would mix two codes under today's fingerprint,
    so its checkpoints are deleted and it starts again, saying so."""
    previous = folder / "config.json"
    if not previous.exists():
        return
    try:
        made_by = json.loads(previous.read_text()).get("training_code")
    except ValueError:
        made_by = None
    stale = [f for f in ("pruned.pt", "own.ckpt", "finetune.ckpt") if (folder / f).exists()]
    if stale and made_by != code:
        for f in stale:
            (folder / f).unlink()
        print(f"    {folder.name}: its checkpoints were made by other training code ({made_by}): started again")


def _machines_so_far(folder: Path, here: dict) -> dict:
    """``{"machines": [...]}`` when this attempt resumes checkpoints that another machine (processor,
    instruction set or thread count) made: every machine that trained the run, in order, so its
    record does not claim one machine for a training that two made (a campaign resumed in a session
    on another CPU). Empty when one machine made it all."""
    previous = folder / "config.json"
    resumes = any((folder / f).exists() for f in ("pruned.pt", "own.ckpt", "finetune.ckpt"))
    if not (resumes and previous.exists()):
        return {}
    try:
        before = json.loads(previous.read_text())
    except ValueError:
        return {}
    history = before.get("machines") or machines_after([], before)
    machines = machines_after(history, here)
    return {"machines": machines} if len(machines) > 1 else {}


def _supersede(folder: Path, result: dict) -> None:
    """Move a stale run's files into ``folder/superseded/<its training code>/``: kept, off the pages."""
    dest = folder / "superseded" / str(result.get("training_code") or "unrecorded")
    dest.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and not f.name.startswith("."):
            f.replace(dest / f.name)


def load_data(setting: Setting, data_dir: str | None, download: bool = False) -> Data:
    """The setting's data; ``data_dir`` (``--data-dir``) first, else the setting's own."""
    data = datasets.load(
        setting.at_root(setting.dataset), data_dir or setting.data_path, download, setting.data_options or None
    )
    try:
        data = data.limit_train(setting.train_limit) if setting.train_limit else data
        return data.limit_test(setting.test_limit) if setting.test_limit else data
    except SuiteError as e:
        raise SuiteError(f"{setting.name}: {e}") from None
