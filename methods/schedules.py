"""The schedules the methods run under each kind of budget a setting has, by budget name.

A setting names its budget (``method_overrides=schedules("paper-cifar")``) and this module says
what each method changes under it: the suite never names a method (its settings, plan and pages
read the result as ``{method pattern: {field: value}}``, the form a setting's TOML takes too).

GReg's paper recipes (GREG_SPEC.md, "The paper's recipes"): the penalty grows every 10 iterations
and stabilizes for 10,000 on CIFAR, every 5 and 40,000 on ImageNet. The CPU settings grow it every
iteration (K_u = 1) and stabilize briefly, so the schedule takes minutes on their nets, not hours;
their comments in ``suite/spec/settings.py`` give each one's reason (the quick start's shorter
ceiling among them).
"""

from __future__ import annotations

import copy

SCHEDULES: dict[str, dict[str, dict]] = {
    "paper-cifar": {"greg*": {"update_interval": 10, "stabilize_iters": 10_000}},
    "paper-imagenet": {"greg*": {"update_interval": 5, "stabilize_iters": 40_000}},
    "cpu-fmnist": {"greg*": {"update_interval": 1, "stabilize_iters": 500}},
    "cpu-cifar10": {"greg*": {"update_interval": 1, "stabilize_iters": 1000}},
    "cpu-quick": {"greg*": {"update_interval": 1, "stabilize_iters": 200, "penalty_increment": 1e-3}},
}


def schedules(budget: str) -> dict[str, dict]:
    """What each method changes under ``budget`` (a copy: a setting may not alter another's)."""
    if budget not in SCHEDULES:
        raise KeyError(f"no method schedules for budget {budget!r}; known: {', '.join(SCHEDULES)}")
    return copy.deepcopy(SCHEDULES[budget])
