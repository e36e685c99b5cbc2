"""The kinds of latency search (``--latency-search``: :mod:`suite.measure.latency_target`) and their
words wherever they show, in one table: a new kind is one entry here, and the CLI's choices, a run's
target text and the setting page's sections all read it. A module of its own, without torch, so
that the CLI can offer the choices without importing what a search needs."""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import SuiteError

# The per-unit search's choice of the unit to raise (``latency_target.choose_unit``), in the key of its records
# since stop 57: the searches of stops 48-56 ranked by time saved per parameter alone, and where no
# raise saved time that raised the largest units first. Their records keep their names and are
# reused with a warning (the published comparisons were trained on their ratios).
CHOICE = "saving per parameter, else least cost"


@dataclass(frozen=True)
class SearchKind:
    """One kind of search: what keys its records, and how a run's target text and a setting page name it."""

    choice: str | None  # the choice of unit its records are keyed by (a uniform search has one unit: none)
    run_words: str  # after "2x latency" in a run's target text (the pages match runs to their search by it)
    cut: str | None  # what a setting page calls its cut, one section each (the uniform cut: a reference row)
    # how a section says what its search counted as the capacity a raise costs (None: the
    # parameters a raise removes, which the section's opening says in its own words)
    how_spread: str | None = None


# the kinds in the order their sections show on a page; the two spread kinds came with stop 58, and a
# per-unit search's runs keep the target text they were published with (no words)
SEARCHES = {
    "per-unit": SearchKind(CHOICE, "", "per-stage"),
    "spread": SearchKind(
        "saving per growth in squared removed shares, else least cost",
        " spread over the units",
        "spread per-stage",
        "a layer's parameters counted by the square of its removed share",
    ),
    "spread-flops": SearchKind(
        "saving per growth in FLOPs-weighted squared removed shares, else least cost",
        " spread over the units by FLOPs",
        "FLOPs-spread per-stage",
        "a layer's multiply-adds counted by the square of its removed share",
    ),
    "uniform": SearchKind(None, " with one uniform ratio", None),
}


# What ``--target Nx-latency`` searches when no kind is named: the only per-stage kind that has not
# kept less top-1 than the uniform cut of the same target on any comparison stored (ResNet-18 aligned
# to 32, stop 58: level; ResNet-20, stop 59: more), where ``per-unit`` kept 1.8-6 points less on
# all three it was asked on. ``per-unit`` was the default until stop 59: its records and runs keep
# their names, and the campaigns that compare against it name it.
DEFAULT_SEARCH = "spread-flops"


def search_kind(kind: str) -> SearchKind:
    """The kind of search named ``kind``; an unknown name is a one-line error."""
    if kind not in SEARCHES:
        raise SuiteError(f"latency search {kind!r}: must be one of {', '.join(SEARCHES)}")
    return SEARCHES[kind]
