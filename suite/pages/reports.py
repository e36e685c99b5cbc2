"""What the terminal shows: the dry run's plan, the line for each job as it finishes, the summary
table ``suite run`` prints at its end and the lines naming stored runs that could not be read.
Pages are ``suite.pages.leaderboard``; both read the same aggregation (``suite.store.results``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pandas as pd

from suite.pages.twins import partly, table_starts, twins
from suite.store.results import COMPARISON, Unreadable, unreadable_count


def report_unreadable(unreadable: list[Unreadable]) -> None:
    """One line per run (or latency record) on stderr, then the count, so a listing that cannot show
    one says so."""
    for u in unreadable:
        print(f"unreadable {u.what}: {u.folder} {u.detail}", file=sys.stderr)
    if unreadable:
        print(f"{unreadable_count([u.what for u in unreadable])} could not be read (named above)", file=sys.stderr)


def job_line(jr) -> str:
    """The line ``suite run`` prints as each job finishes (or is found): its state and its numbers."""
    r = jr.result
    state = "cached" if jr.cached else r["status"]
    if jr.stale:
        state = (
            f"cached, STALE (trained by training code {r.get('training_code') or 'unrecorded'}, "
            f"today's differs; --recompute-stale retrains it)"
        )
    if "same_training_as" in r:
        state = f"same training as paper-protocol run {r['same_training_as']}"
    detail = (
        f"top-1 {r['top1']:.2f} (before/after removal {r['acc_before_removal']:.1f}/"
        f"{r['acc_after_removal']:.1f}), {r['speedup']:.2f}x FLOPs"
        if r["status"] != "failed"
        else r["error"]
    )
    return f"    {state}: {detail}"


def plan_report(runner, jobs) -> str:
    """The dry run: each job's state and folder, and each method's budget in iterations and samples."""
    setting, data = runner.setting, runner.data
    ft, lines = setting.finetune, []
    for j in jobs:
        stored = runner.stored(j)
        state = "to run" if stored is None else ("stale" if runner.is_stale(j, stored) else "cached")
        own = j.planned_prune_iters()
        budget = f"own training {own} it x {setting.prune.batch_size}" if own else "no own training"
        if not j.schedule_fits():
            budget += f" (CAPPED: its schedule is longer than the setting's cap of {setting.prune.max_iters})"
        if j.total_samples is not None:
            budget += f"; total {j.total_samples} samples"
        lines.append(f"  {state:<7} {j.method:<20} seed {j.seed}  {budget}  {runner.folder(j)}")
    todo = sum(runner.stored(j) is None for j in jobs)
    lines.append(
        f"{todo} to run, {len(jobs) - todo} stored; each: fine-tune {ft.epochs} epochs "
        f"({ft.epochs * data.batches_per_epoch(ft.batch_size)} iterations of {ft.batch_size})"
        + (
            "; an equal-sample budget stretches it to fill the budget"
            if any(j.protocol == "total" for j in jobs)
            else ""
        )
    )
    return "\n".join(lines)


def latency_text(speedup: float, lo: float, hi: float, noisy) -> str:
    """``1.51x [1.30-1.70]`` with the quartile range, ``noisy`` appended when flagged; runs stored
    before spread was recorded say so instead of showing a bare number as if it were exact."""
    if lo != lo or hi != hi:
        return f"{speedup:.2f}x [no spread]"
    return f"{speedup:.2f}x [{lo:.2f}-{hi:.2f}]" + (" noisy" if noisy else "")


def format_summary(agg: pd.DataFrame, runs_dir: Path | None = None) -> str:
    """The table printed at the end of ``suite run``: one table per target, then where the runs
    are and the command that turns them into pages."""
    if agg.empty:
        return "no finished runs"
    lines = []
    for _key, part in agg.groupby(COMPARISON, sort=False, dropna=False):
        first = part.iloc[0]
        weights = first.granularity == "weight"
        budget = (
            first.protocol
            if first.budget_samples != first.budget_samples or first.budget_samples is None
            else f"{first.protocol}, {int(first.budget_samples):,} samples"
        )
        lines.append(
            f"{first.setting}  target {first.ratios}{' (unstructured: weight sparsity)' if weights else ''}  "
            f"budget protocol: {budget}  precision {first.numerics}  "
            f"{part.baseline_name.iloc[0]}: top-1 {part.baseline_top1.iloc[0]:.2f}"
        )
        # masked weights still cost their FLOPs: unstructured rows show what they remove instead
        size = (
            {
                "non-zero params": part.nonzero_params.map(lambda p: f"{round(p):,}"),
                "sparsity": part.sparsity.map(lambda x: f"{100 * x:.1f}%"),
            }
            if weights
            else {
                "params": part.params.map(lambda p: f"{round(p):,}"),
                "FLOPs x": part.speedup.map(lambda x: f"{x:.2f}x"),
            }
        )
        table = pd.DataFrame(
            {
                "method": part.label,
                "top-1 mean (n)": [_mean_spread(m, s, n) for m, s, n in zip(part.top1_mean, part.top1_std, part.n)],
                "vs baseline": part.delta.map(lambda d: f"{d:+.2f}"),
                "before/after removal": [f"{b:.1f} / {a:.1f}" for b, a in zip(part.before_removal, part.after_removal)],
                **size,
                "latency x [IQR range]": [
                    latency_text(*v)
                    for v in zip(part.latency_speedup, part.latency_lo, part.latency_hi, part.latency_noisy)
                ],
                "samples (own)": [_samples(t, r) for t, r in zip(part.samples, part.own_iters)],
                "wall time": part.wall_seconds.map(_duration),
            }
        )
        lines.append(table.to_string(index=False))
        ordered = part.sort_values("top1_mean", ascending=False)
        starts = table_starts(ordered)
        lines += [f"  {g['title']} {g['text']}" for g in [*twins(ordered, starts), partly(ordered, starts)] if g]
        lines.append("")
    if runs_dir is not None:
        lines.append(f"runs stored in {runs_dir}")
        lines.append(
            f"next: suite leaderboard --runs-dir {shlex.quote(str(runs_dir))}  (pages with charts in "
            f"leaderboards/; --out DIR elsewhere)"
        )
    return "\n".join(lines).rstrip()


def _samples(total, own_iters) -> str:
    """Training samples after the baseline (own training + fine-tuning), the method's own
    iterations in brackets; ``?`` for runs stored before samples were counted."""
    if total is None or total != total:
        return "?"
    return f"{int(total):,} ({int(own_iters):,} it own)" if own_iters else f"{int(total):,}"


def _duration(seconds) -> str:
    """Mean wall time per job, ``1h02m`` / ``4m05s`` / ``12s``; ``?`` when not recorded."""
    if seconds is None or seconds != seconds:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _mean_spread(mean: float, std: float, n: int) -> str:
    """``mean +- std (n=N)``; one seed has no spread, so none is shown (a ``+- 0.00`` would claim one)."""
    return f"{mean:.2f} (n={n})" if n < 2 else f"{mean:.2f} +- {std:.2f} (n={n})"
