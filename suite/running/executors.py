"""Where jobs run: this process (``local``), a Ray cluster (``ray``) or SLURM through submitit (``slurm``).

The content-addressed store stays the one source of truth on every engine: a task rebuilds the
driver's :class:`~suite.running.runner.Runner` from a small picklable :class:`Context` and calls the same
``Runner.run(job)``, whose per-job file lock makes a job computed once even when it is submitted
twice, and whose checkpoints in the run folder make a retried task (a killed worker, a preempted
SLURM job) resume where the dead one stopped. So the engines only place tasks and retry them; they
decide nothing about what is done. The run folders must be on a disk every worker sees.

Each task gets its resources (1 GPU when the driver's device is CUDA, else ``threads`` CPUs) and
sets torch's intra-op threads to exactly that allotment: torch's default of one thread per core in
every task of a node would oversubscribe it many times over.
"""

from __future__ import annotations

import math
import os
import pickle
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from suite.errors import SuiteError
from suite.registry import Registry
from suite.running.runner import JobResult, Runner, load_data
from suite.spec.plan import Job
from suite.spec.settings import Setting
from suite.training.numerics import FP32, Numerics

RETRIES = 3  # a task whose worker dies (SIGKILL, lost node, preemption) is run again this many times
ROOT = Path(__file__).resolve().parents[2]  # this checkout: tasks import the driver's code, not another


@dataclass(frozen=True)
class Context:
    """What a task in another process needs to rebuild the driver's Runner (it pickles; the
    dataset does not travel: each worker loads it from ``data_dir``, once per process)."""

    setting: Setting
    runs_dir: str  # absolute: the workers' view of the shared disk
    data_dir: str | None = None
    download: bool = False
    device: str = "cpu"  # "cuda" (the task's allotted GPU) or "cpu"
    threads: int = 1
    baseline: str | None = None  # a --baseline file (absolute), else the setting's trained baseline
    recompute_stale: bool = False
    validation: bool = False  # a search: the training set minus the setting's validation split
    numerics: Numerics = FP32  # the command's precision (a --baseline file's top-1 is measured in it)

    @property
    def gpu(self) -> bool:
        return self.device.startswith("cuda")


_RUNNERS: dict[bytes, Runner] = {}  # per worker process: a Ray worker runs many tasks, loads data once


def runner_for(ctx: Context) -> Runner:
    """The Runner a task uses, with torch's threads set to the task's allotment."""
    torch.set_num_threads(ctx.threads)
    key = pickle.dumps(ctx)
    if key not in _RUNNERS:
        from suite.training.baseline import load_user_baseline

        data = load_data(ctx.setting, ctx.data_dir, ctx.download)
        if ctx.validation:
            data = data.with_validation(ctx.setting.val_size, seed=0)
        device = torch.device(ctx.device)
        user = load_user_baseline(ctx.setting, Path(ctx.baseline), data, device, ctx.numerics) if ctx.baseline else None
        _RUNNERS[key] = Runner(
            ctx.setting, data, Path(ctx.runs_dir), device, baseline=user, recompute_stale=ctx.recompute_stale
        )
    return _RUNNERS[key]


def run_job(ctx: Context, job: Job) -> JobResult:
    """One task: run (or find) one job in the shared store."""
    return runner_for(ctx).run(job)


def train_baseline(ctx: Context, job: Job) -> str:
    """One task: train (or find) the baseline ``job`` starts from, before the jobs fan out."""
    return runner_for(ctx).baseline(job).key


def search_worker(ctx: Context, spec, storage: str, study: str, index: int) -> int:
    """One task: a search worker adding trials to the shared study until it holds ``spec.trials``.
    Each worker's sampler gets its own seed, so parallel workers do not propose the same points."""
    from suite.running.search import get_study, make_sampler, run_search

    runner = runner_for(ctx)
    sampler = make_sampler(spec.sampler, spec.seed + index, spec.space)
    run_search(
        spec,
        runner,
        get_study(storage, study, spec.setting, spec.method, sampler=sampler, space=spec.space, numerics=spec.numerics),
    )
    return index


@dataclass(frozen=True)
class EngineOptions:
    """What a command says about where its tasks run, validated once (``suite.cli`` builds it from
    the command line; a script may build it directly). Executors read this, never argparse."""

    kind: str = "local"
    ray_address: str | None = None
    slurm_partition: str | None = None
    slurm_hours: float = 4.0
    wait: bool = False
    data_dir: str | None = None  # the workers' view of the data (--data-dir)
    download: bool = False
    threads: int | None = None  # CPUs per task (None: 1)
    numerics: Numerics = FP32  # the command's precision (a --baseline file's top-1 is measured in it)

    def __post_init__(self):
        EXECUTORS.get(self.kind)  # an unknown engine is a one-line error naming the known ones
        stray = [
            o
            for o, v, own in (
                ("--ray-address", self.ray_address, "ray"),
                ("--slurm-partition", self.slurm_partition, "slurm"),
                ("--wait", self.wait, "slurm"),
            )
            if v and self.kind != own
        ]
        if stray:
            raise SuiteError(
                f"{stray[0]} is an option of another executor than --executor {self.kind}: drop it or "
                f"pass the executor it belongs to"
            )
        if self.kind == "slurm" and not (math.isfinite(self.slurm_hours) and self.slurm_hours > 0):
            raise SuiteError(f"--slurm-time {self.slurm_hours}: give the hours a task may run, > 0")


def context(runner: Runner, options: EngineOptions) -> Context:
    """The Context of the driver's runner and the command's engine options."""
    base = runner.user_baseline
    return Context(
        setting=runner.setting,
        runs_dir=str(Path(runner.runs_dir).resolve()),
        data_dir=options.data_dir,
        download=options.download,
        device="cuda" if runner.device.type == "cuda" else "cpu",
        threads=options.threads or 1,
        baseline=str(Path(base.path).resolve()) if base else None,
        recompute_stale=runner.recompute_stale,
        validation=runner.eval_split == "val",
        numerics=options.numerics,
    )


def _baseline_jobs(runner: Runner, jobs: list[Job]) -> list[Job]:
    """One job per baseline the jobs start from (none with a user's --baseline)."""
    if runner.user_baseline is not None:
        return []
    seen: dict[tuple, Job] = {}
    for j in jobs:
        seen.setdefault((j.baseline_seed, j.smoke, j.numerics), j)
    return list(seen.values())


def _failed(job: Job, runner: Runner, error: str) -> JobResult:
    """A job whose task the engine gave up on (its retries spent): reported failed, nothing stored,
    so the next ``suite run`` tries it again."""
    return JobResult(
        job,
        runner.folder(job),
        {"setting": job.setting.name, "method": job.method, "seed": job.seed, "status": "failed", "error": error},
    )


# ---------------------------------------------------------------------------- local
def run_shared(runner, jobs, workers):
    """Yield the JobResult of every job, sharing the work with other workers on the same
    runs dir: a job another worker holds is passed over (try_run) and come back to at the end, when
    waiting for it is all that is left (then its result is found, not computed again)."""
    held = []
    for i, job in enumerate(jobs, 1):
        workers.apply()  # a worker started or ended beside this one: a new share of the cores
        print(f"[{i}/{len(jobs)}] {job.method} seed {job.seed}", flush=True)
        jr = runner.try_run(job)
        if jr is None:
            print("    another worker is running it: taking the next job, back to it at the end", flush=True)
            held.append((i, job))
        else:
            yield jr
    for i, job in held:
        print(f"[{i}/{len(jobs)}] {job.method} seed {job.seed} (waiting for the other worker)", flush=True)
        yield runner.run(job)


class Executor(Protocol):
    """The one small interface of an engine: yield every job's JobResult (stored ones found, the
    rest computed or submitted); ``search`` runs search workers where the engine can."""

    name: str

    def results(self, runner: Runner, jobs: list[Job], workers) -> Iterator[JobResult]: ...


EXECUTORS: Registry[type] = Registry("executor")


@EXECUTORS.register("local")
class LocalExecutor:
    """Today's behaviour: this process runs the jobs, sharing them with other ``suite run``
    processes on the same runs dir through the job locks."""

    name = "local"

    def __init__(self, options: EngineOptions):
        self.options = options

    def results(self, runner: Runner, jobs: list[Job], workers) -> Iterator[JobResult]:
        yield from run_shared(runner, jobs, workers)


def _stored_first(runner: Runner, jobs: list[Job]):
    """Yield (and announce) the stored jobs, found by the driver with no task for them; return the
    rest, which go to the engine (``todo = yield from _stored_first(...)``)."""
    found, todo = [], []
    for j in jobs:
        r = runner.stored(j)
        if r is not None and not (runner.recompute_stale and runner.is_stale(j, r)):
            found.append(JobResult(j, runner.folder(j), r, cached=True, stale=runner.is_stale(j, r)))
        else:
            todo.append(j)
    for k, jr in enumerate(found, 1):
        _announce(k, len(jobs), jr, "stored")
        yield jr
    return todo


def _announce(k: int, n: int, jr: JobResult, where: str) -> None:
    print(f"[{k}/{n}] {jr.job.method} seed {jr.job.seed} ({where})", flush=True)


# ---------------------------------------------------------------------------- ray
@EXECUTORS.register("ray")
class RayExecutor:
    """Jobs as Ray tasks with ``num_cpus``/``num_gpus`` and ``max_retries``: a worker that dies is
    replaced and its task run again, resuming from the job's checkpoints. ``address``: join a
    running cluster (``auto`` or ``HOST:PORT``); None starts a one-machine cluster for this run."""

    name = "ray"

    def __init__(self, options: EngineOptions):
        self.options, self.address = options, options.ray_address

    def _init(self):
        try:
            import ray
        except ImportError:
            raise SuiteError("--executor ray needs Ray: pip install 'greg-suite[ray]'") from None
        if not ray.is_initialized():
            env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
            env.update({k: v for k, v in os.environ.items() if k.startswith("SUITE_")})
            try:
                ray.init(
                    address=self.address,
                    runtime_env={"env_vars": env},
                    include_dashboard=False,
                    logging_level="WARNING",
                )
            except Exception as e:  # Ray raises ConnectionError, RuntimeError or a bare Exception here
                where = f"join the Ray cluster at {self.address}" if self.address else "start Ray on this machine"
                if "auth" in str(e).lower():  # Ray >= 2.59: a cluster with token auth refuses clients not told so
                    raise SuiteError(
                        f"cannot {where}: the cluster wants its authentication token; export "
                        f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or keep the token in "
                        f"~/.ray/auth_token), then run again"
                    ) from None
                raise SuiteError(
                    f"cannot {where} ({' '.join(str(e).splitlines()[:1])}): see "
                    f"/tmp/ray/session_latest/logs/raylet.out; start a cluster with 'ray start "
                    f"--head' and pass --ray-address"
                ) from None
        return ray

    def _remote(self, ray, fn, ctx: Context):
        return ray.remote(fn).options(
            num_cpus=ctx.threads, num_gpus=1 if ctx.gpu else 0, max_retries=RETRIES, retry_exceptions=False
        )

    def results(self, runner: Runner, jobs: list[Job], workers) -> Iterator[JobResult]:
        todo = yield from _stored_first(runner, jobs)
        if not todo:
            return
        ray = self._init()
        ctx = context(runner, self.options)
        print(
            f"ray: {len(todo)} task(s) of {ctx.threads} CPU{' + 1 GPU' if ctx.gpu else ''} each on "
            f"{ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs",
            flush=True,
        )
        base = self._remote(ray, train_baseline, ctx)
        try:  # each baseline once, before the jobs that start from it fan out
            ray.get([base.remote(ctx, j) for j in _baseline_jobs(runner, todo)])
        except ray.exceptions.RayError as e:
            raise SuiteError(f"the baseline failed on Ray: {_ray_error(e)}") from None
        task = self._remote(ray, run_job, ctx)
        pending = {task.remote(ctx, j): j for j in todo}
        k = len(jobs) - len(todo)  # the stored ones came first
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                jr = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                jr = _failed(job, runner, f"ray task failed after {RETRIES} retries: {_ray_error(e)}")
            k += 1
            _announce(k, len(jobs), jr, "ray task")
            yield jr

    def search(self, ctx: Context, spec, storage: str, study: str, parallel: int) -> None:
        ray = self._init()
        task = self._remote(ray, search_worker, ctx)
        try:
            ray.get([task.remote(ctx, spec, storage, study, i) for i in range(parallel)])
        except ray.exceptions.RayError as e:
            raise SuiteError(f"a search worker failed on Ray: {_ray_error(e)}") from None


def _ray_error(e) -> str:
    cause = getattr(e, "cause", None)
    return " ".join(str(cause or e).splitlines()[-1:]) or type(e).__name__


# ---------------------------------------------------------------------------- slurm
def _checkpointable():
    import submitit

    class Task(submitit.helpers.Checkpointable):
        """A SLURM task that submitit requeues on preemption or timeout with the same arguments:
        the job's checkpoints in its run folder make the requeued task resume, not restart."""

        def __call__(self, fn, *args):
            return fn(*args)

    return Task


@EXECUTORS.register("slurm")
class SlurmExecutor:
    """One SLURM array job per plan through submitit. With ``wait`` the driver follows
    the tasks and yields their results; without, it prints the job ids and returns: the next
    ``suite run`` finds what finished in the store."""

    name = "slurm"

    def __init__(self, options: EngineOptions):
        self.options, self.partition, self.hours, self.wait = (
            options,
            options.slurm_partition,
            options.slurm_hours,
            options.wait,
        )

    def _executor(self, ctx: Context, n: int, name: str, after: str | None = None):
        try:
            import submitit
        except ImportError:
            raise SuiteError("--executor slurm needs submitit: pip install 'greg-suite[slurm]'") from None
        ex = submitit.AutoExecutor(folder=Path(ctx.runs_dir) / ".slurm" / "%j")
        if ex.cluster != "slurm":  # submitit would fall back to running the tasks here: not what was asked
            raise SuiteError("--executor slurm: no SLURM here (sbatch not found): run on a SLURM login node")
        ex.update_parameters(
            name=name,
            timeout_min=max(1, round(self.hours * 60)),
            cpus_per_task=ctx.threads,
            gpus_per_node=1 if ctx.gpu else 0,
            slurm_partition=self.partition,
            slurm_array_parallelism=max(1, n),
            slurm_additional_parameters={"dependency": after} if after else None,
            slurm_setup=[f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"],
        )
        return ex

    def _array(self, ctx: Context, fn, name: str, items: list, after: str | None = None) -> list:
        """One array job of ``fn(ctx, item)`` tasks, each requeued on preemption or timeout."""
        task = _checkpointable()()
        ex = self._executor(ctx, len(items), name, after)
        return ex.map_array(task, [fn] * len(items), [ctx] * len(items), items)

    def _baselines_then(self, ctx: Context, runner: Runner, todo: list[Job]) -> tuple[str | None, list[str]]:
        """Submit the baselines first. Waiting: wait for them here; else the jobs' array starts
        after them (``afterok``), so no job's allocation idles on the baseline's lock."""
        bases = _baseline_jobs(runner, todo)
        if not bases:
            return None, []
        submitted = self._array(ctx, train_baseline, "suite-baseline", bases)
        ids = sorted({s.job_id.split("_")[0] for s in submitted})
        if self.wait:
            print(f"slurm: baseline job {', '.join(ids)} first", flush=True)
            for s in submitted:
                try:
                    s.result()
                except Exception as e:  # submitit raises the task's error or a FailedJobError
                    raise SuiteError(
                        f"the baseline failed in slurm job {s.job_id}: {' '.join(str(e).splitlines()[-1:])}"
                    ) from None
            return None, ids
        return "afterok:" + ":".join(ids), ids

    def results(self, runner: Runner, jobs: list[Job], workers) -> Iterator[JobResult]:
        import submitit

        todo = yield from _stored_first(runner, jobs)
        if not todo:
            return
        ctx = context(runner, self.options)
        after, base_ids = self._baselines_then(ctx, runner, todo)
        submitted = self._array(ctx, run_job, "suite-job", todo, after)
        ids = sorted({s.job_id.split("_")[0] for s in submitted})
        print(
            f"slurm: submitted {len(todo)} job(s) as array {', '.join(ids)}"
            f"{' after baseline job ' + ', '.join(base_ids) if after else ''}; "
            f"logs in {Path(ctx.runs_dir) / '.slurm'}",
            flush=True,
        )
        if not self.wait:
            print(
                "slurm: not waiting (--wait follows them): 'squeue --me' shows them; run the same 'suite run' "
                "again to collect finished jobs (stored ones are never submitted again)",
                flush=True,
            )
            return
        of = {s.job_id: j for s, j in zip(submitted, todo)}
        k = len(jobs) - len(todo)  # the stored ones came first
        for s in submitit.helpers.as_completed(submitted, poll_frequency=2):
            job = of[s.job_id]
            try:
                jr = s.result()
            except Exception as e:  # submitit raises the task's error or a FailedJobError
                jr = _failed(job, runner, f"slurm job {s.job_id} failed: {' '.join(str(e).splitlines()[-1:])}")
            k += 1
            _announce(k, len(jobs), jr, f"slurm job {s.job_id}")
            yield jr

    def search(self, ctx: Context, spec, storage: str, study: str, parallel: int) -> None:
        submitted = self._array(ctx, _search_item, "suite-search", [(spec, storage, study, i) for i in range(parallel)])
        ids = sorted({s.job_id.split("_")[0] for s in submitted})
        print(f"slurm: {parallel} search worker(s) as array {', '.join(ids)}", flush=True)
        if not self.wait:
            print(
                "slurm: not waiting (--wait follows them): run 'suite search' with the same study later for its report",
                flush=True,
            )
            return
        for s in submitted:
            try:
                s.result()
            except Exception as e:
                raise SuiteError(f"search worker {s.job_id} failed: {' '.join(str(e).splitlines()[-1:])}") from None


def _search_item(ctx: Context, item: tuple) -> int:
    """A search worker as an array task (map_array passes one item per task)."""
    return search_worker(ctx, *item)


def make(options: EngineOptions) -> Executor:
    """The executor the options name."""
    return EXECUTORS.get(options.kind)(options)
