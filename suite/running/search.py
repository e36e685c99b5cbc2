"""Optuna studies around prune + surgery + fine-tune, scored on a validation split.

Honest by construction: the study's data is the training set minus a seeded validation split
(the baseline of a search is trained without those images too), every trial's accuracy during
and after fine-tuning is read on that split, and the test top-1 is stored with the trial but
never returned to the sampler. Each trial is a stored run, so a re-run study finds them.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from methods import registry
from suite.errors import SuiteError
from suite.running.runner import Runner
from suite.spec.plan import Job, resolve_hparams
from suite.spec.settings import Setting
from suite.store.files import KEY_TWICE, file_lock, read_json_record
from suite.training.numerics import FP32, Numerics

SAMPLERS = ("tpe", "random", "grid")
# A running trial's worker proves it is alive this often; a trial silent for the grace period (its
# worker was killed, its node lost) is marked failed by the next worker and retried once, instead
# of staying RUNNING forever. Only Optuna's RDB storages have this heartbeat.
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120
optuna.logging.set_verbosity(optuna.logging.WARNING)  # the suite prints its own trial lines
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def default_storage(runs_dir: Path) -> str:
    return f"sqlite:///{Path(runs_dir).resolve()}/search.db"


def study_name(setting: Setting, method: str, numerics: Numerics = FP32) -> str:
    """SETTING-METHOD, with the precision and layout appended when they are not fp32/contiguous/eager
    (``SETTING-METHOD-bf16-channels-last``): trials in another precision are other runs."""
    suffix = "" if numerics == FP32 else "-" + numerics.label().replace(", ", "-")
    return f"{setting.name}-{method}{suffix}"


def open_storage(url: str):
    """An Optuna storage: any RDB URL (sqlite:///, postgresql://...) or ``journal:PATH`` (a journal
    file that many processes, or machines on a shared disk, can write)."""
    try:
        if url.startswith("journal:"):
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    except Exception as e:  # optuna/sqlalchemy raise many types for a bad URL
        raise SuiteError(
            f"cannot open storage {url!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
            f"use sqlite:///PATH.db, postgresql://..., or journal:PATH"
        ) from None


def load_space(path: str | None, method: str) -> dict[str, tuple]:
    """The method's search space, with ranges from ``path`` (JSON {param: [low, high] or
    [low, high, "log"]}) replacing or narrowing it."""
    cls = registry.get(method).Hparams
    space = dict(cls.space())
    if path is None:
        if not space:
            raise SuiteError(f"method {method} has no search space (no searchable hyperparameters)")
        return space
    given, problem = read_json_record(Path(path))  # what is wrong with the file, in the store's words
    if problem is not None and problem.startswith(KEY_TWICE):
        raise SuiteError(f"--space {path}: {problem}: keep one (JSON would take the last in silence)")
    if problem is not None:
        raise SuiteError(
            f"--space {path}: {'no such file' if problem == 'missing' else problem}; "
            f'write a JSON object {{param: [low, high] or [low, high, "log"]}}'
        )
    fields = cls().to_dict()
    for name, rng in given.items():
        if name not in fields:
            raise SuiteError(f"--space {path}: {method} has no parameter {name!r}; known: {', '.join(fields)}")
        if not (isinstance(rng, list) and len(rng) in (2, 3) and all(isinstance(v, (int, float)) for v in rng[:2])):
            raise SuiteError(f'--space {path}: {name} must be [low, high] or [low, high, "log"]')
        low, high, log = rng[0], rng[1], len(rng) == 3 and rng[2] == "log"
        if not low < high:
            raise SuiteError(f"--space {path}: {name} range [{low}, {high}] is empty or inverted")
        if log and low <= 0:
            raise SuiteError(f"--space {path}: {name} log range must be positive, got low={low}")
        space[name] = (low, high, log)
    return space


def make_sampler(kind: str, seed: int, space: dict):
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":  # low, middle (geometric when log) and high of every range
        grid = {}
        for name, (low, high, log) in space.items():
            mid = math.sqrt(low * high) if log else (low + high) / 2
            grid[name] = sorted({low, type(low)(mid) if isinstance(low, int) else mid, high})
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise SuiteError(f"unknown sampler {kind!r}; use one of {', '.join(SAMPLERS)}")


def _creation_lock(url: str):
    """A file lock beside a local storage (SQLite file or journal) so that workers starting together
    create, tag and seed a new study once. Remote storages: start the first worker alone."""
    for prefix in ("journal:", "sqlite:///"):
        if url.startswith(prefix):
            # not PATH.lock: Optuna's journal backend takes that name for its own lock and
            # deletes it as stale after 30 s
            return file_lock(Path(url[len(prefix) :] + ".create-lock"))
    return contextlib.nullcontext()


def default_params(setting: Setting, method: str, space: dict) -> dict | None:
    """The method's defaults for this setting, restricted to the searched parameters; None when a
    default lies outside a searched range (the trial would not belong to the space)."""
    base = resolve_hparams(setting, method, None)  # already checked and serialised by the class
    params = {k: base[k] for k in space}
    return params if all(low <= params[k] <= high for k, (low, high, _) in space.items()) else None


def get_study(
    storage_url: str,
    name: str,
    setting: Setting,
    method: str,
    sampler=None,
    create: bool = True,
    space: dict | None = None,
    numerics: Numerics | None = None,
):
    """Load the study, or create it tagged with its setting and method; refuse a study made for others.

    A new study gets the method's defaults as its first trial (when ``space`` is given and holds
    them, and the sampler is not a grid), so the search is measured against the defaults on the
    same validation split. An untagged study that already holds trials was made outside the suite
    and is refused. ``numerics`` (a search adding trials): the study must have been made in that
    precision and layout (studies tagged before these options: fp32); None (reading a best trial
    for ``suite run --hparams best``): any.
    """
    storage = open_storage(storage_url)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name not in names and not create:
        raise SuiteError(
            f"no study {name!r} in {storage_url}: run 'suite search --setting {setting.name} "
            f"--method {method}' first, or pass --study/--storage"
        )
    want = {"setting": setting.name, "method": method, "ratios": setting.ratios}
    with _creation_lock(storage_url):
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            sampler=sampler,
            pruner=optuna.pruners.MedianPruner(n_warmup_steps=1),
            load_if_exists=True,
        )
        tags = study.user_attrs
        if not tags and not study.get_trials(deepcopy=False):
            for k, v in {**want, "metric": "validation top-1", **(numerics or FP32).record()}.items():
                study.set_user_attr(k, v)
            tags = study.user_attrs
            defaults = default_params(setting, method, space) if space is not None else None
            if defaults is not None and not isinstance(sampler, optuna.samplers.GridSampler):
                study.enqueue_trial(defaults, user_attrs={"defaults": True})
    if any(tags.get(k) != v for k, v in want.items()):
        raise SuiteError(
            f"study {name!r} in {storage_url} was made for {tags.get('method')} on "
            f"{tags.get('setting')} ratios {tags.get('ratios')}, not {method} on {setting.name} "
            f"ratios {setting.ratios}: pass another --study"
        )
    if numerics is not None and Numerics.from_record(tags) != numerics:
        raise SuiteError(
            f"study {name!r} in {storage_url} holds trials in {Numerics.from_record(tags).label()}, not "
            f"{numerics.label()}: pass another --study (or the study's precision options)"
        )
    return study


@dataclass
class SearchSpec:
    setting: Setting
    method: str
    trials: int
    space: dict
    sampler: str = "tpe"
    seed: int = 0
    smoke: bool = False
    timeout: float | None = None
    numerics: Numerics = FP32


def run_search(spec: SearchSpec, runner: Runner, study: optuna.Study) -> optuna.Study:
    """Add trials until the study holds ``spec.trials`` finished ones (across all workers)."""
    method = registry.get(spec.method)
    base = method.Hparams.from_dict(resolve_hparams(spec.setting, spec.method, None))
    cap = spec.setting.prune.max_iters  # a smoke trial is cut shorter, but its schedule must fit the real cap

    def objective(trial: optuna.Trial) -> float:
        hp = method.suggest(trial, base=base, space=spec.space, max_iters=cap)
        job = Job(
            spec.setting,
            spec.method,
            hp.to_dict(),
            seed=spec.seed,
            smoke=spec.smoke,
            hparams_source=f"search trial {trial.number} of study {study.study_name}",
            numerics=spec.numerics,
        )

        def report(row):
            epoch = int(round(row["epoch"]))
            trial.report(row["val_top1"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation top-1 {row['val_top1']:.2f} at epoch {epoch}")

        runner.on_epoch_end = report
        try:
            jr = runner.run(job, propagate=(optuna.TrialPruned,))
        finally:
            runner.on_epoch_end = None
        r = jr.result
        trial.set_user_attr("run", str(jr.folder))
        if r["status"] == "failed":
            trial.set_user_attr("error", r["error"])
            print(f"trial {trial.number}: failed ({r['error']})", flush=True)
            return math.nan  # Optuna records the trial as failed; the study goes on
        trial.set_user_attr("test_top1", r["top1"])  # stored for the report, never the objective
        print(
            f"trial {trial.number}: validation top-1 {r['val_top1']:.2f}  {json.dumps(trial.params)}"
            f"{'  (cached run)' if jr.cached else ''}",
            flush=True,
        )
        return r["val_top1"]

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    remaining = spec.trials - len(study.get_trials(deepcopy=False, states=done))
    if remaining > 0:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=spec.timeout,
            catch=(),
            callbacks=[optuna.study.MaxTrialsCallback(spec.trials, states=done)],
        )
    return study


def _own_iters(trial: optuna.trial.FrozenTrial) -> int | None:
    """The regularization iterations the trial's stored run spent (read from its result.json):
    hyperparameters that regularize longer also train longer, and the reader should see that."""
    f = Path(trial.user_attrs.get("run", "")) / "result.json"
    if not f.is_file():
        return None
    budget = json.loads(f.read_text()).get("budget", {})
    return budget.get("own_iters", budget.get("own_iters"))


def report(study: optuna.Study) -> str:
    """Best parameters, the table of trials, and parameter importances."""
    import pandas as pd

    rows = []
    for t in study.trials:
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                **t.params,
                "own_iters": _own_iters(t),
                "val_top1": t.value,
                "test_top1": t.user_attrs.get("test_top1"),
                "defaults": "yes" if t.user_attrs.get("defaults") else "",
                "error": t.user_attrs.get("error", ""),
            }
        )
    lines = [f"study {study.study_name}: {len(rows)} trials, objective = validation top-1"]
    if rows:
        table = pd.DataFrame(rows).astype({"own_iters": "Int64"})  # whole iterations, <NA> for pruned trials
        lines.append(table.to_string(index=False))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        lines.append(
            f"best trial {best.number}: validation top-1 {best.value:.2f} "
            f"(test top-1 {best.user_attrs.get('test_top1', float('nan')):.2f}, not used to choose); "
            f"params {json.dumps(best.params)}"
        )
        for d in (t for t in complete if t.user_attrs.get("defaults")):
            lines.append(
                f"the method's defaults (trial {d.number}): validation top-1 {d.value:.2f} "
                f"(test top-1 {d.user_attrs.get('test_top1', float('nan')):.2f}); best minus defaults "
                f"on validation: {best.value - d.value:+.2f} points"
            )
    if len(complete) >= 2:
        try:
            imp = optuna.importance.get_param_importances(study)
            lines.append("parameter importances: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()))
        except (RuntimeError, ValueError) as e:
            lines.append(f"parameter importances: not computable ({e})")
    return "\n".join(lines)


def best_hparams(storage_url: str, name: str, setting: Setting, method: str) -> tuple[dict, str]:
    """The best trial's hyperparameters (over the method's resolved defaults) and a provenance line."""
    study = get_study(storage_url, name, setting, method, create=False)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise SuiteError(f"study {name!r} has no completed trial yet: run more 'suite search' trials")
    params = study.best_trial.params
    return params, f"tuned: study {name}, {len(complete)} trials, validation top-1"
