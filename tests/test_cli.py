"""The `suite` command end to end on real data: errors, smoke runs, caching, failure, resume, workers."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")
ENV = {**os.environ, "SUITE_CHECKPOINT_EVERY": "5", "PYTHONWARNINGS": "ignore"}


def suite(*args, check=None):
    p = subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, env=ENV)
    if check is not None:
        assert p.returncode == check, p.stdout + p.stderr
    return p


@pytest.mark.parametrize("args,fragment", [
    (["--methods", "gerg1"], "did you mean greg1"),
    (["--methods", "nni-zzz*"], "matches nothing"),
    (["--setting", "cifar10-resnet5"], "did you mean cifar10-resnet56"),
    (["--ratios", "[0,0.5"], "missing closing"),
    (["--ratios", "1.2"], "[0, 1)"),
    (["--ratios", "-0.1"], "not a number"),
    (["--seeds", "0"], "--seeds 0"),
    (["--seed-list", "a,b"], "--seed-list"),
    (["--baseline-seed", "-1"], "--baseline-seed -1"),
    (["--baseline", "own.pt", "--baseline-seed", "1"], "exclude each other"),
    (["--setting", "cifar10jpg-resnet20", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--budget", "x"], "cuda"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, fragment):
    runs = tmp_path / "runs"
    p = suite("run", "--runs-dir", str(runs), *args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], p.stderr
    assert not runs.exists()


def test_bad_hparams_files(tmp_path):
    runs = tmp_path / "runs"
    for content, fragment in [('{"greg1": {"penalty_increment": "big"}}', "must be float"),
                              ('{"greg1": {"nonsense": 1}}', "unknown field"),
                              ('{"l1": {}}', "does not run"), ("{not json", "not valid JSON")]:
        f = tmp_path / "hp.json"
        f.write_text(content)
        p = suite("run", "--runs-dir", str(runs), "--methods", "greg1", "--hparams", str(f))
        assert p.returncode == 2 and fragment in p.stderr, (content, p.stderr)
    assert not runs.exists()


def test_bad_baseline_checkpoints(tmp_path):
    runs = tmp_path / "runs"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    pickled = tmp_path / "pickled.pt"
    torch.save({"x": object()}, pickled)  # needs unpickling code: refused by weights_only
    for path, fragment in [(corrupt, "corrupt"), (wrong, "does not match"), (pickled, "weights-only")]:
        p = suite("run", "--runs-dir", str(runs), "--methods", "l1", "--baseline", str(path))
        assert p.returncode == 2 and fragment in p.stderr, p.stderr
    assert not runs.exists()


def test_own_baseline_is_another_run_not_the_cached_one(tmp_path):
    """The same job from a --baseline file must not be answered by the trained baseline's stored run."""
    runs = tmp_path / "runs"
    args = ("run", "--smoke", "--setting", TINY, "--runs-dir", str(runs), "--methods", "l1")
    suite(*args, check=0)
    state = torch.load(next(runs.glob("baselines/tiny-fmnist/*/model.pt")), weights_only=True)
    state["classifier.weight"][0, 0] += 0.5
    own = tmp_path / "own.pt"
    torch.save(state, own)
    p = suite(*args, "--baseline", str(own), check=0)
    assert "cached:" not in p.stdout
    results = [json.loads(f.read_text()) for f in runs.glob("tiny-fmnist/l1/*/result.json")]
    assert len(results) == 2
    assert sorted(r["baseline_key"].startswith("user-") for r in results) == [False, True]
    assert len({r["baseline_sha256"] for r in results}) == 2
    assert "cached:" in suite(*args, "--baseline", str(own), check=0).stdout


def test_another_baseline_seed_is_another_baseline_and_other_runs(tmp_path):
    runs = tmp_path / "runs"
    args = ("run", "--smoke", "--setting", TINY, "--runs-dir", str(runs), "--methods", "l1")
    suite(*args, check=0)
    p = suite(*args, "--baseline-seed", "1", check=0)
    assert "cached:" not in p.stdout
    results = [json.loads(f.read_text()) for f in runs.glob("tiny-fmnist/l1/*/result.json")]
    assert sorted(r["baseline_seed"] for r in results) == [0, 1]
    assert len({r["baseline_key"] for r in results}) == len({r["baseline_sha256"] for r in results}) == 2
    assert len(list(runs.glob("baselines/tiny-fmnist/*/model.pt"))) == 2


def test_unwritable_runs_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = suite("run", "--runs-dir", str(blocker / "runs"), "--methods", "l1", "--smoke")
    assert p.returncode == 2 and "not writable" in p.stderr


def test_smoke_run_then_cached(tmp_path):
    runs = tmp_path / "runs"
    p = suite("run", "--smoke", "--runs-dir", str(runs), "--methods", "greg1,greg2,l1", check=0)
    assert "greg1" in p.stdout and "greg2" in p.stdout and "budget protocol: paper" in p.stdout
    results = sorted(runs.glob("fmnist-cnn4/*/*/result.json"))
    assert len(results) == 3
    for r in results:
        d = json.loads(r.read_text())
        assert d["status"] == "smoke" and d["data_fingerprint"] and d["speedup"] > 1
        assert {"config.json", "log.csv", "result.json"} <= {f.name for f in r.parent.iterdir()}
    t = time.time()
    again = suite("run", "--smoke", "--runs-dir", str(runs), "--methods", "greg1,greg2,l1", check=0)
    assert again.stdout.count("cached:") == 3 and time.time() - t < 30
    table = suite("results", "--runs-dir", str(runs), "--format", "json", check=0)
    assert len(json.loads(table.stdout)) == 3


def test_failed_job_is_recorded_and_others_go_on(tmp_path):
    runs = tmp_path / "runs"
    hp = tmp_path / "blowup.json"
    hp.write_text('{"greg1": {"penalty_increment": 1000000.0, "penalty_ceiling": 1e12}}')
    p = suite("run", "--smoke", "--runs-dir", str(runs), "--methods", "greg1,l1", "--hparams", str(hp))
    assert p.returncode == 1 and "1 job(s) failed" in p.stderr and "greg1" in p.stderr
    greg = json.loads(next(runs.glob("fmnist-cnn4/greg1/*/result.json")).read_text())
    assert greg["status"] == "failed" and "loss became" in greg["error"]
    assert json.loads(next(runs.glob("fmnist-cnn4/l1/*/result.json")).read_text())["status"] == "smoke"


def _final_state(runs):
    folder = next(runs.glob("tiny-fmnist/greg1/*"))
    return json.loads((folder / "result.json").read_text()), torch.load(folder / "model.pt", weights_only=True)


def test_sigkill_resume_equals_uninterrupted(tmp_path):
    args = ["run", "--setting", TINY, "--methods", "greg1"]
    suite(*args, "--runs-dir", str(tmp_path / "a"), check=0)
    ref_result, ref_model = _final_state(tmp_path / "a")

    runs = tmp_path / "b"
    # kill -9 inside the baseline, then inside regularization, then inside fine-tuning
    for marker in ("baselines/tiny-fmnist/*/train.ckpt", "tiny-fmnist/greg1/*/regularize.ckpt",
                   "tiny-fmnist/greg1/*/finetune.ckpt"):
        proc = subprocess.Popen([sys.executable, "-m", "suite.cli", *args, "--runs-dir", str(runs)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.time() + 120
        while not list(runs.glob(marker)) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before {marker} appeared"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    suite(*args, "--runs-dir", str(runs), check=0)
    result, model = _final_state(runs)
    for k in ("top1", "top5", "acc_before_removal", "acc_after_removal", "pruned_filters", "params", "flops"):
        assert result[k] == ref_result[k], k
    assert result["budget"]["reg_iters"] == ref_result["budget"]["reg_iters"]
    for k, v in ref_model.items():
        assert torch.equal(v, model[k]), k


def test_two_workers_never_run_a_job_twice(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "suite.cli", "run", "--setting", TINY, "--methods", "l1,random",
           "--runs-dir", str(runs), "--smoke"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    executed = sum(o.count("    smoke:") for o in outs)
    cached = sum(o.count("    cached:") for o in outs)
    assert executed == 2 and cached == 2, outs  # each job ran once; the other worker found it
    assert len(list(runs.glob("tiny-fmnist/*/*/result.json"))) == 2
    assert len(list(runs.glob("baselines/tiny-fmnist/*/model.pt"))) == 1


def test_list_json_has_the_promised_fields():
    settings = json.loads(suite("list", "settings", "--json", check=0).stdout)
    r56 = next(s for s in settings if s["name"] == "cifar10-resnet56")
    assert r56["params"] == 848_954 and r56["flops"] == 2 * 125_485_696 and abs(r56["speedup"] - 2.55) < 0.01
    assert {"pruned_params", "pruned_flops"} <= set(r56)
    methods = json.loads(suite("list", "methods", "--json", check=0).stdout)
    names = {m["name"] for m in methods}
    assert {"greg1", "greg2", "l1", "random", "nni-fpgm", "nni-level"} <= names
    greg1 = next(m for m in methods if m["name"] == "greg1")
    assert greg1["granularity"] == "filter" and greg1["hparams"]["penalty_increment"] == 1e-4


def test_total_budget_protocol_gives_equal_iterations(tmp_path):
    """--budget total: l1 fine-tunes longer by exactly the regularization budget GReg-1 may spend."""
    runs = tmp_path / "runs"
    suite("run", "--setting", TINY, "--methods", "greg1,l1", "--budget", "total", "--runs-dir", str(runs), check=0)
    budgets = {json.loads(p.read_text())["method"]: json.loads(p.read_text())["budget"]
               for p in runs.glob("tiny-fmnist/*/*/result.json")}
    # tiny: 1 fine-tune epoch = 4096 // 128 = 32 iterations; GReg-1 may spend (ceil(1/0.1)+1)*1 + 20 = 31
    assert budgets["l1"] == {**budgets["l1"], "reg_iters": 0, "finetune_iters": 32 + 31, "protocol": "total"}
    assert budgets["greg1"]["total_iters"] == budgets["l1"]["total_iters"] == 63
    assert 0 < budgets["greg1"]["reg_iters"] <= 31


def test_total_protocol_reuses_a_paper_run_that_spent_the_whole_budget(tmp_path):
    """A GReg run that used the whole nominal regularization budget gets no extra fine-tuning under
    --budget total, so the runner takes its paper-protocol twin; the taken result must equal a
    total-protocol run computed from scratch."""
    hp = tmp_path / "hp.json"  # no early stop on the magnitude ratio: the full 31 iterations are spent
    hp.write_text('{"greg1": {"mag_ratio_limit": 1e30}}')
    common = ["--setting", TINY, "--methods", "greg1", "--hparams", str(hp)]
    fresh, reused = tmp_path / "fresh", tmp_path / "reused"
    suite("run", *common, "--budget", "total", "--runs-dir", str(fresh), check=0)
    suite("run", *common, "--runs-dir", str(reused), check=0)
    suite("run", *common, "--budget", "total", "--runs-dir", str(reused), check=0)
    computed = json.loads(next(fresh.glob("tiny-fmnist/greg1/*/result.json")).read_text())
    by_protocol = {}
    for f in reused.glob("tiny-fmnist/greg1/*/result.json"):
        r = json.loads(f.read_text())
        by_protocol[r["protocol"]] = (f.parent.name, r)
    (paper_folder, paper), (_, taken) = by_protocol["paper"], by_protocol["total"]
    assert "same_training_as" not in computed and taken["same_training_as"] == paper_folder
    assert taken["budget"] == computed["budget"] == {**paper["budget"], "protocol": "total"}
    for key in ("top1", "top5", "acc_before_removal", "acc_after_removal", "flops", "params", "pruned_filters"):
        assert taken[key] == computed[key], key


def test_dry_run_plans_without_training(tmp_path):
    runs = tmp_path / "runs"
    hp = tmp_path / "hp.json"
    hp.write_text('{"greg1": {"penalty_increment": 0.05}}')
    p = suite("run", "--setting", TINY, "--methods", "greg1,l1", "--seeds", "2", "--hparams", str(hp),
              "--dry-run", "--runs-dir", str(runs), check=0)
    assert p.stdout.count("to run ") == 4 and "4 to run, 0 cached" in p.stdout
    # tiny: (ceil(1 / 0.05) + 1) updates every iteration + 20 to stabilize = 41, from the given hparams
    assert "regularization up to 41 iterations for GReg" in p.stdout
    assert not list(runs.rglob("result.json")) and not list(runs.rglob("*.pt"))
    p = suite("run", "--setting", TINY, "--methods", "l1", "--dry-run", "--runs-dir", str(runs), check=0)
    assert "regularization" not in p.stdout.splitlines()[-1]


def test_missing_runs_dir_is_one_line_exit_2_for_every_reader(tmp_path, capsys):
    from suite.cli import main
    for command in ("results", "leaderboard"):
        assert main([command, "--runs-dir", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: runs dir") and "none" in err


def test_list_settings_default_first_and_only_real_changes(monkeypatch, capsys):
    from suite import overview
    from suite.cli import main
    monkeypatch.setattr(overview, "_cached_achieved", lambda s: {
        "params": 2e6, "flops": 4e6, "pruned_params": 1e6, "pruned_flops": 1e6, "speedup": 4.0,
        "param_reduction": 2.0, "pruned_layers": 3})
    assert main(["list", "settings"]) == 0
    blocks = {}
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            blocks[name] = []
        blocks[name].append(line)
    assert list(blocks)[0] == "fmnist-cnn4" and "[default]" in blocks["fmnist-cnn4"][0]
    # GReg's own defaults are update_interval 10 and stabilize_iters 10000 (the paper's CIFAR values)
    assert not any("method defaults changed" in line for line in blocks["cifar100-vgg19"])
    assert any('"update_interval": 1' in line for line in blocks["fmnist-cnn4"])
    assert any('"stabilize_iters": 40000' in line for line in blocks["imagenet-resnet50"])


def test_list_settings_counts_once_per_setting_and_code_version(tmp_path, monkeypatch):
    from suite import overview
    from suite.settings import SETTINGS
    calls = []
    monkeypatch.setattr(overview, "CACHE", tmp_path / "cache.json")
    monkeypatch.setattr(overview, "achieved", lambda s: calls.append(s.name) or {"speedup": 6.19})
    s = SETTINGS["fmnist-cnn4"]
    assert overview._cached_achieved(s) == overview._cached_achieved(s) == {"speedup": 6.19}
    assert calls == ["fmnist-cnn4"]
    monkeypatch.setattr(overview, "_code_version", lambda: "another")
    overview._cached_achieved(s)
    assert calls == ["fmnist-cnn4", "fmnist-cnn4"]
