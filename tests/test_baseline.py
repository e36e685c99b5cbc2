"""The shared baseline: cached by content, and a record without weights retrained and checked."""

import csv
import json
from pathlib import Path

import pytest
import torch

from suite.errors import SuiteError
from suite.measure.metrics import machine, machine_text, processor
from suite.spec.settings import get_setting
from suite.training.baseline import get_baseline, weights_digest

TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")
CPU = torch.device("cpu")


def _published(data, runs_dir, smoke=True):
    """A baseline of the tiny setting with its weights deleted, as in a published runs dir."""
    setting = get_setting(TINY)
    first = get_baseline(setting, data, 0, runs_dir, CPU, smoke=smoke)
    first.path.unlink()
    return setting, first, first.path.parent


def test_digest_sees_one_changed_weight():
    torch.manual_seed(0)
    model = get_setting(TINY).build_model()
    before = weights_digest(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-7
    assert weights_digest(model) != before


def test_record_without_weights_is_retrained_and_kept(small_fmnist, tmp_path):
    setting, first, folder = _published(small_fmnist, tmp_path, smoke=False)  # 2 epochs: the log is followed
    recorded = json.loads((folder / "meta.json").read_text())
    again = get_baseline(setting, small_fmnist, 0, tmp_path, CPU)
    assert again.top1 == first.top1 and again.key == first.key and again.digest == first.digest
    meta = json.loads((folder / "meta.json").read_text())
    assert {k: v for k, v in meta.items() if k != "reproduced"} == recorded  # the cited record is untouched
    assert meta["reproduced"][0]["weights_sha256"] == recorded["weights_sha256"] == weights_digest(again.model)
    assert recorded["processor"] == meta["reproduced"][0]["processor"] == processor(CPU) != ""
    assert again.path.exists()


def test_retraining_that_ends_elsewhere_stops_with_the_fix(small_fmnist, tmp_path):
    setting, first, folder = _published(small_fmnist, tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "top1": meta["top1"] + 1}))  # as if trained elsewhere
    with pytest.raises(SuiteError, match=r"not the recorded one: top-1 .*retrained with .*put that model.pt back"):
        get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
    assert (folder / "model.retrained.pt").exists() and not (folder / "model.pt").exists()
    assert json.loads((folder / "meta.json").read_text())["top1"] == meta["top1"] + 1
    with pytest.raises(SuiteError, match="earlier try on this machine"):  # at once, no second training
        get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)


def test_retraining_stops_at_the_first_epoch_off_the_record(small_fmnist, tmp_path):
    setting, first, folder = _published(small_fmnist, tmp_path, smoke=False)
    with open(folder / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["test_top1"] = str(float(rows[0]["test_top1"]) + 0.01)  # epoch 1 of another CPU
    with open(folder / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(SuiteError, match=r"epoch 1 gives test top-1 .* where the record has"):
        get_baseline(setting, small_fmnist, 0, tmp_path, CPU)
    assert not (folder / "model.pt").exists() and not (folder / "train.ckpt").exists()
    assert "epoch 1" in (folder / "not-reproduced.txt").read_text()


@pytest.mark.alone  # 2 threads: on an xdist worker's one core it took 34-36 s here, alone 2.4-4.8 s
def test_a_record_of_another_thread_count_is_named_and_reproduced_with_it(small_fmnist, tmp_path, two_threads):
    """Training is bit-exact only per CPU model and thread count: a baseline recorded with 2 threads
    and retrained with 1 leaves the record (at its first epoch, or at the end by the weights' digest:
    real training on this CPU), and the
    refusal names both thread counts and the fix; it holds for 1 thread only, and with the
    recorded 2 threads the same CPU gives the recorded weights back."""
    assert torch.get_num_threads() == 2  # the two_threads fixture
    setting, first, folder = _published(small_fmnist, tmp_path)
    recorded = json.loads((folder / "meta.json").read_text())
    assert (recorded["threads"], recorded["processor"]) == (2, processor(CPU))
    here = machine_text(machine(CPU))
    torch.set_num_threads(1)
    try:
        with pytest.raises(SuiteError) as e:
            get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
        msg = str(e.value)
        with pytest.raises(SuiteError, match="earlier try on this machine said: .*retrained with 1 thread"):
            get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)  # at once: same CPU, same threads
    finally:
        torch.set_num_threads(2)
    # where the thread count changes a prediction, at the first epoch; where it changes only the
    # weights (an AVX2-only EPYC: equal top-1 at every epoch), at the end by their digest
    assert "\n" not in msg and ("epoch 1 gives test top-1" in msg or "weights " in msg), msg
    assert (
        f"(recorded with 2 threads on {here} with torch {torch.__version__}, retrained with 1 thread "
        f"on {here} with torch {torch.__version__}): training is bit-exact only per CPU model, instruction "
        f"set and thread count; rerun with --threads 2. "
    ) in msg, msg
    again = get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)  # as the refusal says
    assert again.digest == first.digest == recorded["weights_sha256"] and again.top1 == first.top1
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["reproduced"][0]["threads"] == 2 and not (folder / "not-reproduced.txt").exists()


@pytest.mark.alone  # 2 threads: on an xdist worker's one core it took 34-36 s here, alone 2.4-4.8 s
def test_a_record_from_another_cpu_is_named_and_one_without_threads_says_so(small_fmnist, tmp_path, two_threads):
    setting, first, folder = _published(small_fmnist, tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["threads"]  # recorded before the thread count was
    (folder / "meta.json").write_text(json.dumps({**meta, "processor": "AMD EPYC 7B13", "top1": meta["top1"] + 1}))
    with pytest.raises(SuiteError) as e:
        get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
    msg = str(e.value)
    isa = meta["isa"]  # this machine's, kept: only the model name differs
    assert (
        f"(recorded with an unrecorded thread count on AMD EPYC 7B13 ({isa}) with torch {torch.__version__}, "
        f"retrained with 2 threads on {machine_text(machine(CPU))} with torch {torch.__version__}): training is "
        f"bit-exact only per CPU model, instruction set and thread count; retrain on a AMD EPYC 7B13 ({isa}). "
    ) in msg, msg
    assert "--threads" not in msg


@pytest.mark.alone  # 2 threads: on an xdist worker's one core it took 34-36 s here, alone 2.4-4.8 s
def test_a_record_from_the_same_cpu_model_with_other_instructions_is_named(small_fmnist, tmp_path, two_threads):
    """Two virtual machines called "AMD EPYC" ran one with AVX512-BF16 and one with AVX-512 masked: the
    model name is the same, the kernels are not. A record made with other instructions is refused
    with both named and the fix (the other machine), not blamed on a seed."""
    setting, first, folder = _published(small_fmnist, tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["isa"] == machine(CPU)["isa"] and meta["isa"].split()[0] == torch.backends.cpu.get_cpu_capability()
    other = "AVX2" if meta["isa"].startswith("AVX512") else "AVX512 AVX512-BF16"
    (folder / "meta.json").write_text(json.dumps({**meta, "isa": other, "top1": meta["top1"] + 1}))
    with pytest.raises(SuiteError) as e:
        get_baseline(setting, small_fmnist, 0, tmp_path, CPU, smoke=True)
    msg = str(e.value)
    assert f"on {processor(CPU)} ({other}) with torch" in msg and f"retrain on a {processor(CPU)} ({other}). " in msg, (
        msg
    )
    assert f"retrained with 2 threads on {processor(CPU)} ({meta['isa']}) with torch" in msg, msg


# ---------------------------------------------------------------------------- messages (issue 15 item 8)
def test_own_corrupt_baseline_is_not_told_to_delete_it(tmp_path):
    from suite.training.baseline import load_user_baseline

    own = tmp_path / "own.pt"
    own.write_bytes(b"\x80\x04 not a checkpoint")
    with pytest.raises(SuiteError) as e:
        load_user_baseline(get_setting(TINY), own, None, CPU)
    assert str(own) in str(e.value) and "torch.save(model.state_dict(), PATH)" in str(e.value)
    assert "delete" not in str(e.value)  # that advice is for the suite's own checkpoints, not the user's file
    assert own.exists()


def test_wrong_architecture_baseline_says_what_mismatched(tmp_path):
    from suite.models.nets import build_model
    from suite.training.baseline import load_user_baseline

    state = build_model("cnn4", 10, 1).state_dict()
    state["classifier.weight"] = torch.zeros(7, state["classifier.weight"].shape[1])  # 7 classes, not 10
    del state["classifier.bias"]
    state["extra.weight"] = torch.zeros(1)
    own = tmp_path / "wrong.pt"
    torch.save(state, own)
    with pytest.raises(SuiteError) as e:
        load_user_baseline(get_setting(TINY), own, None, CPU)
    msg = str(e.value)
    assert "\n" not in msg
    want = tuple(build_model("cnn4", 10, 1).state_dict()["classifier.weight"].shape)
    assert "1 missing key(s) (classifier.bias)" in msg and "1 unexpected key(s) (extra.weight)" in msg
    assert f"classifier.weight {(7, want[1])} where the model has {want}" in msg


@pytest.mark.data
def test_suite_baseline_on_a_diverging_recipe_says_nothing_is_stored(tmp_path):
    import contextlib
    import io
    import tomllib

    import tomli_w

    from suite.cli.commands import main

    table = tomllib.loads(Path(TINY).read_text())
    table["name"] = "tiny-diverging"
    table["baseline"]["lr"] = {"0": 1e12}
    setting = tmp_path / "diverging.toml"
    setting.write_text(tomli_w.dumps(table))
    runs = tmp_path / "runs"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["baseline", "--setting", str(setting), "--runs-dir", str(runs), "--device", "cpu"])
    assert code == 2
    line = err.getvalue().strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "loss became" in line and "is not stored" in line and "recorded as failed" not in line
    assert not [p for p in runs.rglob("*") if p.is_file() and p.name != ".lock"]  # no model, meta or checkpoint
