"""--executor ray and slurm against the real engines on this machine, compared with --executor local.

Ray: a head and a second worker node started with ``ray start`` on loopback (1 CPU each: two worker
processes of one torch thread on this 2-core machine), torn down after. SLURM: Debian's munge,
slurmctld and slurmd started on loopback by ci/slurm-local. Everything compared for equality runs
on CPU with one torch thread, where training is bit-exact whatever process runs it.
"""

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch
from conftest import needs

from suite.cli.commands import main
from suite.spec.plan import plan
from suite.spec.settings import get_setting

ROOT = Path(__file__).resolve().parent.parent
TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")
GRID = [
    "run",
    "--setting",
    TINY,
    "--methods",
    "l1,random",
    "--seeds",
    "2",
    "--smoke",
    "--device",
    "cpu",
    "--threads",
    "1",
]
# what a run's result is; wall times, latencies and finishing times differ between any two runs
SAME = (
    "setting",
    "method",
    "seed",
    "status",
    "top1",
    "baseline_top1",
    "baseline_key",
    "params",
    "flops",
    "speedup",
    "acc_before_removal",
    "acc_after_removal",
    "own_iters",
    "finetune_epochs",
    "samples",
    "train_macs",
    "hparams",
    "data_fingerprint",
    "training_code",
)


def _cli(*args) -> int:
    threads = torch.get_num_threads()
    try:
        return main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)  # a run sets this process's threads


def _results(runs: Path) -> dict:
    """{run folder name: what its result is} for every stored run (the folder is the job's identity)."""
    out = {}
    for f in runs.glob("tiny-fmnist/*/*/result.json"):
        r = json.loads(f.read_text())
        out[f.parent.name] = {
            k: r.get(k)
            for k in (
                "top1",
                "top5",
                "acc_before_removal",
                "acc_after_removal",
                "params",
                "flops",
                "pruned_filters",
                "status",
                "seed",
                "method",
            )
        }
        out[f.parent.name]["budget"] = {k: v for k, v in r["budget"].items()}
    return out


def _table(runs: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert _cli("results", "--runs-dir", runs, "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    return sorted(({k: r[k] for k in SAME} for r in rows), key=lambda r: (r["method"], r["seed"]))


@pytest.fixture(scope="module")
@needs("data")
def local_grid(tmp_path_factory):
    runs = tmp_path_factory.mktemp("local")
    assert _cli(*GRID, "--runs-dir", runs) == 0
    return runs


def test_jobs_and_contexts_pickle():
    from suite.running.executors import Context
    from suite.spec.plan import Budget
    from suite.training.numerics import Numerics

    setting = get_setting(TINY)
    bf16 = Numerics("bf16", channels_last=True)
    jobs = plan(setting, ["l1", "greg1"], [0, 1], train_size=32, budgets=[Budget("2x", 9_216)])
    for job in jobs + plan(setting, ["l1"], [0], train_size=32, numerics=bf16):
        back = pickle.loads(pickle.dumps(job))
        assert back == job and back.identity("fp") == job.identity("fp")
    assert pickle.loads(pickle.dumps(jobs[-1])).numerics == Numerics()
    for ctx in (Context(setting, "/runs", threads=2), Context(setting, "/runs", numerics=bf16)):
        assert pickle.loads(pickle.dumps(ctx)) == ctx


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["run", "--ray-address", "127.0.0.1:1"], "--ray-address is an option of another executor"),
        (["run", "--executor", "ray", "--wait"], "--wait is an option of another executor"),
        (["run", "--executor", "slurm", "--slurm-time", "0"], "--slurm-time 0.0: give the hours"),
        (["run", "--executor", "slurm", "--slurm-time", "nan"], "--slurm-time nan"),
        (["search", "--method", "greg1", "--parallel", "2"], "--parallel needs --executor ray or slurm"),
        (["search", "--method", "greg1", "--executor", "ray", "--parallel", "0"], "--parallel 0: must be >= 1"),
        (
            ["search", "--method", "greg1", "--executor", "ray", "--storage", "journal:/tmp/x.journal"],
            "a journal file has no heartbeat",
        ),
    ],
)
def test_bad_executor_options_are_one_line_exit_2(args, fragment, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _cli(*args, "--setting", TINY, "--runs-dir", runs) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not runs.exists()


# ---------------------------------------------------------------------------- ray
def _ray(*args, env=None, check=True):
    ray_bin = Path(sys.executable).parent / "ray"
    return subprocess.run(
        [str(ray_bin), *map(str, args)], capture_output=True, text=True, env=env, check=check, timeout=600
    )


def _kill_session(temp_dir: str) -> None:
    """End every process of this test's Ray cluster, found by its own temp dir (never by name)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if temp_dir in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


@pytest.fixture(scope="module")
@needs("cluster", "alone")
def ray_cluster():
    """A Ray head and a second worker node on loopback, 1 CPU each; yields the head's address."""
    # A token of this cluster's own, set for the nodes and this process alike (before Ray is imported:
    # it reads the mode once). Ray's GCS and raylet listen on every interface whatever
    # --node-ip-address says, so the token keeps anything off this machine out; and since Ray 2.59
    # `ray start --head` turns token auth on by itself when ~/.ray/auth_token exists (any earlier
    # ray.init writes one), refusing clients not told the mode (ray-project/ray#64755).
    mp = pytest.MonkeyPatch()
    for key, value in {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}.items():
        mp.setenv(key, value)
    pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[dev]' (ci/setup does)")
    import ray

    temp_dir = f"/tmp/rt-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths must fit in 107 bytes
    port = 20000 + os.getpid() % 20000
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUITE_CHECKPOINT_EVERY": "5", "RAY_USAGE_STATS_ENABLED": "0"}
    common = [
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(80 * 2**20),
        "--disable-usage-stats",
    ]
    try:
        head = _ray(
            "start",
            "--head",
            "--port",
            port,
            "--include-dashboard",
            "false",
            "--temp-dir",
            temp_dir,
            *common,
            env=env,
            check=False,
        )
        if head.returncode != 0:
            pytest.fail(
                f"ray start --head failed (on a machine starved of CPU Ray's agents miss the raylet's "
                f"15 s start-up deadline: ray-project/ray#65983): {head.stderr[-800:]}"
            )
        node = _ray("start", "--address", f"127.0.0.1:{port}", *common, env=env, check=False)
        if node.returncode != 0:
            pytest.fail(f"ray start (second node) failed: {node.stderr[-800:]}")
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _kill_session(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        mp.undo()


@pytest.fixture
def on_ray(ray_cluster, monkeypatch):
    monkeypatch.setenv("SUITE_CHECKPOINT_EVERY", "5")
    return ["--executor", "ray", "--ray-address", ray_cluster]


def test_ray_grid_equals_local_and_trains_the_baseline_once(on_ray, local_grid, tmp_path, capsys):
    import ray

    runs = tmp_path / "runs"
    assert _cli(*GRID, *on_ray, "--runs-dir", runs) == 0
    out = capsys.readouterr().out
    assert out.count("(ray task)") == 4 and len(ray.nodes()) == 2, out
    assert _table(runs, capsys) == _table(local_grid, capsys)
    assert _results(runs) == _results(local_grid)  # same folders (identities), same numbers
    assert len(list(runs.glob("baselines/tiny-fmnist/*/model.pt"))) == 1
    assert _cli(*GRID, *on_ray, "--runs-dir", runs) == 0  # again: found in the store, no task
    out = capsys.readouterr().out
    assert out.count("(stored)") == 4 and "(ray task)" not in out, out


def _runner(runs: Path):
    from suite.running.runner import Runner, load_data

    setting = get_setting(TINY)
    return Runner(setting, load_data(setting, None), runs, torch.device("cpu"))


def test_ray_job_submitted_twice_runs_once(on_ray, tmp_path):
    from suite.running.executors import EngineOptions, RayExecutor

    runner = _runner(tmp_path)
    job = plan(runner.setting, ["l1"], [5], train_size=32, smoke=True)[0]
    engine = EngineOptions("ray", ray_address=on_ray[-1], threads=1)  # what the CLI hands the executors
    results = list(RayExecutor(engine).results(runner, [job, job], workers=None))
    assert sorted(jr.cached for jr in results) == [False, True]  # one computed it, the other found it
    assert results[0].folder == results[1].folder and results[0].result["status"] == "smoke"
    assert results[0].result["top1"] == results[1].result["top1"]
    assert len(list(tmp_path.glob("tiny-fmnist/l1/*/result.json"))) == 1


def _holder(lock: Path) -> int | None:
    """The pid of the process holding ``lock`` open (the job's worker), read from /proc."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if any(os.readlink(fd) == str(lock) for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
            except OSError:
                pass
    return None


def test_ray_worker_killed_mid_job_is_retried_and_resumes_to_the_same_result(on_ray, tmp_path, capsys):
    """SIGKILL to the Ray worker running a job while it fine-tunes: Ray runs the task again, the new
    worker resumes from the job's checkpoint, and the result equals an uninterrupted local run."""
    runs, ref = tmp_path / "ray", tmp_path / "local"
    job = ["run", "--setting", TINY, "--methods", "l1", "--device", "cpu", "--threads", "1"]
    killed = []

    def kill_when_fine_tuning():
        deadline = time.time() + 1800
        while time.time() < deadline and not killed:
            for ckpt in runs.glob("tiny-fmnist/l1/*/finetune.ckpt"):
                pid = _holder(ckpt.parent / ".lock")
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_fine_tuning, daemon=True)
    killer.start()
    assert _cli(*job, *on_ray, "--runs-dir", runs) == 0, capsys.readouterr()
    killer.join(timeout=5)
    assert killed, "the job finished before a fine-tuning checkpoint was seen"
    shutil.copytree(runs / "baselines", ref / "baselines")  # the same baseline: only the job is compared
    assert _cli(*job, "--runs-dir", ref) == 0
    assert _results(runs) == _results(ref)
    got = next(runs.glob("tiny-fmnist/l1/*/model.pt"))
    want = ref / got.relative_to(runs)
    a, b = torch.load(got, weights_only=True), torch.load(want, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_ray_search_workers_fill_one_study(on_ray, tmp_path, capsys):
    import optuna

    storage = f"sqlite:///{tmp_path}/search.db"
    assert (
        _cli(
            "search",
            "--setting",
            TINY,
            "--method",
            "greg1",
            "--trials",
            "3",
            "--smoke",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--runs-dir",
            tmp_path / "runs",
            "--storage",
            storage,
            "--sampler",
            "random",
            "--parallel",
            "2",
            "--precision",
            "fp32",
            *on_ray,
        )
        == 0
    ), capsys.readouterr()
    study = optuna.load_study(study_name="tiny-fmnist-greg1", storage=storage)  # fp32: no suffix
    states = [t.state for t in study.trials]
    done = states.count(optuna.trial.TrialState.COMPLETE)
    # each worker stops once the study holds 3 finished trials; the other may have started one more
    assert 3 <= done <= 4 and optuna.trial.TrialState.RUNNING not in states, states
    runs = [t.user_attrs["run"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(set(runs)) == len(runs)  # every trial its own stored run: no two workers ran the same point


# ---------------------------------------------------------------------------- slurm
@pytest.fixture(scope="module")
@needs("cluster")
def slurm(tmp_path_factory):
    """A single-node SLURM on loopback (ci/slurm-local); SLURM_CONF points the clients at it."""
    pytest.importorskip("submitit", reason="submitit is not installed: pip install -e '.[dev]' (ci/setup does)")
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(b) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: ci/setup installs Debian's munge, slurmctld, slurmd, slurm-client"
        )
    d = tmp_path_factory.mktemp("slurm")
    # a port of this session's own: two test sessions on one machine must not join each other's cluster
    env = {**os.environ, "SLURM_TEST_PORT": str(16000 + os.getpid() % 1000 * 2)}
    started = subprocess.run(
        [str(ROOT / "ci" / "slurm-local"), "start", str(d)], capture_output=True, text=True, env=env
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"ci/slurm-local could not start SLURM: {started.stderr[-800:]}")
        yield started.stdout.strip()
    finally:
        subprocess.run([str(ROOT / "ci" / "slurm-local"), "stop", str(d)])


def test_slurm_grid_equals_local(slurm, local_grid, tmp_path, monkeypatch, capsys):
    """Submitted without --wait: the baseline job, then the jobs' array chained after it (afterok);
    the store fills; a second 'suite run' finds all four and submits nothing."""
    monkeypatch.setenv("SLURM_CONF", slurm)
    runs = tmp_path / "runs"
    on_slurm = ["--executor", "slurm", "--slurm-partition", "debug", "--slurm-time", "0.5"]
    assert _cli(*GRID, *on_slurm, "--runs-dir", runs) == 0
    out = capsys.readouterr().out
    assert "slurm: submitted 4 job(s) as array" in out and "after baseline job" in out and "not waiting" in out, out
    deadline = time.time() + 1800
    while len(list(runs.glob("tiny-fmnist/*/*/result.json"))) < 4 and time.time() < deadline:
        time.sleep(2)
    time.sleep(2)  # the last result.json is renamed into place last; let its task exit
    assert _cli(*GRID, *on_slurm, "--wait", "--runs-dir", runs) == 0
    out = capsys.readouterr().out
    assert out.count("(stored)") == 4 and "submitted" not in out, out
    assert _table(runs, capsys) == _table(local_grid, capsys)
    assert _results(runs) == _results(local_grid)
    assert len(list(runs.glob("baselines/tiny-fmnist/*/model.pt"))) == 1


def test_slurm_wait_follows_the_jobs(slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", slurm)
    runs = tmp_path / "runs"
    assert (
        _cli(
            "run",
            "--setting",
            TINY,
            "--methods",
            "l1",
            "--smoke",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--executor",
            "slurm",
            "--wait",
            "--slurm-time",
            "0.5",
            "--runs-dir",
            runs,
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "baseline job" in out and out.count("(slurm job ") == 1 and "top-1" in out, out


@pytest.fixture
def slurm_kill_wait(slurm):
    """The test cluster with KillWait 1 s instead of SLURM's 30: a task that is requeued gets SIGTERM,
    which submitit ignores (it checkpoints on its USR2), and slurmd kills it max(KillWait, 5) seconds
    later."""
    conf = Path(slurm)
    before = conf.read_text()
    env = {**os.environ, "SLURM_CONF": slurm}

    def reconfigure(text: str, kill_wait: str) -> None:
        conf.write_text(text)
        subprocess.run(["scontrol", "reconfigure"], env=env, check=True, timeout=60)
        for _ in range(60):
            shown = subprocess.run(["scontrol", "show", "config"], env=env, capture_output=True, text=True).stdout
            if any(line.split() == ["KillWait", "=", kill_wait, "sec"] for line in shown.splitlines()):
                return
            time.sleep(0.5)
        pytest.fail(f"slurmctld did not take KillWait={kill_wait}")

    reconfigure(before + "KillWait=1\n", "1")
    try:
        yield slurm
    finally:
        reconfigure(before, "30")


def _squeue(name: str, state: str) -> list[str]:
    """The ids (``JOB_TASK`` for an array task) of this cluster's jobs called ``name`` in ``state``."""
    out = subprocess.run(["squeue", "-h", "-n", name, "-t", state, "-o", "%i"], capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.cluster
def test_slurm_requeued_job_resumes_from_its_checkpoint_to_the_same_result(
    slurm_kill_wait, tmp_path, monkeypatch, capsys
):
    """``scontrol requeue`` (what a preemption with PreemptMode=REQUEUE does) on a task that is fine-tuning:
    SLURM kills it and runs it again, the new task resumes from the job's checkpoint, the driver
    (--wait) reports it, and the result equals an uninterrupted local run with the same thread count:
    the same top-1 and bit-identical weights. The fine-tuning is 12 epochs (384 iterations, about 14 s on
    an idle machine) so that slurmd's kill, at least 5 s after the requeue, lands inside it."""
    import tomllib

    import tomli_w

    table = tomllib.loads(Path(TINY).read_text())
    table["finetune"]["epochs"] = 12
    table["baseline"]["epochs"] = 1  # trained once, by the local run, and copied: only its time counts
    setting = tmp_path / "tiny-fmnist.toml"
    setting.write_text(tomli_w.dumps(table))
    monkeypatch.setenv("SLURM_CONF", slurm_kill_wait)
    monkeypatch.setenv("SUITE_CHECKPOINT_EVERY", "2")  # inherited by the task through sbatch
    runs, ref = tmp_path / "slurm", tmp_path / "local"
    job = ["run", "--setting", setting, "--methods", "l1", "--device", "cpu", "--threads", "1"]
    assert _cli(*job, "--runs-dir", ref) == 0
    shutil.copytree(ref / "baselines", runs / "baselines")  # the same baseline: only the job is compared
    requeued, errors = [], []

    def requeue_once_checkpointed():
        deadline = time.time() + 600
        try:
            while not requeued and time.time() < deadline:
                running = _squeue("suite-job", "RUNNING")
                if running and any(runs.glob("tiny-fmnist/l1/*/finetune.ckpt")):
                    subprocess.run(["scontrol", "requeue", running[0]], check=True, capture_output=True)
                    requeued.append(running[0])
                time.sleep(0.05)
            # a requeued job may start again only after the credential lifetime (120 s): let it start now
            while requeued and time.time() < deadline:
                if requeued[0] in _squeue("suite-job", "PENDING"):
                    subprocess.run(
                        ["scontrol", "update", f"JobId={requeued[0]}", "StartTime=now"], check=True, capture_output=True
                    )
                    return
                time.sleep(0.2)
        except subprocess.CalledProcessError as e:
            errors.append(f"{e.cmd}: {e.stderr}")

    requeuer = threading.Thread(target=requeue_once_checkpointed, daemon=True)
    requeuer.start()
    assert _cli(*job, "--executor", "slurm", "--wait", "--slurm-time", "0.5", "--runs-dir", runs) == 0
    requeuer.join(timeout=5)
    out = capsys.readouterr().out
    assert requeued and not errors, (errors, out)
    assert f"(slurm job {requeued[0]})" in out and "top-1" in out, out
    log = "".join(p.read_text() for p in (runs / ".slurm").rglob("*_log.out"))
    resumed = re.findall(r"l1 fine-tune  resume  at step (\d+)/384", log)
    assert len(resumed) == 1 and 0 < int(resumed[0]) < 384, log  # killed mid fine-tuning, resumed once
    assert _results(runs) == _results(ref)
    got = next(runs.glob("tiny-fmnist/l1/*/model.pt"))
    a, b = torch.load(got, weights_only=True), torch.load(ref / got.relative_to(runs), weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
