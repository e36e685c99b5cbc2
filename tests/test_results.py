"""The summary ``suite run`` prints: the spread it shows must exist."""
import statistics

import pandas as pd

from suite.results import format_summary, summarize


def _row(method, seed, top1):
    return {"setting": "s", "ratios": "0.9", "protocol": "paper", "method": method, "seed": seed,
            "status": "done", "top1": top1, "baseline_top1": 90.0, "params": 1e5, "speedup": 2.0,
            "latency_speedup": 1.5, "reg_iters": 100, "finetune_epochs": 1.0,
            "acc_before_removal": 80.0, "acc_after_removal": 10.0}


def test_summary_shows_std_over_seeds_and_none_for_one_seed():
    frame = pd.DataFrame([_row("greg1", 0, 70.0), _row("greg1", 1, 73.0), _row("l1", 0, 71.5)])
    lines = {line.split()[0]: line for line in format_summary(summarize(frame)).splitlines()[2:]}
    std = statistics.stdev([70.0, 73.0])  # sample std, as pandas computes it
    assert f"71.50 +- {std:.2f} (n=2)" in lines["greg1"]
    assert "71.50 (n=1)" in lines["l1"] and "+-" not in lines["l1"]
