"""The `suite` command end to end on real data: errors, smoke runs, caching, failure, resume, workers.

Most cases call ``suite.cli.commands.main(argv)`` in this process (an interpreter start each would cost more
than the case); the kill -9 resume and the two workers need real processes and run as such.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from suite.cli.commands import main

TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")
ENV = {**os.environ, "SUITE_CHECKPOINT_EVERY": "5", "PYTHONWARNINGS": "ignore"}


class Ran:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def suite(capsys, monkeypatch):
    """``suite(*argv, check=code)``: run the CLI in this process; returns its exit code and output."""
    monkeypatch.setenv("SUITE_CHECKPOINT_EVERY", "5")
    threads = torch.get_num_threads()

    def run(*args, check=None):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
        finally:
            torch.set_num_threads(threads)  # a run sets this process's threads to its share
        out, err = capsys.readouterr()
        if check is not None:
            assert code == check, out + err
        return Ran(code, out, err)

    return run


def _one_line_error(p, fragment):
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], p.stderr


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--methods", "gerg1"], "did you mean greg1"),
        (["--methods", "nni-zzz*"], "matches nothing"),
        (["--setting", "cifar10-resnet5"], "did you mean cifar10-resnet56"),
        (["--ratios", "[0,0.5"], "missing closing"),
        (["--ratios", "1.2"], "[0, 1)"),
        (["--ratios", "-0.1"], "not a number"),
        (["--seeds", "0"], "--seeds 0"),
        (["--seed-list", "a,b"], "--seed-list"),
        (["--seed-list", ",".join(map(str, range(1001)))], "--seed-list: 1001 seeds, at most 1000"),
        (["--baseline-seed", "-1"], "--baseline-seed -1"),
        (["--baseline", "own.pt", "--baseline-seed", "1"], "exclude each other"),
        (["--setting", "cifar10jpg-resnet20", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
        (["--budget", "x"], "'x' is not a budget"),
        (["--budget", "paper,total:-2x"], "'total:-2x' is not a budget"),
        (["--budget", "total:1e308x"], "more samples than a number holds"),  # was an OverflowError
        (["--target", "abc"], "--target 'abc': write a FLOPs speedup > 1 like 2.5x"),  # was "--ratios 'abcx'"
        (["--target", "-2"], "--target '-2': write a FLOPs speedup > 1"),
        (["--target", "1e-400x"], "--target '1e-400x'"),  # 0: reported as the --target the user wrote
        # cnn4's widest prunable conv has 32 filters: at 64, every kept count rounds up to the whole layer
        (["--ratios", "0.5", "--round-to", "64"], "--round-to 64 leaves every layer of cnn4 whole"),
        (["--device", "nonsense"], "--device 'nonsense': must be auto, cpu, cuda or cuda:N"),
        (["--threads", "0"], "--threads 0"),
        pytest.param(
            ["--device", "cuda:0"],
            "CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(suite, tmp_path, args, fragment):
    runs = tmp_path / "runs"
    _one_line_error(suite("run", "--runs-dir", runs, *args), fragment)
    assert not runs.exists()


@pytest.mark.parametrize(
    "command", [["run", "--methods", "l1", "--dry-run"], ["baseline"], ["search", "--method", "greg1", "--trials", "1"]]
)
def test_download_without_a_network_is_one_line(suite, tmp_path, monkeypatch, command):
    """--download where the dataset's server cannot be reached (every connection refused here, so no
    test ever downloads): one line naming the cause and the fix, not urllib's traceback, in every
    command that loads data (suite baseline and search were a traceback)."""
    import urllib.error
    import urllib.request

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    args = ["--download", "--setting", "cifar10-resnet56", "--data-dir", tmp_path / "cifar"]
    p = suite(*command, *args, "--runs-dir", tmp_path / "runs")
    _one_line_error(p, "--download: cannot reach the dataset's server ([Errno -2] Name or service not known)")


def test_bad_hparams_files(suite, tmp_path):
    runs = tmp_path / "runs"
    for content, fragment in [
        ('{"greg1": {"penalty_increment": "big"}}', "must be float"),
        ('{"greg1": {"nonsense": 1}}', "unknown field"),
        ('{"l1": {}}', "does not run"),
        ("{not json", "not valid JSON"),
        ('{"greg1": {"penalty_increment": 1e-4, "penalty_increment": 2e-4}}', "sets 'penalty_increment' twice"),
        ('{"greg1": {"penalty_increment": 1e-4}, "greg1": {}}', "sets 'greg1' twice"),
    ]:
        f = tmp_path / "hp.json"
        f.write_text(content)
        _one_line_error(suite("run", "--runs-dir", runs, "--methods", "greg1", "--hparams", f), fragment)
    folder = suite("run", "--runs-dir", runs, "--methods", "greg1", "--hparams", tmp_path)
    _one_line_error(folder, "a folder: name the JSON or TOML file")
    assert not runs.exists()


@pytest.mark.data
def test_bad_baseline_checkpoints(suite, tmp_path):
    runs = tmp_path / "runs"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    pickled = tmp_path / "pickled.pt"
    torch.save({"x": object()}, pickled)  # needs unpickling code: refused by weights_only
    for path, fragment in [(corrupt, "corrupt"), (wrong, "does not match"), (pickled, "weights-only")]:
        _one_line_error(
            suite("run", "--runs-dir", runs, "--setting", TINY, "--methods", "l1", "--baseline", path), fragment
        )
    assert not runs.exists()


@pytest.mark.data
def test_own_baseline_is_another_run_not_the_cached_one(suite, tmp_path):
    """The same job from a --baseline file must not be answered by the trained baseline's stored run."""
    runs = tmp_path / "runs"
    args = ("run", "--smoke", "--setting", TINY, "--runs-dir", runs, "--methods", "l1")
    suite(*args, check=0)
    state = torch.load(next(runs.glob("baselines/tiny-fmnist/*/model.pt")), weights_only=True)
    state["classifier.weight"][0, 0] += 0.5
    own = tmp_path / "own.pt"
    torch.save(state, own)
    p = suite(*args, "--baseline", own, check=0)
    assert "cached:" not in p.stdout
    results = [json.loads(f.read_text()) for f in runs.glob("tiny-fmnist/l1/*/result.json")]
    assert len(results) == 2
    assert sorted(r["baseline_key"].startswith("user-") for r in results) == [False, True]
    assert len({r["baseline_sha256"] for r in results}) == 2
    assert "cached:" in suite(*args, "--baseline", own, check=0).stdout

    # another baseline seed: another trained baseline, other runs
    p = suite(*args, "--baseline-seed", "1", check=0)
    assert "cached:" not in p.stdout
    results = [json.loads(f.read_text()) for f in runs.glob("tiny-fmnist/l1/*/result.json")]
    assert sorted(r["baseline_seed"] for r in results if not r["baseline_key"].startswith("user-")) == [0, 1]
    assert len({r["baseline_key"] for r in results}) == len({r["baseline_sha256"] for r in results}) == 3
    assert len(list(runs.glob("baselines/tiny-fmnist/*/model.pt"))) == 2


@pytest.mark.data
def test_unwritable_runs_dir(suite, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line_error(
        suite("run", "--runs-dir", blocker / "runs", "--setting", TINY, "--methods", "l1", "--smoke"), "not writable"
    )


@pytest.mark.data
def test_smoke_run_then_cached_with_progress_lines(suite, tmp_path):
    runs = tmp_path / "runs"
    p = suite("run", "--smoke", "--runs-dir", runs, "--methods", "greg1,greg2,l1", check=0)
    assert "greg1" in p.stdout and "greg2" in p.stdout and "budget protocol: paper" in p.stdout
    assert re.search(r"; \d+ threads? \(", p.stdout.splitlines()[0])  # the header says the thread count
    # stdout is not a terminal here: every phase printed its progress lines
    for phase in ("baseline", "greg1 regularize", "greg2 regularize", "l1 fine-tune"):
        assert re.search(rf"\] [^\n]*{phase}[^\n]*  start  ", p.stdout), phase
    results = sorted(runs.glob("fmnist-cnn4-quick/*/*/result.json"))
    assert len(results) == 3
    for r in results:
        d = json.loads(r.read_text())
        assert d["status"] == "smoke" and d["data_fingerprint"] and d["speedup"] > 1
        assert {"config.json", "log.csv", "result.json"} <= {f.name for f in r.parent.iterdir()}
    before = {r: r.stat().st_mtime_ns for r in results}
    again = suite("run", "--smoke", "--runs-dir", runs, "--methods", "greg1,greg2,l1", check=0)
    assert again.stdout.count("cached:") == 3 and "start  " not in again.stdout  # nothing trained
    assert {r: r.stat().st_mtime_ns for r in results} == before
    table = suite("results", "--runs-dir", runs, "--format", "json", check=0)
    assert len(json.loads(table.stdout)) == 3


@pytest.mark.data
def test_unstructured_and_greg2_end_to_end(suite, tmp_path):
    """The runner's mask path (GReg-1/2 at weight granularity, magnitude) and GReg-2's filter path:
    after fine-tuning, exactly half of each pruned layer's weights are still zero."""
    runs = tmp_path / "runs"
    suite(
        "run",
        "--smoke",
        "--setting",
        TINY,
        "--runs-dir",
        runs,
        "--methods",
        "greg1-unstructured,greg2-unstructured,magnitude,greg2",
        check=0,
    )
    base = torch.load(next(runs.glob("baselines/tiny-fmnist/*/model.pt")), weights_only=True)
    for method in ("greg1-unstructured", "greg2-unstructured", "magnitude"):
        folder = next(runs.glob(f"tiny-fmnist/{method}/*"))
        result = json.loads((folder / "result.json").read_text())
        model = torch.load(folder / "model.pt", weights_only=True)
        assert result["status"] == "smoke" and result["granularity"] == "weight", method
        assert result["budget"]["finetune_iters"] == 20
        zeros = {k: int((v == 0).sum()) for k, v in model.items() if k.endswith("weight") and v.dim() > 1}
        # cnn4 at "0.5": every conv but the first loses half its weights; first conv and classifier keep all
        assert zeros == {
            "features.0.weight": 0,
            "features.4.weight": 32 * 16 * 9 // 2,
            "features.8.weight": 64 * 32 * 9 // 2,
            "features.11.weight": 64 * 64 * 9 // 2,
            "classifier.weight": 0,
        }, method
        assert result["nonzero_params"] == result["params"] - sum(zeros.values())
        assert model["features.4.weight"].shape == base["features.4.weight"].shape  # masked, not removed
    greg2 = json.loads(next(runs.glob("tiny-fmnist/greg2/*/result.json")).read_text())
    assert {k: len(v) for k, v in greg2["pruned_filters"].items()} == {
        "features.4": 16,
        "features.8": 32,
        "features.11": 32,
    }
    assert greg2["params"] < greg2["baseline_params"] and greg2["method_info"]["pick_overlap_with_l1"]


@pytest.mark.data
def test_failed_job_is_recorded_and_others_go_on(suite, tmp_path):
    runs = tmp_path / "runs"
    hp = tmp_path / "blowup.json"
    hp.write_text('{"greg1": {"penalty_increment": 1000000.0, "penalty_ceiling": 1e12}}')
    p = suite("run", "--smoke", "--setting", TINY, "--runs-dir", runs, "--methods", "greg1,l1", "--hparams", hp)
    assert p.returncode == 1 and "1 job(s) failed" in p.stderr and "greg1" in p.stderr
    greg = json.loads(next(runs.glob("tiny-fmnist/greg1/*/result.json")).read_text())
    assert greg["status"] == "failed" and "loss became" in greg["error"]
    assert json.loads(next(runs.glob("tiny-fmnist/l1/*/result.json")).read_text())["status"] == "smoke"


def _subprocess_suite(*args, check=0):
    p = subprocess.run([sys.executable, "-m", "suite.cli", *map(str, args)], capture_output=True, text=True, env=ENV)
    assert p.returncode == check, p.stdout + p.stderr
    return p


def _final_state(runs):
    folder = next(runs.glob("tiny-fmnist/greg1/*"))
    return json.loads((folder / "result.json").read_text()), torch.load(folder / "model.pt", weights_only=True)


@pytest.mark.data
def test_sigkill_resume_equals_uninterrupted(tmp_path):
    args = ["run", "--setting", TINY, "--methods", "greg1", "--device", "cpu"]  # bit-exact: CPU
    _subprocess_suite(*args, "--runs-dir", tmp_path / "a")
    ref_result, ref_model = _final_state(tmp_path / "a")

    runs = tmp_path / "b"
    # kill -9 inside the baseline, then inside regularization, then inside fine-tuning
    for marker in (
        "baselines/tiny-fmnist/*/train.ckpt",
        "tiny-fmnist/greg1/*/own.ckpt",
        "tiny-fmnist/greg1/*/finetune.ckpt",
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "suite.cli", *args, "--runs-dir", str(runs)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        deadline = time.time() + 120
        while not list(runs.glob(marker)) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before {marker} appeared"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _subprocess_suite(*args, "--runs-dir", runs)
    result, model = _final_state(runs)
    for k in ("top1", "top5", "acc_before_removal", "acc_after_removal", "pruned_filters", "params", "flops"):
        assert result[k] == ref_result[k], k
    assert result["budget"]["own_iters"] == ref_result["budget"]["own_iters"]
    for k, v in ref_model.items():
        assert torch.equal(v, model[k]), k


def test_list_json_has_the_promised_fields(suite):
    settings = json.loads(suite("list", "settings", "--json", check=0).stdout)
    r56 = next(s for s in settings if s["name"] == "cifar10-resnet56")
    assert r56["params"] == 848_954 and r56["flops"] == 2 * 125_485_696 and abs(r56["speedup"] - 2.55) < 0.01
    assert {"pruned_params", "pruned_flops"} <= set(r56)
    methods = json.loads(suite("list", "methods", "--json", check=0).stdout)
    names = {m["name"] for m in methods}
    assert {"greg1", "greg2", "l1", "random", "nni-fpgm", "nni-level"} <= names
    greg1 = next(m for m in methods if m["name"] == "greg1")
    assert greg1["granularity"] == "filter" and greg1["hparams"]["penalty_increment"] == 1e-4


def test_a_pattern_that_lists_nothing_is_an_error_not_an_empty_list(suite):
    for what in ("settings", "methods", "models"):
        _one_line_error(suite("list", what, "zzz"), f"no {what[:-1]} matches 'zzz': 'suite list {what}' lists them all")
    _one_line_error(suite("list", "models", "torchvision:zzz*"), "no model matches 'torchvision:zzz*'")


def test_a_reader_that_stops_reading_ends_the_command_without_a_traceback():
    """``suite list settings | head -1``: the pipe's reader gone before the first write (its read end
    closed here, so the write fails every time, not only when head is quick)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    p = subprocess.run(
        [sys.executable, "-m", "suite.cli", "list", "settings"], stdout=write_end, stderr=subprocess.PIPE, text=True
    )
    os.close(write_end)
    assert p.returncode == 1 and p.stderr == ""


def test_a_broken_pipe_that_is_not_our_output_is_not_swallowed(suite, monkeypatch):
    """A pipe of something else (a worker's connection) breaking while stdout is fine is an error."""
    from suite.cli import listing

    def worker_gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(listing, "main", worker_gone)
    with pytest.raises(BrokenPipeError):
        suite("list", "settings")


def test_a_budget_keeps_its_spelling_and_each_number_of_samples_is_planned_once():
    from suite.errors import SuiteError
    from suite.spec.plan import parse_budgets, plan
    from suite.spec.settings import SETTINGS

    s = SETTINGS["fmnist-cnn4"]  # its frozen 1x: 909,376 samples (tests/test_identity.py pins its runs)
    both = parse_budgets("total:1x,909376,paper,total:909376", s, train_size=60_000)
    assert [(b.label, b.samples) for b in both] == [("1x", 909_376), ("paper", None)]
    one = parse_budgets("total:1", s, train_size=60_000)  # one sample, as written, not 1x
    with pytest.raises(SuiteError, match=r"^--budget total:1 \(1 sample\) cannot hold l1's own training"):
        plan(s, ["l1"], [0], train_size=60_000, budgets=one)


def _results(runs):
    return {
        (r["method"], r["protocol"]): (f.parent.name, r)
        for f in runs.glob("tiny-fmnist/*/*/result.json")
        for r in [json.loads(f.read_text())]
    }


# tiny-fmnist by hand: 4,096 training images; fine-tuning 1 epoch at batch 128 = 32 iterations = 4,096
# samples; own training at batch 128. GReg (K_u 1, delta 0.1, tau 1, K_s 20): GReg-1 stops at the 11th
# update (1.1 > 1), the last at iteration 10, then 20 more: 31 iterations. GReg-2 picks in 2 updates
# (2 x 0.005 = 0.01), then grows 0.11 .. 1.01 in 10: 12 updates, 11 + 1 + 20 = 32 iterations. nni-slim
# trains tiny's 40 steps (nni-slim override): an equal budget of 4,096 + 40 x 128 = 9,216 samples fits every one.
OWN = {"l1": 0, "greg1": 31 * 128, "greg2": 32 * 128, "nni-slim": 40 * 128}
TOTAL = 4096 + 40 * 128


@pytest.mark.data
def test_budgets_are_counted_in_samples_and_equal_under_total(suite, tmp_path):
    """Samples after the baseline, counted by the harness, against hand-computed values; under
    --budget total every row reaches the same count whatever its batch sizes."""
    cpu = ("--setting", TINY, "--device", "cpu", "--methods", ",".join(OWN))
    hp = tmp_path / "hp.json"  # no early stop on the magnitude ratio: GReg's whole schedule is spent
    hp.write_text('{"greg1": {"mag_ratio_limit": 1e30}, "greg2": {"mag_ratio_limit": 1e30}}')
    runs = tmp_path / "runs"
    suite("run", *cpu, "--hparams", hp, "--runs-dir", runs, check=0)
    suite("run", *cpu, "--hparams", hp, "--budget", str(TOTAL), "--runs-dir", runs, check=0)
    got = _results(runs)
    for method, own in OWN.items():
        paper, total = got[(method, "paper")][1]["budget"], got[(method, "total")][1]["budget"]
        assert (paper["own_samples"], paper["finetune_samples"], paper["samples"]) == (own, 4096, own + 4096)
        assert paper["own_iters"] == own // 128 and not paper["capped"]
        assert total["own_samples"] == own and total["samples"] == TOTAL == total["total_samples_target"], method
        assert total["finetune_iters"] == (TOTAL - own) // 128 and total["samples_x_train"] == TOTAL / 4096
    # compute: the method's own passes run on the whole model, fine-tuning on the pruned one
    assert got[("greg1", "total")][1]["budget"]["train_macs"] > got[("l1", "total")][1]["budget"]["train_macs"]
    # nni-slim's own training spends the whole budget: its total run is its paper run, taken, not retrained
    slim_paper_folder = got[("nni-slim", "paper")][0]
    assert got[("nni-slim", "total")][1]["same_training_as"] == slim_paper_folder
    fresh = tmp_path / "fresh"
    shutil.copytree(runs / "baselines", fresh / "baselines")  # the same baseline, not trained again
    suite(
        "run",
        "--setting",
        TINY,
        "--device",
        "cpu",
        "--methods",
        "nni-slim",
        "--budget",
        str(TOTAL),
        "--runs-dir",
        fresh,
        check=0,
    )
    computed, taken = _results(fresh)[("nni-slim", "total")][1], got[("nni-slim", "total")][1]
    assert "same_training_as" not in computed
    for key in ("top1", "top5", "acc_before_removal", "acc_after_removal", "flops", "pruned_filters"):
        assert taken[key] == computed[key], key


@pytest.mark.data
def test_an_equal_budget_stretches_the_fine_tuning_schedule_never_a_tail(suite, tmp_path):
    """Twice the samples of a 2-epoch recipe {0: 0.01, 1: 0.001}: 4 epochs whose milestone moves to
    epoch 2 (0.01, 0.01, 0.001, 0.001); padding the recipe at its last rate would run 0.01 once,
    then 0.001 three times. The run records the schedule it ran."""
    setting = tmp_path / "two-epochs.toml"
    setting.write_text(
        Path(TINY)
        .read_text()
        .replace(
            "[finetune]\nepochs = 1\nbatch_size = 128\nlr = { 0 = 0.01 }",
            "[finetune]\nepochs = 2\nbatch_size = 128\nlr = { 0 = 0.01, 1 = 0.001 }",
        )
    )
    runs = tmp_path / "runs"
    suite(
        "run",
        "--setting",
        setting,
        "--device",
        "cpu",
        "--methods",
        "l1",
        "--budget",
        "paper,total:2x",
        "--runs-dir",
        runs,
        check=0,
    )
    for protocol, want in (("paper", [0.01, 0.001]), ("total", [0.01, 0.01, 0.001, 0.001])):
        folder = next(
            f.parent for f in runs.glob("*/l1/*/result.json") if json.loads(f.read_text())["protocol"] == protocol
        )
        with open(folder / "log.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["phase"] == "l1 fine-tune"]
        assert [float(r["lr"]) for r in rows] == want, protocol
        budget = json.loads((folder / "result.json").read_text())["budget"]
        assert budget["samples"] == 4096 * len(want) and budget["finetune_stretch"] == len(want) / 2
        assert budget["finetune_lr"] == ({"0": 0.01, "1": 0.001} if protocol == "paper" else {"0": 0.01, "2": 0.001})


@pytest.mark.data
def test_dry_run_plans_without_training(suite, tmp_path):
    runs = tmp_path / "runs"
    hp = tmp_path / "hp.json"
    hp.write_text('{"greg1": {"penalty_increment": 0.05}}')
    p = suite(
        "run",
        "--setting",
        TINY,
        "--methods",
        "greg1,l1",
        "--seeds",
        "2",
        "--hparams",
        hp,
        "--dry-run",
        "--runs-dir",
        runs,
        check=0,
    )
    assert p.stdout.count("to run ") == 4 and "4 to run, 0 stored" in p.stdout
    # delta 0.05: the 21st update passes tau 1 (1.05), the last at iteration 20, then K_s 20: 41 iterations
    assert p.stdout.count("own training 41 it x 128") == 2 and p.stdout.count("no own training") == 2
    p = suite(
        "run",
        "--setting",
        TINY,
        "--methods",
        "greg1,l1",
        "--budget",
        f"paper,{TOTAL},total:2x",
        "--dry-run",
        "--runs-dir",
        runs,
        check=0,
    )
    assert p.stdout.count(f"total {TOTAL} samples") == 2 and p.stdout.count("total 8192 samples") == 2  # 2 x 4,096
    assert p.stdout.count("to run ") == 6
    p = suite(
        "run",
        "--setting",
        TINY,
        "--methods",
        "greg1",
        "--budget",
        "total:0.5x",
        "--dry-run",
        "--runs-dir",
        runs,
        check=2,
    )
    assert "cannot hold greg1's own training" in p.stderr and "Traceback" not in p.stderr
    capped = tmp_path / "capped.json"  # 201 updates at K_u 1 cannot fit tiny's cap of 200 iterations
    capped.write_text('{"greg1": {"penalty_increment": 0.005}}')
    p = suite(
        "run", "--setting", TINY, "--methods", "greg1", "--hparams", capped, "--dry-run", "--runs-dir", runs, check=0
    )
    assert "CAPPED" in p.stdout
    # the header's dry-surgery speedup is for filter methods; masks alone keep every FLOP
    assert "x FLOPs)" in p.stdout.splitlines()[0]
    p = suite(
        "run", "--setting", TINY, "--methods", "magnitude,greg1-unstructured", "--dry-run", "--runs-dir", runs, check=0
    )
    header = p.stdout.splitlines()[0]
    assert "(weight sparsity, FLOPs unchanged)" in header and "dry surgery" not in header, header
    assert not runs.exists()


@pytest.mark.data
def test_two_workers_share_four_jobs_two_each(tmp_path):
    """Issue 15 item 3: a worker that finds a job locked takes the next free one, so two workers on
    four equal jobs compute two each (before, one computed all four while the other waited); each job
    runs once, the baseline they share is trained once, and both workers withdraw their announcement."""
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "suite.cli",
        "run",
        "--setting",
        TINY,
        "--methods",
        "l1",
        "--seed-list",
        "0,1,2,3",
        "--runs-dir",
        str(runs),
        "--smoke",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [o.count("    smoke:") for o in outs] == [2, 2], outs  # computed here
    assert [o.count("    cached:") for o in outs] == [2, 2], outs  # found, computed by the other
    results = [json.loads(p.read_text()) for p in runs.glob("tiny-fmnist/l1/*/result.json")]
    assert sorted(r["seed"] for r in results) == [0, 1, 2, 3]
    assert len(list(runs.glob("baselines/tiny-fmnist/*/model.pt"))) == 1
    assert not list((runs / ".workers").iterdir())


def test_missing_runs_dir_is_one_line_exit_2_for_every_reader(tmp_path, capsys):
    from suite.cli.commands import main

    for command in ("results", "leaderboard"):
        assert main([command, "--runs-dir", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: runs dir") and "none" in err


def test_list_settings_default_first_and_only_real_changes(monkeypatch, capsys):
    from suite.cli.commands import main
    from suite.pages import overview

    monkeypatch.setattr(
        overview,
        "cached_achieved",
        lambda s: {
            "params": 2e6,
            "flops": 4e6,
            "pruned_params": 1e6,
            "pruned_flops": 1e6,
            "speedup": 4.0,
            "param_reduction": 2.0,
            "pruned_layers": 3,
        },
    )
    assert main(["list", "settings"]) == 0
    blocks = {}
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            blocks[name] = []
        blocks[name].append(line)
    assert list(blocks)[0] == "fmnist-cnn4-quick" and "[default]" in blocks["fmnist-cnn4-quick"][0]
    assert "[default]" not in blocks["fmnist-cnn4"][0]
    # GReg's own defaults are update_interval 10 and stabilize_iters 10000 (the paper's CIFAR values)
    assert not any("method defaults changed" in line for line in blocks["cifar100-vgg19"])
    assert any('"update_interval": 1' in line for line in blocks["fmnist-cnn4"])
    assert any('"stabilize_iters": 40000' in line for line in blocks["imagenet-resnet50"])


def test_list_settings_counts_once_per_setting_and_code_version(tmp_path, monkeypatch):
    from suite.pages import overview
    from suite.spec.settings import SETTINGS

    calls = []
    monkeypatch.setattr(overview, "CACHE", tmp_path / "cache.json")
    monkeypatch.setattr(overview, "achieved", lambda s: calls.append(s.name) or {"speedup": 6.19})
    s = SETTINGS["fmnist-cnn4"]
    assert overview.cached_achieved(s) == overview.cached_achieved(s) == {"speedup": 6.19}
    assert calls == ["fmnist-cnn4"]
    monkeypatch.setattr(overview, "_code_version", lambda: "another")
    overview.cached_achieved(s)
    assert calls == ["fmnist-cnn4", "fmnist-cnn4"]


@pytest.mark.data
def test_checkpoints_of_other_training_code_are_not_resumed(suite, tmp_path):
    """A run killed before the training code changed must not resume under today's fingerprint:
    its checkpoints are deleted and the run starts again, saying so."""
    runs = tmp_path / "runs"
    args = ("run", "--smoke", "--setting", TINY, "--runs-dir", runs, "--methods", "greg1")
    suite(*args, check=0)
    folder = next(runs.glob("tiny-fmnist/greg1/*"))
    (folder / "result.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "training_code": "older"}))
    (folder / "own.ckpt").write_bytes(b"not a checkpoint")
    again = suite(*args, check=0)
    assert "made by other training code (older): started again" in again.stdout
    assert json.loads((folder / "result.json").read_text())["status"] == "smoke"
    assert not (folder / "own.ckpt").exists()  # deleted, and a finished run leaves none
