"""Stored latency records (`suite latency --runs-dir`) and the pages' "Latency by runtime" section:
a record is the printed report plus its date, another machine's measurement is another record,
the page shows a record's numbers and a failed runtime as failed with its message."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from suite.measure import latency_records
from suite.pages.leaderboard import render

TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")


def _latency_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", "latency", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A real measurement of the tiny setting (eager, batch 2, short, with a rounding sweep), stored;
    and what it printed."""
    runs = tmp_path_factory.mktemp("lat") / "runs"
    p = _latency_cli(
        "--setting",
        TINY,
        "--runtimes",
        "eager",
        "--batches",
        "2",
        "--max-repeats",
        "10",
        "--layer-passes",
        "3",
        "--threads",
        "1",
        "--round-to",
        "1,8",
        "--json",
        "--runs-dir",
        str(runs),
    )
    assert p.returncode == 0, p.stdout + p.stderr
    files = list((runs / "latency" / "tiny-fmnist").glob("*.json"))
    assert len(files) == 1 and f"stored: {files[0]}" in p.stderr
    return runs, files[0], json.loads(p.stdout)


def _page(runs: Path, out: Path) -> str:
    render(runs, out)
    return (out / "tiny-fmnist.html").read_text()


def test_the_record_is_the_printed_report_and_its_date(stored):
    runs, path, printed = stored
    record = json.loads(path.read_text())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", record.pop("measured_at"))
    assert record == printed
    assert printed["setting"] == "tiny-fmnist" and printed["ratios"] == "0.5" and printed["threads"] == 1
    assert [row["layer"] for row in printed["layers"]][:2] == ["features.0", "features.1"]
    assert [v["round_to"] for v in printed["rounding"]] == [1, 8]
    assert [v["round_to"] for v in printed["rows"][0]["rounded"]] == [8]


def test_another_machine_is_another_record_the_same_one_replaces_itself(stored, tmp_path):
    runs, path, printed = stored
    other = {**printed, "processor": "Some Other CPU", "rows": []}
    assert latency_records.store(runs, other) != path
    assert latency_records.store(runs, {**printed, "rows": []}) == path  # same setting/target/CPU/threads/torch
    try:
        assert json.loads(path.read_text())["rows"] == []
        assert len(latency_records.load(runs)) == 2
    finally:
        latency_records.store(runs, printed)
        latency_records.record_path(runs, other).unlink()


def test_a_stored_record_appears_on_the_page_with_its_numbers(stored, tmp_path):
    runs, path, printed = stored
    record = json.loads(path.read_text())
    page = _page(runs, tmp_path / "site")
    section = html.unescape(page[page.index("<h2>Latency by runtime") :])
    assert "every method prunes to the same per-layer counts" in section
    assert "Target 0.5" in section and f"FLOPs speedup {record['flops_speedup']:.2f}x" in section
    assert (
        f"{record['processor']} ({record['isa']}) (cpu), 1 threads, torch {record['torch']}, measured "
        f"{record['measured_at']}" in section
    )
    (row,) = record["rows"]
    b, p = row["baseline"], row["pruned"]
    cells = [f"{t['median_ms']:.3f} [{t['q3_ms'] - t['q1_ms']:.3f}]" for t in (b, p)]
    shown = re.sub(r"<[^>]+>", "|", section)
    for cell, t in zip(cells, (b, p)):
        assert cell + (" |!|" if not t["converged"] else "|") in shown
    assert f"{b['median_ms'] / p['median_ms']:.2f}x" in section
    assert f"{100 * b['median_ms'] / p['median_ms'] / record['flops_speedup']:.0f} %" in section
    # the per-layer breakdown: the baseline's slowest layer first, with both times
    slowest = max(record["layers"], key=lambda r: r["baseline_ms"])
    table = section[section.index("Where the time goes") :]
    first = re.search(r"<tbody>\s*<tr><td>([^<]+)</td><td[^>]*>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", table)
    assert first.groups() == (
        slowest["layer"],
        slowest["kind"],
        f"{slowest['baseline_ms']:.3f}",
        f"{slowest['pruned_ms']:.3f}",
    )
    assert f"fastest of {record['layer_profile']['passes']} forward passes" in table


def test_the_rounding_sweep_appears_on_the_page_with_its_numbers(stored, tmp_path):
    """The stored ``--round-to 1,8`` sweep is on the page: per N its kept counts, FLOPs speedup, the
    pruned model's time and its speedup with the paired interval, as the record holds them."""
    runs, path, _ = stored
    record = json.loads(path.read_text())
    section = html.unescape(_page(runs, tmp_path / "site"))
    section = section[section.index("Channel alignment") :]
    eight = next(v for v in record["rounding"] if v["round_to"] == 8)
    assert f"8: {', '.join(str(c) for c in sorted(set(eight['kept'].values())))}" in section
    (row,) = record["rows"]
    (r8,) = row["rounded"]
    shown = re.sub(r"<[^>]+>", "|", section)
    cells = f"|eager||2||8||{eight['flops_speedup']:.2f}x||{r8['pruned']['median_ms']:.3f}"
    assert cells in shown, shown[:600]
    assert f"{r8['speedup']:.2f}x [{r8['speedup_ci_lo']:.2f}" in section


def test_a_record_stored_before_paired_timing_still_renders(stored, tmp_path):
    """Records written before baseline and pruned were timed in turns have no numerics, paired
    interval or rounding sweep, and a quartile range in speedup_lo/hi: pages still show them."""
    _, path, _ = stored
    rec = json.loads(path.read_text())
    rec.pop("rounding")
    old_rows = []
    for r in rec["rows"]:
        old = {
            k: v
            for k, v in r.items()
            if k not in ("numerics", "speedup_ci_lo", "speedup_ci_hi", "interval_wide", "rounded")
        }
        for side in ("baseline", "pruned"):
            old[side] = {k: v for k, v in r[side].items() if k != "numerics"}
        old_rows.append({**old, "speedup_lo": 1.0, "speedup_hi": 3.0})
    runs = tmp_path / "runs"
    (runs / "latency" / "tiny-fmnist").mkdir(parents=True)
    (runs / "latency" / "tiny-fmnist" / "old.json").write_text(json.dumps({**rec, "rows": old_rows}))
    page = html.unescape(_page(runs, tmp_path / "site"))
    (row,) = old_rows
    assert f"{row['baseline']['median_ms']:.3f} [{row['baseline']['iqr_ms']:.3f}]" in page
    assert f"{row['speedup']:.2f}x" in page and "Target 0.5" in page


def test_a_failed_runtime_shows_as_failed_with_its_message(stored, tmp_path):
    runs, path, _ = stored
    rec = json.loads(path.read_text())
    failed = {
        **rec["rows"][0],
        "runtime": "onnx",
        "speedup": None,
        "share_of_flops_speedup": None,
        "pruned": {
            **rec["rows"][0]["pruned"],
            "runtime": "onnx",
            "median_ms": None,
            "q1_ms": None,
            "q3_ms": None,
            "iqr_ms": None,
            "error": "<b>RuntimeError: no kernel for this op</b>",
        },
    }
    broken = tmp_path / "runs"
    (broken / "latency" / "tiny-fmnist").mkdir(parents=True)
    (broken / "latency" / "tiny-fmnist" / "r.json").write_text(json.dumps({**rec, "rows": [failed]}))
    (broken / "latency" / "tiny-fmnist" / "junk.json").write_text("[1, 2")  # not a record: left out
    page = _page(broken, tmp_path / "site")
    row = page[page.index("<td>onnx</td>") :]
    row = row[: row.index("</tr>")]
    assert "<strong>failed</strong>" in row and "&lt;b&gt;RuntimeError: no kernel for this op&lt;/b&gt;" in row
    assert "<b>RuntimeError" not in page
    assert f"{failed['baseline']['median_ms']:.3f}" in row and "<td>-</td>" in row  # no speedup from a failure


def test_a_damaged_record_is_named_and_counted_on_the_terminal_and_the_page(stored, tmp_path, capsys):
    """A truncated record and a JSON object that is no latency record (edited by hand): `suite
    leaderboard` names each file, what is wrong and the fix on stderr, then counts them; the setting's
    page says the same above its tables, and the good record's table is still shown."""
    import shutil

    from suite.cli.commands import main

    runs, path, _ = stored
    store = tmp_path / "runs"
    shutil.copytree(runs, store)
    folder = store / "latency" / "tiny-fmnist"
    truncated, foreign = folder / "0000truncated.json", folder / "0000foreign.json"
    text = (folder / path.name).read_text()
    truncated.write_text(text[: len(text) // 2])
    foreign.write_text(json.dumps({"setting": "tiny-fmnist", "rows": 3}))
    site = tmp_path / "site"
    assert main(["leaderboard", "--runs-dir", str(store), "--out", str(site)]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and lines[-1] == "2 stored latency records could not be read (named above)", lines
    fix = "left out; restore the file, or delete it and 'suite latency' with its setting, ratios and --runs-dir"
    assert f"unreadable latency record: {truncated} (truncated JSON): {fix}" in lines[0] + lines[1], lines
    assert f"unreadable latency record: {foreign} (not a latency record (TypeError: " in lines[0] + lines[1], lines
    page = html.unescape((site / "tiny-fmnist.html").read_text())
    assert "2 stored latency records could not be read:" in page
    assert f"{os.path.relpath(truncated, site)}</code> (truncated JSON): left out" in page
    assert page.count("<h3>Target 0.5") == 1  # the good record's table, once
    # a latency search (suite run --target Nx-latency) edited into something else: named too
    searches = store / "tiny-fmnist" / "latency-targets"
    searches.mkdir(parents=True)
    (searches / "edited.json").write_text(json.dumps({"ratios": "0.5"}))
    assert main(["leaderboard", "--runs-dir", str(store), "--out", str(site)]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "3 stored records could not be read (named above)", lines
    assert f"unreadable latency search: {searches / 'edited.json'} (not a latency search record" in "".join(lines)
    assert "3 stored records could not be read:" in html.unescape((site / "tiny-fmnist.html").read_text())


def test_rendering_twice_gives_the_same_pages(stored, tmp_path):
    runs, _, _ = stored
    a, b = tmp_path / "a", tmp_path / "b"
    render(runs, a)
    render(runs, b)
    names = sorted(p.name for p in a.iterdir())
    assert "tiny-fmnist.html" in names and names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize(
    "args,message",
    [
        (["--layer-passes", "-1"], "error: --layer-passes -1"),
        (["--runs-dir", "/dev/null"], "error: runs dir /dev/null is a file"),
    ],
)
def test_bad_options_are_one_line_before_any_timing(args, message):
    p = _latency_cli("--runtimes", "eager", *args)
    assert p.returncode == 2 and p.stderr.startswith(message) and p.stderr.count("\n") == 1 and p.stdout == ""
