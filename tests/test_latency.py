"""suite latency: every runtime returns a time or a recorded failure, the pruned model's ONNX
output is its eager output, bad input is one line. Timings use random weights (time only)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from suite.errors import SuiteError
from suite.measure.latency import RUNTIMES, compare, onnx_runner, parse_runtimes, repeat_until_steady, setting_models
from suite.spec.settings import get_setting

CPU = torch.device("cpu")
TINY = dict(warmup=1, rounds=1, round_size=3, min_repeats=3)


@pytest.fixture(scope="module")
def cnn4_models():
    return setting_models(get_setting("fmnist-cnn4"))


def test_pruned_model_is_smaller(cnn4_models):
    base, pruned, flops = cnn4_models
    assert flops["pruned"] < flops["baseline"]
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in base.parameters())


def test_every_runtime_gives_a_time_or_a_failure(cnn4_models):
    base, pruned, _ = cnn4_models
    rows = compare(base, pruned, (1, 28, 28), list(RUNTIMES), [2], CPU, **TINY)
    assert [r["runtime"] for r in rows] == list(RUNTIMES)
    for r in rows:
        for t in (r["baseline"], r["pruned"]):
            assert (t["error"] is None) != (t["median_ms"] is None)  # exactly one of a time and a message
            if t["error"] is None:
                assert t["repeats"] == 3 and 0 < t["q1_ms"] <= t["median_ms"] <= t["q3_ms"]
                assert t["threads"] == torch.get_num_threads()
        if r["speedup"] is not None:
            assert r["speedup"] == pytest.approx(r["baseline"]["median_ms"] / r["pruned"]["median_ms"])
    eager = rows[0]
    assert eager["baseline"]["error"] is None and eager["pruned"]["error"] is None


def test_pruned_onnx_output_equals_eager(cnn4_models, tmp_path):
    _, pruned, _ = cnn4_models
    x = torch.randn(3, 1, 28, 28)
    run = onnx_runner(pruned, x, tmp_path, threads=1)
    with torch.no_grad():
        eager = pruned(x).numpy()
    assert np.allclose(run()[0], eager, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_failing_runtime_is_recorded_not_raised(runtime, tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("this model cannot run")

    from suite.measure.latency import time_runtime
    t = time_runtime(Broken(), runtime, (4,), 1, CPU, tmp_path, **TINY)
    assert t.median_ms is None and t.repeats == 0
    assert "cannot run" in t.error and "\n" not in t.error


def test_repeats_stop_when_steady_and_say_when_not(monkeypatch):
    """On a clock the calls advance by a set amount (a real sleep wakes late on a busy machine)."""
    import types

    import suite.measure.latency as latency
    now = [0.0]
    monkeypatch.setattr(latency, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def steady():  # 20 ms every call: the first round is under 5 %
        now[0] += 0.020

    times, ok = repeat_until_steady(steady, warmup=0, rounds=5, round_size=10, min_repeats=10)
    assert ok and times == pytest.approx([20.0] * 10)
    calls = iter(range(10 ** 6))

    def jittery():  # alternating 0 ms and 2 ms: the IQR is the whole spread, never under 5 %
        now[0] += 0.002 * (next(calls) % 2)

    times, ok = repeat_until_steady(jittery, warmup=0, rounds=2, round_size=10, min_repeats=10)
    assert not ok and len(times) == 20


@pytest.mark.parametrize("text", ["eager,tensorrt", ""])
def test_bad_runtimes_are_one_line_errors(text):
    with pytest.raises(SuiteError, match="runtime"):
        parse_runtimes(text)


def test_cli_bad_input_exit_2():
    out = subprocess.run([sys.executable, "-m", "suite.cli", "latency", "--runtimes", "tvm"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: --runtimes") and out.stderr.count("\n") == 1


def test_report_prints_the_slowest_layers_first():
    from suite.measure.latency import TOP_LAYERS, format_report, report
    rep = report(get_setting("fmnist-cnn4"), None, ["eager"], [1], CPU, layer_passes=3, **TINY)
    base, _, _ = setting_models(get_setting("fmnist-cnn4"))
    assert {r["layer"] for r in rep["layers"]} == {n for n, m in base.named_modules() if not list(m.children())}
    assert rep["layer_profile"]["batch"] == 64 and rep["layer_profile"]["passes"] == 3
    text = format_report(rep).splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("per layer: eager, batch 64")) + 2
    shown = [line.split()[0] for line in text[start:start + TOP_LAYERS]]
    times = {r["layer"]: r["baseline_ms"] for r in rep["layers"]}
    assert len(shown) == TOP_LAYERS and [times[n] for n in shown] == sorted(times.values(), reverse=True)[:TOP_LAYERS]
    assert text[start + TOP_LAYERS].startswith(f"top {TOP_LAYERS} of {len(times)} layers: ")
