"""What latency-target.sh asks of a setting and of its stored latency searches (one place, rather
than here-documents in the script), each printed on stdout for the script to read:

    latency_comparison.py name SETTING                      the setting's name (its runs' folder)
    latency_comparison.py alignment SETTING [OPTIONS...]     the multiple the runs align kept counts to:
                                                             --round-to N among the options, else the setting's
    latency_comparison.py searched-on RUNS NAME ROUND_TO     the machines this comparison's 2x searches were
                                                             measured on ("processor (instruction set)"; "; "-joined)
    latency_comparison.py found RUNS NAME ROUND_TO SEARCH [ratios|flops]
                                                             this machine's 2x search of kind SEARCH (per-unit,
                                                             spread, spread-flops, uniform): its ratios, or its
                                                             FLOPs speedup
    latency_comparison.py same-cut SETTING FLOPS_TARGET UNIFORM_RATIO ROUND_TO
                                                             1 where the FLOPs target prunes to the counts of
                                                             a cut this comparison has trained already (one
                                                             cut, trained once), else 0: the uniform ratio, or
                                                             another FLOPs target among the setting's runs
                                                             (aligned counts step: ResNet-18 aligned to 32
                                                             cuts alike at 1.939x and 1.968x)

A comparison is a 2x target under ONNX Runtime at batch 64, as latency-target.sh asks it, and its
runs are in leaderboards/runs (the script's runs dir).
"""

import json
import re
import sys
from pathlib import Path

# the comparison latency-target.sh runs: its searches are the ones of this target, runtime and batch
TARGET, RUNTIME, BATCH = 2.0, "onnx", 64
# the per-unit search of stop 48 predates the record's instruction set: it was measured on an AMD
# EPYC with AVX512-BF16 (stop 48's note), which torch reports so; stop 50's "AMD EPYC" had AVX-512
# masked (AVX2 only), which the model name alone did not show
STOP48_ISA = "AVX512 AVX512-BF16"
RUNS = Path(__file__).resolve().parents[1] / "runs"


def searches(runs: str, name: str, round_to: str) -> list[dict]:
    """The stored searches of this comparison at this alignment (a record without one in its key:
    the counts as given)."""
    records = [json.loads(p.read_text()) for p in sorted(Path(runs).glob(f"{name}/latency-targets/*.json"))]
    return [
        r
        for r in records
        if (r["target"], r["runtime"], r["batch"]) == (TARGET, RUNTIME, BATCH)
        and int((r.get("key") or {}).get("round_to") or 1) == int(round_to)
    ]


def flops_references(name: str, round_to: int) -> set[str]:
    """The FLOPs targets (``--target 1.939x``) among the setting's stored runs at this alignment:
    the uniform FLOPs references trained so far (a run under a latency target records it)."""
    out = set()
    for path in RUNS.glob(f"{name}/*/*/result.json"):
        run = json.loads(path.read_text())
        ratios = str(run.get("ratios"))
        if (
            re.fullmatch(r"\d+(\.\d+)?x", ratios)
            and not run.get("latency_target")
            and int(run.get("round_to") or 1) == round_to
        ):
            out.add(ratios)
    return out


def main(command: str, *args: str) -> str:
    from suite.spec.settings import get_setting

    if command == "name":
        return get_setting(args[0]).name
    if command == "alignment":
        given = list(args[1:])
        return (
            given[given.index("--round-to") + 1] if "--round-to" in given[:-1] else str(get_setting(args[0]).round_to)
        )
    if command == "searched-on":
        return "; ".join(sorted({f"{r['processor']} ({r.get('isa') or STOP48_ISA})" for r in searches(*args)}))
    if command == "found":
        import torch

        from suite.measure.metrics import processor

        runs, name, round_to, search, *field = args
        here = processor(torch.device("cpu"))
        (mine,) = [
            r
            for r in searches(runs, name, round_to)
            if r["processor"] == here and r.get("search", "per-unit") == search
        ]
        return f"{mine['flops_speedup']:.3f}" if field == ["flops"] else mine["ratios"]
    if command == "same-cut":
        from suite.pages.latency_cuts import same_uniform_cut

        setting, flops, uniform, round_to = args
        setting = get_setting(setting)
        trained = {uniform, *flops_references(setting.name, int(round_to))} - {flops}
        return str(int(any(same_uniform_cut(setting, flops, cut, round_to=int(round_to)) for cut in sorted(trained))))
    raise SystemExit(f"latency_comparison.py: unknown command {command!r}; see its docstring")


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
