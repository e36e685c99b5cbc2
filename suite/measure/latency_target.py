"""Prune to a measured speedup: ``suite latency --target 2x-latency`` finds per-stage ratios whose
latency speedup, measured on this machine under one runtime and batch size, reaches the target.

A FLOPs target cannot promise this: layers left whole and memory-bound convs keep their time, so
the same FLOPs cut buys a different latency in each stage (ResNet-50 at 2.31x fewer FLOPs ran
1.50x faster at best). So the search measures candidate models, not a formula. It starts from the
whole model; each step times, in turns with the baseline and the current model
(:func:`suite.measure.latency.time_group`, short series), one candidate per *unit* (a ResNet
stage's prunable convs, a plain net's conv, a generic model's group of coupled convs) with that
unit's ratio raised by ``step`` (by as many steps as it takes to change the pruned counts: aligned
counts, ``--round-to 8``, keep a 16-channel layer at 8 from 0.1 to 0.3, and timing an unchanged
model again would let its noise win the step), and keeps the candidate whose measured saving per
capacity lost is largest; where no candidate saves time, the one that costs the least
(:func:`choose_unit`). Three measures of the capacity a raise costs make three searches
(``kind``): ``per-unit``, the parameters it removes (the cut goes where a parameter buys the most
time, which can empty one unit while the next stays whole); ``spread``, the growth of
:func:`capacity_lost` (each weight's parameters times the square of its removed share: a unit cut
deep costs more for each further step, so the cut spreads over the units, deepest where time is
cheapest); and ``spread-flops``, the same with each weight counted by its multiply-adds rather
than its parameters (:func:`flops_per_parameter`), so that an early layer, few parameters at a
large resolution, is not cheap to cut. A candidate whose short series reaches the target is measured again with
the full repeats, which decide (a short series on a shared machine can show 2.4x for a model that
runs 1.1x faster); then the last raise is bisected twice, each half confirmed the same way, to land
nearer the target, and twice more while the confirmed speedup is still over the tolerance (a
ResNet-20 under ONNX Runtime landed 7 % above a 2x target after two); a half that prunes the
same counts as either end is that end, known without timing it again. The result is the confirmed measurement: achieved speedup (at least the target,
by the median) with its paired 95 % interval, and how far above the target it is
(``within_tolerance``: at most 5 %). A target no unit can reach with every unit at ``max_ratio`` is
a one-line error.

``kind="uniform"`` (``--latency-search uniform``) is the reference the per-unit choices are judged
against: one ratio for every prunable layer (the same layers as ``--ratios 0.5``), raised and
bisected the same way until its measured speedup reaches the target. The searches give
architectures of the same measured speed, so their accuracies say what choosing the cut buys.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from suite.errors import SuiteError
from suite.measure.search_kinds import DEFAULT_SEARCH, SEARCHES, search_kind

TOLERANCE = 0.05  # the confirmed speedup lands within 5 % above the target
MAX_BISECTIONS = 4  # of the last raise: two always, two more while the speedup is over the tolerance
_TARGET = re.compile(r"(\d+(?:\.\d+)?)x-latency")


def parse_latency_target(text: str) -> float:
    """``2x-latency`` -> 2.0; anything else is a one-line error."""
    m = _TARGET.fullmatch(text.strip())
    if not m or float(m.group(1)) <= 1:
        raise SuiteError(
            f"--target {text!r}: must be a latency speedup above 1 written like 2x-latency or 1.5x-latency"
        )
    return float(m.group(1))


def units(setting, model: nn.Module) -> dict[str, list[str]]:
    """The parts whose ratio the search sets, each with the layers it prunes: a ResNet's stages
    (``stage1``...), a plain net's convs but the first (as the paper prunes VGG), a generic
    model's groups of coupled convs (named by their first conv)."""
    from suite.models.ratios import parse_ratios, resolve

    layout = setting.layout
    if not layout.per_stage:  # each layer one ratio prunes: a plain net's convs but conv 0, a generic model's groups
        return {root: [root] for root in resolve(parse_ratios("0.5"), model, layout, input_shape=setting.input_shape)}
    out: dict[str, list[str]] = {}
    for c in layout.prunable_convs(model):
        out.setdefault(f"stage{c.stage}", []).append(c.name)
    return out


UNIFORM = "uniform"  # the one unit of a uniform search: every prunable layer


def ratio_string(setting, model: nn.Module, ratios: dict[str, float]) -> str:
    """The ratio string that resolves to ``ratios`` (unit -> ratio): the paper's stage list for a
    ResNet, module-name globs otherwise (what ``--ratios`` and ``suite run --ratios`` take); a
    uniform search's one ratio as itself."""
    if set(ratios) == {UNIFORM}:
        return f"{ratios[UNIFORM]:g}"
    if not setting.layout.per_stage:
        return ",".join(f"{name}={r:g}" for name, r in ratios.items() if r > 0) or "0"
    from suite.models.layouts import num_stages

    return (
        "["
        + ",".join(["0", *(f"{ratios.get(f'stage{s}', 0.0):g}" for s in range(1, num_stages(model) + 1)), "0"])
        + "]"
    )


def choose_unit(saved: dict[str, float], lost: dict[str, float]) -> str:
    """The unit whose raise the search keeps, from each candidate's measured time ``saved`` (a share
    of the baseline's) and the capacity it ``lost`` (the parameters it removed, as a share, or the
    growth of :func:`capacity_lost`): the most time saved per capacity lost among the candidates
    that save time, and where none does, the one that costs the least time. Per capacity alone
    would rank a slowdown spread over much capacity first: on torchvision's ResNet-18 under ONNX
    Runtime, where unaligned channel counts ran every first raise slower than the whole model, it
    raised the largest units first (stop 56: a cut of 3.13x fewer FLOPs for a 2x target, where one
    uniform ratio took 2.69x)."""
    saving = [u for u in saved if saved[u] > 0]
    if not saving:
        return max(saved, key=saved.get)
    return max(saving, key=lambda u: saved[u] / max(lost[u], 1e-12))


def capacity_lost(base: nn.Module, pruned: nn.Module, per_parameter: dict[str, float] | None = None) -> float:
    """How much a cut costs, for the ``spread`` searches: over every weight of ``base`` (its tensors
    of two dimensions or more, found by name in ``pruned``; one that is gone counts as wholly
    removed), its parameters (each counted ``per_parameter[name]`` times: its multiply-adds for
    ``spread-flops``, once by default) times the square of the share of them removed, over all of
    ``base``'s weight parameters so counted.

    Why the square: the search's cut is judged against one uniform ratio of the same measured
    speed, and per parameter removed (the ``per-unit`` search) it lost on every model asked
    (ResNet-20, ResNet-18 with counts as given and aligned to 32; stops 48-57) by cutting a few
    units deep: aligned, ResNet-18's layer2 kept 32 of 128 channels while layer4 stayed whole, and
    kept 1.8 points less top-1. Minimising the sum of ``P * share**2`` for a given time saved (a
    Lagrange multiplier) cuts each weight in proportion to the time its parameters cost: one
    uniform share where every parameter costs the same time, deeper only where time is cheaper to
    save, no unit emptied for a small gain. Counted by parameters, ResNet-18's layer2 (a quarter of
    layer4's parameters per conv at four times its resolution) was still cheap to cut deep (stop
    58: the spread cut kept layer2 at 32 of 128 too): ``spread-flops`` counts by multiply-adds."""
    now = dict(pruned.named_parameters())
    total = cost = 0.0
    for name, w in base.named_parameters():
        if w.dim() < 2:
            continue
        share = 1 - (now[name].numel() / w.numel() if name in now else 0.0)
        size = w.numel() * (per_parameter[name] if per_parameter else 1.0)
        total += size
        cost += size * share**2
    return cost / total if total else 0.0


def flops_per_parameter(model: nn.Module, input_shape) -> dict[str, float]:
    """Per weight of ``model`` (its tensors of two dimensions or more), the multiply-adds each of its
    parameters does for one input: the positions its module's output holds per output channel (a
    conv's output pixels, a linear layer's tokens), read by hooks in one forward pass. A weight whose
    module is not called as a module (an attention's fused projection) counts once per parameter."""
    positions, hooks = {}, []

    def remember(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() >= 2:
                positions[name] = output[0].numel() / module.weight.shape[0]

        return hook

    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() >= 2:
            hooks.append(module.register_forward_hook(remember(f"{name}.weight" if name else "weight")))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: positions.get(name, 1.0) for name, w in model.named_parameters() if w.dim() >= 2}


def search(
    setting,
    target: float,
    runtime: str,
    batch: int,
    device: torch.device,
    step: float = 0.1,
    max_ratio: float = 0.9,
    search_repeat: dict | None = None,
    kind: str = DEFAULT_SEARCH,
    **confirm_repeat,
) -> dict:
    """Per-unit ratios (one uniform ratio with ``kind="uniform"``; ``kind``: ``SEARCHES``) whose measured ``runtime`` speedup at
    ``batch`` reaches ``target`` (module docstring): the ratio string, the achieved speedup with its
    interval from a confirming measurement, the FLOPs speedup it took, each step of the search, and
    the machine."""
    from suite.measure.latency import paired_speedup, prune_copy, time_group, versus
    from suite.measure.metrics import instruction_set, processor
    from suite.models.ratios import n_pruned
    from suite.models.size import count_flops, count_params

    search_repeat = search_repeat or dict(warmup=2, rounds=3, round_size=10, min_repeats=20)
    torch.manual_seed(0)
    base = setting.build_model().eval()
    groups = units(setting, base)
    if not groups:
        raise SuiteError(f"{setting.name}: the model has nothing to prune, so no latency target can be reached")
    choice = search_kind(kind).choice
    if kind == UNIFORM:
        groups = {UNIFORM: [layer for layers in groups.values() for layer in layers]}
    shape = setting.input_shape
    params0 = count_params(base)
    ratios = {u: 0.0 for u in groups}
    current = base
    steps = []

    def layers(r: dict[str, float]) -> dict[str, float]:
        # what a run of this setting will prune: the ratio string resolved as a run resolves it
        # (the setting's skip list leaves its blocks whole, --round-to aligns the counts)
        return setting.layer_ratios(base, ratio_string(setting, base, r))

    def build(r: dict[str, float]) -> nn.Module:
        return prune_copy(setting, base, layers(r))

    def architecture(r: dict[str, float]) -> dict[str, float]:
        """What the runtime would time for ``r``: each layer's removed channels (its ratio itself
        where the layer does not say its width, which can only tell two equal models apart)."""
        out = {}
        for name, ratio in layers(r).items():
            try:
                module = base.get_submodule(name)
            except AttributeError:
                module = None
            width = getattr(module, "out_channels", None) or getattr(module, "out_features", None)
            out[name] = n_pruned(ratio, width) if width else ratio
        return out

    def raised(r: dict[str, float], unit: str) -> dict[str, float] | None:
        """``r`` with ``unit``'s ratio raised by whole steps until the pruned architecture changes
        (None: not before ``max_ratio``). Aligned counts (``--round-to 8``) keep a narrow layer's
        count over several steps (16 channels at 0.1, 0.2 and 0.3 all keep 8): timing such a raise
        times the current model again, and its noise could win the step."""
        now, ratio = architecture(r), r[unit]
        while ratio + step <= max_ratio + 1e-9:
            ratio = round(ratio + step, 6)
            if architecture({**r, unit: ratio}) != now:
                return {**r, unit: ratio}
        return None

    def timed(models: dict[str, nn.Module], repeat: dict) -> tuple[dict, dict]:
        with tempfile.TemporaryDirectory(prefix="suite-latency-target-") as tmp:
            timings, times = time_group(models, runtime, shape, batch, device, Path(tmp), **repeat)
        failed = {n: t.error for n, t in timings.items() if t.error}
        if failed:
            name, error = next(iter(failed.items()))
            raise SuiteError(
                f"--latency-runtime {runtime}: {name} could not be timed ({error}); choose another runtime"
            )
        return timings, times

    def speedup(times: dict, name: str) -> float:
        return paired_speedup(times["baseline"], times[name])[0]

    def confirm(r: dict[str, float], model: nn.Module, unit: str, bisect: bool = False) -> dict | None:
        """The full interleaved measurement of a candidate that looked like reaching the target:
        its comparison with the baseline when it does (by the median), None when not."""
        timings, times = timed({"baseline": base, "pruned": model}, confirm_repeat)
        row = versus(timings, times, "baseline", "pruned")
        note({"unit": unit, "ratios": dict(r), "speedup": row["speedup"], "confirm": True, "bisect": bisect})
        return row if row["speedup"] >= target else None

    def note(step: dict) -> None:
        """Keep a step for the record and say it on stderr (stdout may be ``--json``'s): a search
        takes minutes to hours (ResNet-50 at 2x about two) and would otherwise be silent until its end."""
        steps.append(step)
        how = ("bisection, " if step.get("bisect") else "") + ("confirmed" if step.get("confirm") else "short series")
        print(
            f"[{time.strftime('%H:%M:%S')}] latency search step {len(steps)}: {step['unit']} at "
            f"{step['ratios'][step['unit']]:g}: {step['speedup']:.2f}x ({how}); target {target:g}x on {runtime}",
            file=sys.stderr,
            flush=True,
        )

    flops_weights = flops_per_parameter(base, shape) if kind == "spread-flops" else None

    def lost(model: nn.Module) -> float:
        """The capacity ``model`` has lost, as ``kind`` measures it for its choice of unit."""
        if kind.startswith("spread"):
            return capacity_lost(base, model, flops_weights)
        return 1 - count_params(model) / params0

    achieved, best, before = None, None, ratios
    while achieved is None:
        cands = {u: c for u in groups if (c := raised(ratios, u)) is not None}
        if not cands and best is not None and not steps[-1].get("confirm"):
            # nothing prunes more: the most pruned model, whose short series fell short (on a
            # shared machine, by noise alone), is measured with the full repeats, which decide
            achieved = confirm(ratios, current, best)
            if achieved is not None:
                break
        if not cands:
            raise SuiteError(
                f"target {target:g}x latency is beyond reach on {runtime} at batch {batch}: every unit at "
                f"ratio {max_ratio} gives {steps[-1]['speedup'] if steps else 1.0:.2f}x; ask for less"
            )
        models = {u: build(r) for u, r in cands.items()}
        group = {"baseline": base, **({"current": current} if current is not base else {}), **models}
        _, times = timed(group, search_repeat)
        ref = "current" if "current" in times else "baseline"
        t_ref, t_base, lost_now = np.median(times[ref]), np.median(times["baseline"]), lost(current)
        best = choose_unit(
            {u: (t_ref - np.median(times[u])) / t_base for u in models},
            {u: lost(m) - lost_now for u, m in models.items()},
        )
        before, ratios, current = ratios, cands[best], models[best]
        note({"unit": best, "ratios": dict(ratios), "speedup": speedup(times, best)})
        if steps[-1]["speedup"] >= target:  # a short measurement says so: the full one decides
            achieved = confirm(ratios, current, best)
    lo, hi = before[best], ratios[best]  # the last raise went too far, or just far enough
    below, reached = architecture(before), architecture(ratios)
    for i in range(MAX_BISECTIONS):  # twice, then on while the confirmed speedup is over the tolerance
        if i >= 2 and achieved["speedup"] <= (1 + TOLERANCE) * target:
            break
        mid = round((lo + hi) / 2, 6)
        trial = {**ratios, best: mid}
        if architecture(trial) == reached:  # the architecture that reached it: the smaller ratio names it
            hi, ratios = mid, trial
            continue
        if architecture(trial) == below:  # the architecture the last raise started from: below the target
            lo = mid
            continue
        model = build(trial)
        row = confirm(trial, model, best, bisect=True)
        if row is not None:
            hi, ratios, current, achieved, reached = mid, trial, model, row, architecture(trial)
        else:
            lo = mid
    flops = {"baseline": count_flops(base, shape), "pruned": count_flops(current, shape)}
    return {
        "setting": setting.name,
        "target": target,
        "runtime": runtime,
        "batch": batch,
        "ratios": ratio_string(setting, base, ratios),
        "unit_ratios": ratios,
        "search": kind,
        **({"choice": choice} if choice else {}),
        "achieved": achieved,
        "within_tolerance": achieved["speedup"] <= (1 + TOLERANCE) * target,
        "tolerance": TOLERANCE,
        "flops": flops,
        "flops_speedup": flops["baseline"] / flops["pruned"],
        "steps": steps,
        "device": str(device),
        "processor": processor(device),
        "isa": instruction_set(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def resolve_for_run(
    setting,
    target: float,
    runtime: str,
    batch: int,
    device: torch.device,
    runs_dir: Path,
    kind: str = DEFAULT_SEARCH,
    **search_options,
):
    """``suite run --target 2x-latency``: the setting with the ratios a latency search found, and
    the search's record. The search measures, so two searches find different ratios and every
    method's runs would be renamed by each: it runs once per setting, target, runtime, batch,
    alignment, kind of search (``SEARCHES``) and machine (processor, instruction set,
    threads, torch), and is stored under the runs dir (``<setting>/latency-targets/<key>.json``) for
    every later ``suite run`` to reuse. A search stored before its key held the instruction set is
    reused where the rest of its key matches, with a warning: its record cannot say whether this
    machine's instructions are the ones it was timed on; so is a per-unit search made before its key
    held the choice of unit (``CHOICE``). ``search_options`` go to :func:`search` (its repeats)."""
    from suite.measure.metrics import instruction_set, machine, machine_text, processor
    from suite.spec.settings import with_ratios
    from suite.store.files import content_hash, read_json_record, write_json

    key = {
        "setting": setting.name,
        "model": setting.model,
        "input_shape": list(setting.input_shape),
        "base_ratios_skip": setting.skip,
        "round_to": setting.round_to,
        "target": target,
        "runtime": runtime,
        "batch": batch,
        "device": str(device),
        "processor": processor(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # the per-unit search's records were keyed before another kind existed: they keep their names
        **({"search": kind} if kind != "per-unit" else {}),
    }
    folder = Path(runs_dir) / setting.name / "latency-targets"
    choice = search_kind(kind).choice
    today = {**key, "isa": instruction_set(device), **({"choice": choice} if choice else {})}
    older_choice = "made by the older choice of unit (time saved per parameter alone)"
    # today's key, then the older records a run reuses, each with what its key lacks
    keys = [(today, None)]
    if kind == "per-unit":
        keys.append(({**key, "isa": instruction_set(device)}, older_choice))
    unknown_isa = f"whose instruction set it did not record (this machine: {machine_text(machine(device))})"
    if kind in ("per-unit", UNIFORM):  # the kinds searched before the key held the instruction set
        keys.append((key, unknown_isa + ("" if kind == UNIFORM else f", {older_choice}")))
    path, lacking = folder / f"{content_hash(today)}.json", None
    for candidate, why in keys:
        if (there := folder / f"{content_hash(candidate)}.json").exists():
            path, lacking = there, why
            break
    stored, problem = read_json_record(path)
    if stored and lacking:
        print(
            f"latency target {target:g}x: reusing the search in {path} (timed on {stored['processor']}), "
            f"{lacking}; delete it to search again here",
            flush=True,
        )
    if problem not in (None, "missing"):
        raise SuiteError(f"{path}: {problem}; delete it and the latency search runs again")
    if stored:
        res = stored
    else:
        print(
            f"latency target {target:g}x on {runtime} at batch {batch}: searching "
            f"{'one uniform ratio' if kind == UNIFORM else 'ratios'} on this machine (once; stored in {path})",
            flush=True,
        )
        found = _search_apart(setting, target, runtime, batch, device, kind=kind, **search_options)
        res = {**found, "key": today}
        write_json(path, res)
    record = {
        "target": target,
        "runtime": runtime,
        "batch": batch,
        "ratios": res["ratios"],
        "speedup": res["achieved"]["speedup"],
        "speedup_lo": res["achieved"].get("speedup_ci_lo"),
        "speedup_hi": res["achieved"].get("speedup_ci_hi"),
        "within_tolerance": res["within_tolerance"],
        "flops_speedup": res["flops_speedup"],
        "processor": res["processor"],
        "isa": res.get("isa"),
        "threads": res["threads"],
        "record": path.name,
        **({"search": kind} if kind != "per-unit" else {}),
    }
    return with_ratios(setting, res["ratios"]), record


def _search_apart(*args, **kwargs) -> dict:
    """:func:`search` in a spawned process of its own, on this process's torch thread count. The
    runtimes it times (ONNX Runtime, OpenVINO, inductor) start thread pools in the process that
    loads them, and ``suite run`` goes on to train in this one: a fork after those pools (the
    DataLoader workers of a streamed dataset) can crash, as a long pytest process did in the first
    forked worker after the runtimes' tests. A spawned child takes its pools with it when it ends."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(torch.get_num_threads(),),
    ) as child:
        return child.submit(search, *args, **kwargs).result()


def format_search(res: dict) -> str:
    """What ``suite latency --target`` prints: the search, then achieved against the target."""
    from suite.measure.metrics import machine_text

    a = res["achieved"]
    lines = [
        f"{res['setting']}: target {res['target']:g}x latency"
        + SEARCHES[res.get("search", "per-unit")].run_words
        + f" on {res['runtime']} at batch {res['batch']}, "
        f"{machine_text(res)} ({res['device']}), {res['threads']} threads, torch {res['torch']}, random weights",
        f"{'step':>4} {'unit':<24} {'ratio':>6} {'latency x':>9}  (confirmed: full repeats; others short)",
    ]
    for i, s in enumerate(res["steps"], 1):
        how = " (bisect)" if s.get("bisect") else ""
        lines.append(
            f"{i:>4} {s['unit'] + how:<24} {s['ratios'][s['unit']]:>6.3g} {s['speedup']:>8.2f}x"
            + ("  confirmed" if s.get("confirm") else "")
        )
    above = 100 * (a["speedup"] / res["target"] - 1)
    lines += [
        f"ratios {res['ratios']}: FLOPs speedup {res['flops_speedup']:.2f}x",
        f"achieved {a['speedup']:.2f}x [{a['speedup_ci_lo']:.2f}-{a['speedup_ci_hi']:.2f}] against the target "
        f"{res['target']:g}x: {above:.0f}% above it"
        + (
            f" (within {100 * res['tolerance']:.0f}%)"
            if res["within_tolerance"]
            else f" (over {100 * res['tolerance']:.0f}%: the bisection's milder candidates measured below the target)"
        )
        + (" ~ the interval spans over 10% of it: a busy machine" if a["interval_wide"] else ""),
        f"baseline {a['baseline']['median_ms']:.3f} ms, pruned {a['pruned']['median_ms']:.3f} ms "
        f"(median over {a['pruned']['repeats']} repeats in turns); prune to it with: --ratios '{res['ratios']}'",
    ]
    return "\n".join(lines)
