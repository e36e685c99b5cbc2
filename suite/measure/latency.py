"""Latency under the runtimes users deploy with: eager PyTorch, ``torch.compile`` (inductor) and
ONNX Runtime (CPU execution provider, exported with ``torch.onnx.export``), for a baseline and the
same model pruned at a target, with random weights (time does not depend on the values).

Each (runtime, batch) is timed after a warm-up (which also compiles), then in rounds of repeats
until the interquartile range is under 5 % of the median or the repeat cap is reached; a series
that never got there is marked ``converged: false``, not hidden. A runtime that fails to export,
compile or run is recorded with its message. Quartiles are :func:`suite.measure.metrics.quartiles`, the
eager numbers the same forward pass :func:`suite.measure.metrics.latency` times.

CUDA: eager and compile, synchronised around every pass; ONNX Runtime's CPU provider is skipped
there (recorded as such), since it would time the CPU, not the device asked for.

The report also holds the eager time per layer at batch 64 (:mod:`suite.measure.layer_times`), so a reader
sees where the speed went; ``suite latency --runs-dir`` stores it (:mod:`suite.measure.latency_records`).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from suite.errors import SuiteError
from suite.measure.metrics import load_per_core, quartiles

RUNTIMES = ("eager", "compile", "onnx")
TARGET_IQR_SHARE = 0.05  # stop repeating once the middle half spans less than 5 % of the median
LAYER_BATCH = 64  # the per-layer breakdown's batch: where a pruned conv's saving shows, if anywhere
TOP_LAYERS = 10  # layers `suite latency` prints, slowest in the baseline first


@dataclass(frozen=True)
class Timing:
    """One runtime at one batch size: median and quartiles in ms, or the error that stopped it."""
    runtime: str
    batch: int
    device: str
    threads: int
    median_ms: float | None = None
    q1_ms: float | None = None
    q3_ms: float | None = None
    repeats: int = 0
    converged: bool = False  # IQR < 5 % of the median was reached
    load_per_core: float = 0.0
    error: str | None = None

    @property
    def iqr_ms(self) -> float | None:
        return None if self.error else self.q3_ms - self.q1_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "iqr_ms": self.iqr_ms}


def parse_runtimes(text: str) -> list[str]:
    """``eager,compile,onnx`` -> a list; an unknown name is a one-line error."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if bad or not names:
        raise SuiteError(f"--runtimes {text!r}: unknown runtime(s) {', '.join(bad) or '(none given)'}; "
                         f"choose from {','.join(RUNTIMES)}")
    return list(dict.fromkeys(names))


def repeat_until_steady(run: Callable[[], None], warmup: int = 5, rounds: int = 10, round_size: int = 10,
                        min_repeats: int = 10) -> tuple[list[float], bool]:
    """Wall times (ms) of ``run()`` after ``warmup`` calls, taken ``round_size`` at a time until the
    IQR of all of them is under 5 % of their median (from ``min_repeats`` on) or ``rounds`` rounds
    are done. Returns (times, converged)."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    for _ in range(rounds):
        for _ in range(round_size):
            t = time.perf_counter()
            run()
            times.append(1000 * (time.perf_counter() - t))
        if len(times) >= min_repeats:
            q1, med, q3 = quartiles(times)
            if q3 - q1 < TARGET_IQR_SHARE * med:
                return times, True
    return times, False


# --------------------------------------------------------------------------- the runtimes
def _eager(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    return lambda: model(x)


def _compiled(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Inductor, one static shape per batch size; compiled now, so a failure is reported here."""
    compiled = torch.compile(model, backend="inductor", dynamic=False)
    compiled(x)
    return lambda: compiled(x)


def export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    """``torch.onnx.export`` at the input's shape (the exporter's progress lines are kept off stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=True,
                          external_data=False)


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime session on the CPU execution provider with ``threads`` intra-op threads."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_runner(model: nn.Module, x: torch.Tensor, workdir: Path, threads: int) -> Callable[[], list]:
    """Export ``model`` at ``x``'s shape and return a call that runs it in ONNX Runtime on ``x``."""
    path = workdir / f"model-{x.shape[0]}.onnx"
    export_onnx(model, x, path)
    session = onnx_session(path, threads)
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def _one_line(e: BaseException) -> str:
    """The error on one line: its type and start, and its root cause (exporters wrap the real
    reason in pages of context)."""
    def short(x: BaseException) -> str:
        return f"{type(x).__name__}: {' '.join(str(x).split())[:240]}"

    root = e
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__
    return short(e) if root is e else f"{short(e)} (cause: {short(root)})"


@torch.no_grad()
def time_runtime(model: nn.Module, runtime: str, input_shape: tuple[int, ...], batch: int, device: torch.device,
                 workdir: Path, **repeat) -> Timing:
    """Time one runtime at one batch size; any failure to export, compile or run is the Timing's error."""
    threads = torch.get_num_threads()
    base = dict(runtime=runtime, batch=batch, device=str(device) if runtime != "onnx" else "cpu", threads=threads)
    if runtime == "onnx" and device.type != "cpu":
        return Timing(**base, error="skipped: ONNX Runtime's CPU execution provider would not time the device asked for")
    model = model.to(device).eval()
    x = torch.randn(batch, *input_shape, device=device)  # latency only: values do not matter
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    load = load_per_core()
    try:
        if runtime == "eager":
            call = _eager(model, x)
        elif runtime == "compile":
            call = _compiled(model, x)
        else:
            call = onnx_runner(model, x, workdir, threads)

        def run():
            call()
            sync()

        times, converged = repeat_until_steady(run, **repeat)
    except Exception as e:  # a runtime that fails is a result to report, not a crash
        return Timing(**base, error=_one_line(e))
    q1, med, q3 = quartiles(times)
    return Timing(**base, median_ms=med, q1_ms=q1, q3_ms=q3, repeats=len(times), converged=converged,
                  load_per_core=max(load, load_per_core()))


def compare(baseline: nn.Module, pruned: nn.Module, input_shape: tuple[int, ...], runtimes: list[str],
            batches: list[int], device: torch.device, **repeat) -> list[dict]:
    """Baseline against pruned, per runtime and batch: both timings and the latency speedup
    (baseline median / pruned median; None where either failed)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="suite-latency-") as tmp:
        for runtime in runtimes:
            for batch in batches:
                b = time_runtime(baseline, runtime, input_shape, batch, device, _subdir(tmp, "baseline"), **repeat)
                p = time_runtime(pruned, runtime, input_shape, batch, device, _subdir(tmp, "pruned"), **repeat)
                ok = b.error is None and p.error is None
                rows.append({"runtime": runtime, "batch": batch, "baseline": b.to_dict(), "pruned": p.to_dict(),
                             "speedup": b.median_ms / p.median_ms if ok else None,
                             "speedup_lo": b.q1_ms / p.q3_ms if ok else None,
                             "speedup_hi": b.q3_ms / p.q1_ms if ok else None,
                             "converged": ok and b.converged and p.converged})
    return rows


def _subdir(root: str, name: str) -> Path:
    path = Path(root) / name
    path.mkdir(exist_ok=True)
    return path


def setting_models(setting, ratios: str | None = None, seed: int = 0) -> tuple[nn.Module, nn.Module, dict]:
    """The setting's model with random weights, and a copy pruned at ``ratios`` (default: the
    setting's target) by the harness's surgery. Which filters go does not change the time, so the
    first ``n_pruned(r, n)`` of each conv go, as ``suite list settings`` does. Also returns the
    FLOPs (paper's convention) of both."""
    import copy

    from suite.measure.metrics import count_flops
    from suite.models.nets import example_input
    from suite.models.ratios import n_pruned
    from suite.models.surgery import remove_filters

    torch.manual_seed(seed)
    base = setting.build_model().eval()
    pruned = copy.deepcopy(base)
    layer_ratios = setting.layer_ratios(pruned, ratios)
    shape = setting.input_shape
    choice = {n: list(range(n_pruned(r, pruned.get_submodule(n).out_channels))) for n, r in layer_ratios.items()}
    remove_filters(pruned, choice, example_input(shape[0], shape[1:]), coupled=setting.family == "generic")
    flops = {"baseline": count_flops(base, shape), "pruned": count_flops(pruned, shape)}
    return base, pruned.eval(), flops


def report(setting, ratios: str | None, runtimes: list[str], batches: list[int], device: torch.device,
           layer_passes: int = 20, **repeat) -> dict:
    """Everything ``suite latency`` prints: the setting, the FLOPs speedup, per runtime and batch
    the latency speedup and its share of the FLOPs speedup, and (unless ``layer_passes`` is 0) the
    eager time per layer at batch 64 (``layers``; how it was taken: ``layer_profile``)."""
    from suite.measure.layer_times import layer_times
    from suite.measure.metrics import processor
    base, pruned, flops = setting_models(setting, ratios)
    flops_speedup = flops["baseline"] / flops["pruned"]
    rows = compare(base, pruned, setting.input_shape, runtimes, batches, device, **repeat)
    for r in rows:
        r["share_of_flops_speedup"] = r["speedup"] / flops_speedup if r["speedup"] else None
    rep = {"setting": setting.name, "ratios": ratios or setting.ratios, "input_shape": list(setting.input_shape),
           "flops": flops, "flops_speedup": flops_speedup, "device": str(device), "processor": processor(device),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    if layer_passes:
        profile = layer_times(base, pruned, setting.input_shape, LAYER_BATCH, device, passes=layer_passes)
        rep["layers"] = profile.pop("layers")
        rep["layer_profile"] = profile
    return rep


def format_report(rep: dict) -> str:
    """The table ``suite latency`` prints (ms as median [IQR]; '!' marks a series whose IQR stayed
    at or above 5 % of its median)."""
    lines = [f"{rep['setting']} at {rep['ratios']}: FLOPs {rep['flops']['baseline'] / 1e6:.2f}M -> "
             f"{rep['flops']['pruned'] / 1e6:.2f}M, FLOPs speedup {rep['flops_speedup']:.2f}x",
             f"{rep['processor']} ({rep['device']}), {rep['threads']} threads, torch {rep['torch']}, random weights",
             f"{'runtime':<8} {'batch':>5} {'baseline ms [IQR]':>22} {'pruned ms [IQR]':>22} {'latency x':>10} "
             f"{'of FLOPs x':>10}"]

    def ms(t):
        if t["error"]:
            return "failed"
        flag = "" if t["converged"] else "!"
        return f"{t['median_ms']:.3f} [{t['iqr_ms']:.3f}]{flag}"

    failures = []
    for r in rep["rows"]:
        sp = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        share = f"{100 * r['share_of_flops_speedup']:.0f}%" if r["speedup"] else "-"
        lines.append(f"{r['runtime']:<8} {r['batch']:>5} {ms(r['baseline']):>22} {ms(r['pruned']):>22} {sp:>10} "
                     f"{share:>10}")
        for which in ("baseline", "pruned"):
            if r[which]["error"]:
                failures.append(f"  {r['runtime']} batch {r['batch']} {which}: {r[which]['error']}")
    if any(not r["converged"] and r["speedup"] for r in rep["rows"]):
        lines.append("! the IQR stayed at or above 5% of the median within the repeat cap (busy machine?)")
    if failures:
        lines += ["failed:", *failures]
    if rep.get("layers"):
        lines += ["", *format_layers(rep["layers"], rep["layer_profile"])]
    return "\n".join(lines)


def top_layers(layers: list[dict], n: int = TOP_LAYERS) -> list[dict]:
    """The ``n`` layers slowest in the baseline, slowest first (ties by name, so pages are stable)."""
    return sorted(layers, key=lambda r: (-(r["baseline_ms"] or 0.0), r["layer"]))[:n]


def format_layers(layers: list[dict], profile: dict) -> list[str]:
    """The per-layer table: the baseline's slowest layers, their pruned time, and the share of the
    baseline's forward pass they take; then what the top layers and all layers add up to."""
    fwd = profile["forward_ms"]
    lines = [f"per layer: {profile['runtime']}, batch {profile['batch']}, fastest of {profile['passes']} passes "
             f"(torch.profiler); forward pass {fwd['baseline']:.3f} ms -> {fwd['pruned']:.3f} ms",
             f"{'layer':<28} {'kind':<12} {'baseline ms':>11} {'pruned ms':>11} {'pruned/base':>11} "
             f"{'of forward':>10}"]
    top = top_layers(layers)
    for r in top:
        b, p = r["baseline_ms"] or 0.0, r["pruned_ms"]
        ratio = f"{p / b:.2f}" if p is not None and b else "-"
        pruned = f"{p:.3f}" if p is not None else "-"
        lines.append(f"{r['layer']:<28} {r['kind']:<12} {b:>11.3f} {pruned:>11} {ratio:>11} "
                     f"{100 * b / fwd['baseline']:>9.0f}%")
    share = sum(r["baseline_ms"] or 0.0 for r in top) / fwd["baseline"]
    every = sum(r["baseline_ms"] or 0.0 for r in layers) / fwd["baseline"]
    lines.append(f"top {len(top)} of {len(layers)} layers: {100 * share:.0f}% of the baseline forward pass; "
                 f"all {len(layers)} layers: {100 * every:.0f}% (the rest: code between modules, and preemption on a busy machine)")
    return lines
