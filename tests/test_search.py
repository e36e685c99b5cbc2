"""`suite search`: a real tiny study, resume, two workers, honest objective, bad input."""

import contextlib
import io
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from suite.errors import SuiteError
from suite.running import search
from suite.running.runner import Runner, load_data
from suite.spec.settings import get_setting

TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")
BASE = [
    sys.executable,
    "-m",
    "suite.cli",
    "search",
    "--setting",
    TINY,
    "--method",
    "greg1",
    "--smoke",
    "--sampler",
    "random",
]


def run(args, check=0):
    """``args`` (``python -m suite.cli ...``) run in this process: exit code, stdout and stderr."""
    from types import SimpleNamespace

    from suite.cli.commands import main

    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args[3:]])
    finally:
        torch.set_num_threads(threads)  # a run sets this process's threads to its share
    assert check is None or code == check, out.getvalue() + err.getvalue()
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _default_study() -> str:
    """The study a search without --precision fills: named by the default numerics (fp32)."""
    from suite.spec.settings import get_setting
    from suite.training.numerics_default import resolve

    return search.study_name(get_setting(TINY), "greg1", resolve(None, None, False, torch.device("cpu")))


def _trials(storage, name=None):
    return optuna.load_study(study_name=name or _default_study(), storage=storage).trials


@pytest.mark.data
def test_study_runs_resumes_and_feeds_run_best(tmp_path):
    runs = tmp_path / "runs"
    space = tmp_path / "space.json"  # a range around the tiny setting's own increment, 0.1
    space.write_text(json.dumps({"penalty_increment": [0.01, 0.5, "log"]}))
    out = run(BASE + ["--trials", "3", "--runs-dir", str(runs), "--space", str(space)]).stdout
    storage = f"sqlite:///{runs.resolve()}/search.db"
    trials = _trials(storage)
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    assert "best trial" in out and "validation top-1" in out and "own_iters" in out
    # the defaults are trial 0, so the search is compared with them on the same split
    assert trials[0].user_attrs.get("defaults") and not any(t.user_attrs.get("defaults") for t in trials[1:])
    assert trials[0].params == {"penalty_increment": 0.1, "penalty_ceiling": 1.0}
    assert "the method's defaults (trial 0)" in out
    for t in trials:  # each trial is a stored run, scored on validation, test kept aside
        result = json.loads((Path(t.user_attrs["run"]) / "result.json").read_text())
        assert result["eval_split"] == "val" and t.value == result["val_top1"]
        assert t.user_attrs["test_top1"] == result["top1"]
        assert search._own_iters(t) == result["budget"]["own_iters"] > 0  # shown in the trial table
    run(BASE + ["--trials", "4", "--runs-dir", str(runs), "--space", str(space)])  # continues: adds one, keeps three
    trials = _trials(storage)
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    run(
        [
            sys.executable,
            "-m",
            "suite.cli",
            "run",
            "--setting",
            TINY,
            "--methods",
            "greg1",
            "--smoke",
            "--runs-dir",
            str(runs),
            "--hparams",
            "best",
        ]
    )
    best = max(trials, key=lambda t: t.value)
    stored = [json.loads(f.read_text()) for f in runs.glob("tiny-fmnist/greg1/*/result.json")]
    tuned = [r for r in stored if r["hparams_source"].startswith(f"tuned: study {_default_study()}, 4 trials")]
    assert len(tuned) == 1 and tuned[0]["eval_split"] == "test"
    assert tuned[0]["hparams"]["penalty_increment"] == best.params["penalty_increment"]


@pytest.mark.data
def test_two_workers_share_a_journal_study(tmp_path):
    runs = tmp_path / "runs"
    journal = tmp_path / "study.journal"
    space = tmp_path / "space.json"  # holds the tiny setting's defaults, so the study is seeded with them
    space.write_text(json.dumps({"penalty_increment": [0.01, 0.5, "log"]}))
    cmd = BASE + ["--trials", "4", "--runs-dir", str(runs), "--storage", f"journal:{journal}", "--space", str(space)]
    procs = [
        subprocess.Popen(cmd + ["--seed", str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in (1, 2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    trials = optuna.load_study(
        study_name=_default_study(), storage=JournalStorage(JournalFileBackend(str(journal)))
    ).trials
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert 4 <= len(finished) <= 5  # the cap is checked after each trial: a worker may finish one in flight
    assert len({t.number for t in trials}) == len(trials)
    assert sum(bool(t.user_attrs.get("defaults")) for t in trials) == 1  # seeded once, under the lock


@pytest.mark.data
def test_objective_is_validation_accuracy_not_test(tmp_path):
    """Scramble the test labels: the sampler must still see sensible (validation) accuracies."""
    import torch

    setting = get_setting(TINY)
    data = load_data(setting, None).with_validation(setting.val_size, seed=0)
    data.test = type(data.test)(data.test.x, (data.test.y + 1) % 10)  # every test label now wrong
    runner = Runner(setting, data, tmp_path, torch.device("cpu"))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    search.run_search(
        search.SearchSpec(setting, "greg1", 1, search.load_space(None, "greg1"), smoke=True), runner, study
    )
    trial = study.trials[0]
    result = json.loads((Path(trial.user_attrs["run"]) / "result.json").read_text())
    assert trial.value == result["val_top1"] and trial.user_attrs["test_top1"] == result["top1"]
    assert result["top1"] < 20 < trial.value  # had the objective read test, it would be below 20


@pytest.mark.parametrize(
    "space,fragment",
    [
        ({"nonsense": [0, 1]}, "no parameter 'nonsense'"),
        ({"penalty_increment": [1e-3, 1e-5, "log"]}, "empty or inverted"),
        ({"penalty_increment": [0, 1e-3, "log"]}, "must be positive"),
        ({"penalty_increment": "wide"}, "must be [low, high]"),
        ([], "a JSON list, not a record; write a JSON object"),  # valid JSON: was an AttributeError
        (None, "a JSON null, not a record; write a JSON object"),
        ('{"penalty_increment": [1e-5, ', "truncated JSON; write a JSON object"),
        ("", "empty; write a JSON object"),
        (b"\xff\xfe{", "not text (not UTF-8)"),  # was a UnicodeDecodeError
        ('{"penalty_increment": [1e-5, 1e-3], "penalty_increment": [1e-6, 1e-2]}', "a key given twice"),
    ],
)
def test_bad_space_files(tmp_path, space, fragment):
    f = tmp_path / "space.json"
    f.write_bytes(
        space if isinstance(space, bytes) else (space if isinstance(space, str) else json.dumps(space)).encode()
    )
    with pytest.raises(SuiteError, match=re.escape(fragment)):
        search.load_space(str(f), "greg1")


@pytest.mark.data
def test_bad_storage_and_foreign_study(tmp_path):
    runs = tmp_path / "runs"
    p = run(BASE + ["--trials", "1", "--runs-dir", str(runs), "--storage", "nosuchdb://x"], check=2)
    assert "cannot open storage" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="mine", storage=storage)
    study.set_user_attr("setting", "fmnist-cnn4")
    study.set_user_attr("method", "l1")
    p = run(BASE + ["--trials", "1", "--runs-dir", str(runs), "--storage", storage, "--study", "mine"], check=2)
    assert "was made for l1" in p.stderr
    assert not runs.exists() or not any(runs.rglob("result.json"))


def test_untagged_study_adopted_only_while_empty(tmp_path):
    """A worker that sees a study another worker just created (not tagged yet) joins it; a foreign
    untagged study with trials is refused."""
    setting = get_setting(TINY)
    storage = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="fresh", storage=storage)  # created, tags not written yet
    study = search.get_study(storage, "fresh", setting, "greg1")
    assert study.user_attrs["method"] == "greg1" and study.user_attrs["setting"] == setting.name
    foreign = optuna.create_study(study_name="foreign", storage=storage)
    foreign.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(SuiteError, match="was made for None"):
        search.get_study(storage, "foreign", setting, "greg1")


def test_a_study_holds_one_precision(tmp_path):
    """A bf16 search gets its own default study; a study tagged before the precision options (or
    made in fp32) refuses bf16 trials, and a bf16 one fp32 trials; reading a best trial
    (``suite run --hparams best``) takes any."""
    from suite.training.numerics import Numerics

    setting = get_setting(TINY)
    bf16 = Numerics("bf16", channels_last=True)
    assert search.study_name(setting, "greg1") == search.study_name(setting, "greg1", Numerics()) == "tiny-fmnist-greg1"
    assert search.study_name(setting, "greg1", bf16) == "tiny-fmnist-greg1-bf16-channels-last"
    storage = f"sqlite:///{tmp_path}/s.db"
    old = optuna.create_study(study_name="old", storage=storage)
    for k, v in {"setting": setting.name, "method": "greg1", "ratios": setting.ratios}.items():
        old.set_user_attr(k, v)  # as tagged before these options: fp32
    assert search.get_study(storage, "old", setting, "greg1", numerics=Numerics()).study_name == "old"
    with pytest.raises(SuiteError, match="holds trials in fp32, not bf16, channels-last"):
        search.get_study(storage, "old", setting, "greg1", numerics=bf16)
    made = search.get_study(storage, "new", setting, "greg1", numerics=bf16)
    assert made.user_attrs["precision"] == "bf16" and made.user_attrs["channels_last"] is True
    with pytest.raises(SuiteError, match="holds trials in bf16, channels-last, not fp32"):
        search.get_study(storage, "new", setting, "greg1", numerics=Numerics())
    assert search.get_study(storage, "new", setting, "greg1", create=False).study_name == "new"


@pytest.mark.parametrize("name", ["greg1", "greg2"])
def test_search_never_proposes_a_schedule_the_cap_cuts_short(name):
    """Issue 13: every proposal reaches its ceiling and stabilizes within the setting's cap (the
    old space allowed 10^6 updates where the CPU settings stop at 20,000 iterations)."""
    from methods import registry
    from methods.greg import GRegHparams

    method = registry.get(name)
    base = GRegHparams(update_interval=1, stabilize_iters=500)  # fmnist-cnn4's budget
    space = {"penalty_increment": (1e-5, 1e-3, True), "penalty_ceiling": (0.1, 10.0, True)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    planned = []
    for _ in range(200):
        trial = study.ask()
        planned.append(method.planned_iters(method.suggest(trial, base, space, max_iters=20_000)))
        study.tell(trial, 0.0)
    assert max(planned) <= 20_000 and min(planned) < 5_000  # the whole fitting range is reachable
    # the same space drawn independently (the old way): a good share of proposals would be capped
    old_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    old = [method.planned_iters(GRegHparams.suggest(old_study.ask(), base=base, space=space)) for _ in range(200)]
    assert sum(p > 20_000 for p in old) > 50
    with pytest.raises(SuiteError, match="no schedule of this search space fits"):
        method.suggest(study.ask(), base, space, max_iters=400)  # 500 iterations of stabilization alone


_DYING_WORKER = """
import sys, time, optuna
storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1)
study = optuna.load_study(study_name="s", storage=storage)
study.optimize(lambda trial: time.sleep(3600), n_trials=1)  # runs the waiting trial first, if any
"""


def test_a_dead_workers_trial_is_failed_and_retried_once(tmp_path, monkeypatch):
    """The storage `suite search --storage sqlite:///...` opens: a worker killed (SIGKILL) mid-trial
    leaves its trial RUNNING; once its heartbeat is older than the grace period, the next worker's
    storage fails it and queues it again, once: the retry, killed too, is failed and not queued
    (Optuna's heartbeat and retry callback, grace shortened from 120 s to 1 s for the test)."""
    monkeypatch.setattr(search, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(search, "GRACE_SECONDS", 1)
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=search.open_storage(url))

    def beating() -> bool:
        running = [t._trial_id for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
        with contextlib.closing(sqlite3.connect(tmp_path / "study.db")) as db:
            beats = {row[0] for row in db.execute("SELECT trial_id FROM trial_heartbeats")}
        return any(t in beats for t in running)

    def kill_a_worker_mid_trial() -> None:
        worker = subprocess.Popen([sys.executable, "-c", _DYING_WORKER, url])
        try:
            deadline = time.time() + 60
            while not beating():  # its trial runs and has recorded a heartbeat (Optuna's own table)
                assert worker.poll() is None and time.time() < deadline, "the worker never started its trial"
                time.sleep(0.05)
        finally:
            worker.kill()
            worker.wait()
        time.sleep(2.5)  # its last heartbeat is now older than the grace period

    kill_a_worker_mid_trial()
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING], states
    retry = study.trials[1]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0

    kill_a_worker_mid_trial()  # the next worker takes the waiting retry, and dies too
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL] * 2, states  # retried once, never left RUNNING
