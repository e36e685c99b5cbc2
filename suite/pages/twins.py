"""Rows of one table that are one pruned model counted twice.

Two criteria can rank a model's structures differently and still cut it into the same function:
where their picks differ, the structures may carry nothing (near-silent channels of a ViT's MLP).
Their rows then agree to the last printed digit and read as two methods confirming each other,
when they are one result. A page cannot tell from the picks alone (equal picks of a method that
trained first, GReg, are another model), so it reads what the runs recorded right after removal:
the top-1 after removal and the first epoch of fine-tuning. Two runs of one seed that fine-tune
from the same function log the same losses to rounding (agreement to 5 or more significant digits);
different models do not come within 4 (``SAME_DIGITS``). Nothing here names a method.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from suite.store.files import read_json_record

# Significant digits two runs' first fine-tuning losses must share to be one model. Measured over the
# 1,164 same-seed pairs of rows in one table of the stored runs (stop 52): 30 pairs bit-identical (one
# criterion under two names: l1, tp-l1 and nni-l1 on fmnist-cnn4; tp-l2 and tp-lamp; magnitude and
# nni-level), 2 at 6.1 digits (l1 and tp-taylor on fmnist-vit, picks 92 % shared), every other pair
# at 3.3 digits or fewer (the closest: greg1 and greg2 of one seed, whose top-1 after removal differ).
SAME_DIGITS = 5


@dataclass(frozen=True)
class Start:
    """What one run recorded of the pruned model it fine-tuned: its structures removed
    (layer, index), its top-1 right after removal, and its first fine-tuning epoch."""

    seed: int
    removed: frozenset | None  # None: the run did not record its pick
    after: float
    first_loss: float
    first_test_loss: float
    first_test_top1: float
    top1: float
    # every evaluated fine-tuning epoch: (epoch, training loss, test top-1, test loss)
    epochs: tuple[tuple[float, float, float, float], ...] = ()
    last_epoch: float = 0.0  # where its fine-tuning ended


def start_of(run: Path) -> Start | None:
    """The start of ``run``'s fine-tuning, or None when it recorded no fine-tuning epoch (a run that
    fine-tunes nothing, or one stored before its log was kept)."""
    record, problem = read_json_record(run / "result.json")
    if problem or record.get("acc_after_removal") is None:
        return None
    try:
        with open(run / "log.csv", newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("phase", "").endswith("fine-tune")]
    except OSError:
        return None
    if not rows:
        return None
    first = rows[0]
    picks = record.get("pruned_filters")
    removed = (
        frozenset((layer, int(i)) for layer, idx in picks.items() for i in idx) if isinstance(picks, dict) else None
    )
    try:
        return Start(
            seed=record["seed"],
            removed=removed,
            after=float(record["acc_after_removal"]),
            first_loss=float(first["loss"]),
            first_test_loss=float(first["test_loss"]),
            first_test_top1=float(first["test_top1"]),
            top1=float(record["top1"]),
            epochs=tuple(
                (float(r["epoch"]), float(r["loss"]), float(r["test_top1"]), float(r["test_loss"]))
                for r in rows
                if r.get("test_top1")
            ),
            last_epoch=float(rows[-1]["epoch"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def digits(x: float, y: float) -> float:
    """Significant digits two numbers share (inf when equal)."""
    if x == y:
        return math.inf
    return -math.log10(abs(x - y) / max(abs(x), abs(y)))


def _shared_digits(a: Start, b: Start) -> float:
    """The digits their first fine-tuning epoch agrees to (the worse of training and test loss), or
    0 when anything read right after removal differs."""
    if a.after != b.after or a.first_test_top1 != b.first_test_top1:
        return 0.0
    return min(digits(a.first_loss, b.first_loss), digits(a.first_test_loss, b.first_test_loss))


def _agree_through(a: Start, b: Start) -> float:
    """The last fine-tuning epoch up to which two runs logged the same test top-1 and the same losses
    (to ``SAME_DIGITS``): where one model's two trainings parted, if they did."""
    through = 0.0
    for (ea, la, ta, tla), (eb, lb, tb, tlb) in zip(a.epochs, b.epochs):
        if ea != eb or ta != tb or min(digits(la, lb), digits(tla, tlb)) < SAME_DIGITS:
            break
        through = ea
    return through


class _Pair(NamedTuple):
    """Two rows that fine-tuned one model on every seed they share."""

    a: str
    b: str
    runs: list[tuple[Start, Start]]  # per shared seed
    digits: float  # the worst seed's
    overlap: float | None  # mean over seeds of the share of a's removed structures b removed too


def table_starts(part: pd.DataFrame) -> dict[str, dict[int, Start]]:
    """Per row (``label``) of a table, the start of each of its runs' fine-tuning, by seed: read
    once per table and handed to both ``twins`` and ``partly``."""
    starts: dict[str, dict[int, Start]] = {}
    for label, folders in zip(part.label, part.runs):
        found = (start_of(Path(f)) for f in folders)
        starts[label] = {s.seed: s for s in found if s is not None}
    return starts


def twins(part: pd.DataFrame, starts: dict[str, dict[int, Start]] | None = None) -> list[dict]:
    """Groups of rows of one table (aggregated rows: ``label``, ``runs``) that
    fine-tuned one function on every seed each pair of them shares: for the page to say so under the
    table. Each group gives its labels (in the table's order), the seeds its pairs share, the top-1
    right after removal, the digits the first fine-tuning epoch agrees to (worst pair and seed; None
    when equal to the last bit), the share of one's removed structures the other removed too (the
    lowest pair's mean over seeds; None when a run did not record its pick) and the largest
    difference of two of its runs' final top-1 on one seed; then its ``title`` and ``text``
    (``describe``). ``starts``: ``table_starts(part)``, when the caller has read them already."""
    starts = table_starts(part) if starts is None else starts
    group_of = {label: {label} for label in starts}  # one model's rows, joined pair by pair
    pairs: list[_Pair] = []
    for a, b in combinations(list(starts), 2):
        runs = [(starts[a][seed], starts[b][seed]) for seed in sorted(set(starts[a]) & set(starts[b]))]
        if not runs:
            continue
        agree = min(_shared_digits(x, y) for x, y in runs)
        if agree < SAME_DIGITS:
            continue
        shares = [len(x.removed & y.removed) / len(x.removed) for x, y in runs if x.removed and y.removed]
        pairs.append(_Pair(a, b, runs, agree, sum(shares) / len(shares) if len(shares) == len(runs) else None))
        joined = group_of[a] | group_of[b]
        for label in joined:
            group_of[label] = joined
    out = []
    for group in {frozenset(g) for g in group_of.values() if len(g) > 1}:
        inside = [p for p in pairs if p.a in group and p.b in group]
        overlaps = [p.overlap for p in inside]
        agree = min(p.digits for p in inside)
        out.append(
            {
                "labels": [label for label in starts if label in group],
                "seeds": sorted({x.seed for p in inside for x, _ in p.runs}),
                "after": sorted({x.after for p in inside for x, _ in p.runs}),
                "digits": None if agree == math.inf else int(agree),
                "overlap": None if None in overlaps else min(overlaps),
                # seed by seed, not the rows' means: a row may have seeds the other lacks
                "top1_spread": max(abs(x.top1 - y.top1) for p in inside for x, y in p.runs),
                # the logs agree up to this epoch (worst pair and seed), of the longest fine-tuning
                "agree_through": min(_agree_through(x, y) for p in inside for x, y in p.runs),
                "last_epoch": max(z.last_epoch for p in inside for x, y in p.runs for z in (x, y)),
            }
        )
    out = sorted(out, key=lambda g: list(starts).index(g["labels"][0]))
    return [{**g, **dict(zip(("title", "text"), describe(g)))} for g in out]


def describe(group: dict) -> tuple[str, str]:
    """The heading and the sentences that say a group is one result, for the page under its table
    and the summary ``suite run`` prints."""
    labels = group["labels"]
    times = {2: "twice", 3: "three times"}.get(len(labels), f"{len(labels)} times")
    title = f"{', '.join(labels[:-1])} and {labels[-1]}: one pruned model, counted {times}."
    seeds = group["seeds"]
    on = f"seed {seeds[0]}" if len(seeds) == 1 else "each of seeds " + ", ".join(str(s) for s in seeds)
    after = "; ".join(f"{a:.2f} %" for a in group["after"])
    losses = (
        "bit-identical losses"
        if group["digits"] is None
        else f"the same losses to {group['digits']} significant digits"
    )
    text = (
        f"On {on} their models score the same right after removal ({after}) "
        f"and log {losses} in their first fine-tuning epoch"
    )
    if group["overlap"] is None:
        text += "."
    elif group["overlap"] == 1:
        text += ": they removed the same structures."
    else:
        text += (
            f", though only {100 * group['overlap']:.1f} % of the structures they removed are the same: "
            "the others changed nothing measurable."
        )
    text += " Read these rows as one result, not as methods that confirm each other"
    if group["top1_spread"] >= 0.005:
        text += f"; their final top-1 accuracies differ by up to {group['top1_spread']:.2f} points on a seed"
        if group["agree_through"] < group["last_epoch"]:
            text += (
                f", which arose after epoch {group['agree_through']:g} of {group['last_epoch']:.1f} "
                "(their logs agree up to it)"
            )
    return title, text + "."


def partly(part: pd.DataFrame, starts: dict[str, dict[int, Start]] | None = None) -> dict | None:
    """Rows that fine-tuned one model with another row on some of the seeds they share, not all: a
    criterion that reads data batches (a gradient's) can rank like one row on one seed and like
    another on the next. Its ``title`` and ``text`` say which pairs on which seeds, and name a row
    that is on every seed another row's model: its mean over seeds is theirs, not evidence of its
    own. None when no pair is one model on part of its seeds only. ``starts`` as for ``twins``."""
    starts = table_starts(part) if starts is None else starts
    found, copied = [], {label: set() for label in starts}
    for a, b in combinations(list(starts), 2):
        shared = sorted(set(starts[a]) & set(starts[b]))
        same = [seed for seed in shared if _shared_digits(starts[a][seed], starts[b][seed]) >= SAME_DIGITS]
        copied[a].update(same)
        copied[b].update(same)
        if same and len(same) < len(shared):
            found.append((a, b, same, [seed for seed in shared if seed not in same]))
    if not found:
        return None
    clauses = [f"{a} and {b} on {_seeds(same)} (not on {_seeds(other)})" for a, b, same, other in found]
    text = "These rows fine-tuned the same pruned model on some of their seeds only: " + "; ".join(clauses) + "."
    involved = {label for a, b, _, _ in found for label in (a, b)}
    copies = [
        label
        for label in starts
        if label in involved and len(starts[label]) > 1 and copied[label] == set(starts[label])
    ]
    if copies:
        text += (
            f" {' and '.join(copies)}: on every seed another row's model, so its mean over seeds is "
            "theirs, not evidence of its own."
        )
    return {"title": "Partly one model.", "text": text}


def _seeds(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(str(s) for s in seeds)
