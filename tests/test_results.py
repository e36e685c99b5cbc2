"""The summary ``suite run`` prints: one table, the spread it shows must exist, then the next command."""

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest

from suite.pages.reports import format_summary
from suite.store.results import RunRecord, aggregate, load_runs


def _result(method, seed, top1, lat=None, **record):
    r = {
        **record,
        "setting": "s",
        "ratios": "0.9",
        "protocol": "paper",
        "method": method,
        "seed": seed,
        "status": "done",
        "top1": top1,
        "baseline_top1": 90.0,
        "baseline_key": "k",
        "params": 1e5,
        "speedup": 2.0,
        "latency_speedup": 1.5,
        "acc_before_removal": 80.0,
        "acc_after_removal": 10.0,
        "wall_seconds": 125.0,
        "budget": {"reg_iters": 100, "finetune_epochs": 1.0, "samples": 8400},
    }
    if lat:
        r["latency"] = {"batch64": lat}
    return RunRecord.read(r, Path(f"/runs/{method}/{seed}")).row()


def _lines(frame):
    out = format_summary(aggregate(frame), Path("/tmp/my runs"))
    return out, {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}


def test_summary_shows_std_over_seeds_and_none_for_one_seed():
    frame = pd.DataFrame([_result("greg1", 0, 70.0), _result("greg1", 1, 73.0), _result("l1", 0, 71.5)])
    out, lines = _lines(frame)
    std = statistics.stdev([70.0, 73.0])  # sample std, as pandas computes it
    assert f"71.50 +- {std:.2f} (n=2)" in lines["greg1"]
    assert "71.50 (n=1)" in lines["l1"] and "+-" not in lines["l1"]
    assert "2m05s" in lines["l1"] and "8,400 (100 it own)" in lines["l1"]  # wall time and samples spent
    assert out.splitlines()[-2] == "runs stored in /tmp/my runs"
    assert out.splitlines()[-1].startswith("next: suite leaderboard --runs-dir '/tmp/my runs'")


def test_summary_latency_has_its_spread_and_noisy_mark():
    clean = {"speedup": 1.5, "speedup_lo": 1.4, "speedup_hi": 1.6, "noisy": False, "device": "cpu"}
    noisy = {**clean, "speedup_lo": 1.0, "speedup_hi": 2.0, "noisy": True}
    frame = pd.DataFrame(
        [
            _result("greg1", 0, 70.0, clean),
            _result("greg1", 1, 71.0, noisy),
            _result("l1", 0, 71.5, clean),
            _result("old", 0, 60.0),
        ]
    )
    _, lines = _lines(frame)
    assert "1.50x [1.20-1.80] noisy" in lines["greg1"]  # means of the two ranges; one noisy run flags the row
    assert "1.50x [1.40-1.60]" in lines["l1"] and "noisy" not in lines["l1"]
    assert "1.50x [no spread]" in lines["old"]  # stored before spread was recorded


def test_summary_keeps_precisions_apart_and_names_them():
    """fp32 runs (and runs stored before the option) and bf16 runs of one method never share a mean;
    the bf16 table says its precision; a record with a precision the suite does not know is shown
    as such rather than breaking the table."""
    rows = [_result("greg1", 0, 80.0), _result("greg1", 1, 82.0)]
    for seed, top1 in ((0, 50.0), (1, 52.0)):
        rows.append(_result("greg1", seed, top1, precision="bf16", channels_last=True))
    agg = aggregate(pd.DataFrame(rows))
    assert dict(zip(agg.numerics, agg.top1_mean)) == {"fp32": 81.0, "bf16, channels-last": 51.0}
    assert [label.startswith("greg1 [bf16, channels-last]") for label in agg.label] == [False, True]
    out = format_summary(agg)
    assert "precision fp32" in out and "precision bf16, channels-last" in out
    odd = RunRecord.read({"method": "greg1", "precision": ["int3"], "baseline_key": "k"}, Path("/runs/x")).row()
    assert odd["numerics"] == "unknown precision \"['int3']\"" and odd["baseline_name"].endswith("['int3']\")")


def test_loading_the_store_skips_what_it_cannot_read_and_keeps_the_rest(tmp_path):
    """A hand-damaged result.json (not JSON, or JSON that is no record) drops its run only; a
    damaged, missing or non-object config.json leaves the run listed with an unrecorded processor
    instead of stopping the page. Every one of them is named, with what is wrong."""

    def run(name, result, config):
        folder = tmp_path / "s" / "0.9" / name
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(result)
        if config is not None:
            (folder / "config.json").write_text(config)

    good = {"setting": "s", "method": "greg1", "seed": 0, "status": "done", "top1": 70.0}
    run("a", json.dumps(good), json.dumps({"processor": "Some CPU"}))
    run("b", '{"setting": "s", "top1": 7', json.dumps({"processor": "Other CPU"}))
    run("c", json.dumps({**good, "seed": 1}), "{not json")
    run("d", json.dumps({**good, "seed": 2}), None)
    run("e", "[70.0]", json.dumps({"processor": "Other CPU"}))  # JSON, but not a run's record
    run("f", json.dumps({**good, "seed": 3}), '["Other CPU"]')  # a config.json that is no record
    run("g", json.dumps({**good, "seed": 4, "latency": []}), "{}")  # a record, one of its fields no object
    run("h", json.dumps({**good, "seed": 5, "top1": "70.0"}), "{}")  # a number written as text
    run("i", '{"setting": "s", "seed": 6, "top1": 70.0, "top1": 99.0}', "{}")  # a key given twice
    unreadable = []
    frame = load_runs(tmp_path, unreadable)
    assert sorted(frame.seed) == [0, 1, 2, 3]
    assert dict(zip(frame.seed, frame.processor)) == {
        0: "Some CPU",
        1: "an unrecorded processor",
        2: "an unrecorded processor",
        3: "an unrecorded processor",
    }
    assert {u.folder.name: (u.problem, u.listed) for u in unreadable} == {
        "b": ("result.json: truncated JSON", False),
        "c": ("config.json: not JSON (Expecting property name enclosed in double quotes at line 1 column 2)", True),
        "d": ("config.json: missing", True),
        "e": ("result.json: a JSON list, not a record", False),
        "f": ("config.json: a JSON list, not a record", True),
        "g": ("result.json: a field of the wrong type (AttributeError: 'list' object has no attribute 'get')", False),
        "h": ("result.json: a field of the wrong type (TypeError: top1 is '70.0', not a number)", False),
        "i": ("result.json: a key given twice ('top1')", False),
    }
    assert {u.setting for u in unreadable} == {"s"}  # runs/<setting>/<method>/<hash>: the page it belongs to


@pytest.mark.parametrize(
    "text,problem",
    [
        ('{"top1": 70.5, "status": "do', "truncated JSON"),  # cut inside a string
        ('{"top1": 70.5, "status": "done"', "truncated JSON"),  # cut before the closing brace
        ('{"top1": 70.5, "ok": tr', "truncated JSON"),  # cut inside a literal
        ('{"top1": 70.', "truncated JSON"),  # cut inside a number
        ('{"top1": -', "truncated JSON"),
        ('{"top1": 70.5, "ok": tx}', "not JSON (Expecting value at line 1 column 22)"),
        ('{"top1": 70.5,\n "status": }\n', "not JSON (Expecting value at line 2 column 12)"),
        ("", "empty"),
        ("null", "a JSON null, not a record"),
        ("7", "a JSON number, not a record"),
    ],
)
def test_a_damaged_record_is_named_by_what_is_wrong(tmp_path, text, problem):
    from suite.store.files import read_json_record

    path = tmp_path / "result.json"
    path.write_text(text)
    assert read_json_record(path) == ({}, problem)
    assert read_json_record(tmp_path / "absent.json") == ({}, "missing")
    path.write_bytes(b"\xff\xfe{")
    assert read_json_record(path) == ({}, "not text (not UTF-8)")


def test_a_record_stored_before_newer_fields_reads_with_their_defaults():
    """The typed record gives an old result.json the defaults it documents: its own training under
    the old name, no latency spread (NaN, unknown noisiness), paper protocol, no rounding, fp32."""
    import math

    old = {"method": "greg1", "seed": 0, "top1": 70.0, "budget": {"reg_iters": 1200}, "latency": {"batch64": {}}}
    rec = RunRecord.read(old, Path("/runs/old"))
    assert rec.own_iters == 1200 and rec.protocol == "paper" and rec.round_to == 1 and rec.numerics == "fp32"
    assert math.isnan(rec.latency_lo) and math.isnan(rec.latency_hi) and rec.latency_noisy is None
    assert rec.training_code == "unrecorded" and rec.processor == "an unrecorded processor"
    row = rec.row()
    assert list(row)[-3:] == ["finished_at", "run", "processor"] and row["own_iters"] == 1200


def test_suite_run_refuses_to_reuse_a_damaged_result(tmp_path):
    """A stored result.json that the pages would name as damaged is not reused by ``suite run``
    either (nor trained over): one line naming the file, what is wrong and the fix."""
    import types

    import torch

    from suite.errors import SuiteError
    from suite.running.runner import Runner
    from suite.spec.plan import plan
    from suite.spec.settings import get_setting

    setting = get_setting("fmnist-cnn4-quick")
    job = plan(setting, ["l1"], [0], train_size=60000)[0]
    data = types.SimpleNamespace(fingerprint="f" * 16, val=None)  # stored() reads no sample
    runner = Runner(setting, data, tmp_path, torch.device("cpu"))
    folder = runner.folder(job)
    folder.mkdir(parents=True)
    good = {"setting": setting.name, "method": "l1", "seed": 0, "status": "done", "top1": 70.0}
    (folder / "result.json").write_text(json.dumps(good))
    assert runner.stored(job)["top1"] == 70.0
    (folder / "result.json").write_text(json.dumps({**good, "status": "failed", "top1": None}))
    assert runner.stored(job) is None  # a failed run is trained again
    for text, problem in [
        (json.dumps({**good, "top1": "70"}), "(a field of the wrong type (TypeError: top1 is '70', not a number))"),
        (json.dumps({**good, "seed": True}), "(a field of the wrong type (TypeError: seed is True, not a number))"),
        (
            json.dumps({**good, "round_to": "8"}),
            "(a field of the wrong type (TypeError: round_to is '8', not a number))",
        ),
        (
            json.dumps({**good, "method_columns": {"mag_ratio": "31.2"}}),
            "(a field of the wrong type (TypeError: method_columns['mag_ratio'] is '31.2', not a number))",
        ),
        (
            json.dumps({**good, "method_columns": [31.2]}),
            "(a field of the wrong type (TypeError: method_columns is [31.2], not a record))",
        ),
        ('{"status": "done", "top1": 70.0, "top1": 99.0}', "(a key given twice ('top1'))"),
        ('{"status": "done", "top1": 7', "(truncated JSON)"),
    ]:
        (folder / "result.json").write_text(text)
        with pytest.raises(SuiteError) as e:
            runner.stored(job)
        assert (
            str(e.value) == f"{folder / 'result.json'} is unreadable {problem}; delete its run folder to recompute it"
        )
