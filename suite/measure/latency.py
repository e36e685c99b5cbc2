"""Latency under the runtimes users deploy with: eager PyTorch (fp32; also channels-last and bf16
as series of their own), ``torch.compile`` (inductor), ONNX Runtime and OpenVINO (CPU; both run the
graph ``torch.onnx.export`` writes), and on a GPU CUDA graphs and TensorRT, for a baseline and the
same model pruned at a target, with random weights (time does not depend on the values).

Baseline and pruned are timed in turns, A B B A A B ... (the order alternates so that neither
always runs second, on caches the other warmed), never as one series after the other: on a shared
machine a slow spell then lands on both sides, and the speedup is read from the *paired* repeats
(a series of 87.8 ms with an IQR of 0.57 ms measured entirely inside a slow spell looks steady
and gives a wrong ratio; the paired interval shows what the two series cannot). The speedup is the
ratio of the two medians, with a 95 % interval from a paired bootstrap (``scipy.stats.bootstrap``
over the pairs, percentile method: BCa's jackknife is undefined when every pair has the same
ratio and unreliable for medians). Repeats go on in rounds until every series' IQR is under 5 % of
its median and every speedup's interval under 5 % of the speedup, or the repeat cap is reached; a
series whose IQR stayed above is marked ``converged: false`` and a speedup whose interval spans
over 10 % of it ``interval_wide``: not hidden.

Numerics are never mixed: ``eager-cl`` (fp32, channels-last), ``eager-bf16``, ``eager-bf16-cl`` and
``openvino-bf16`` are runtimes of their own, timed only where the hardware multiplies bf16 (AMX or
AVX512-BF16, an Ampere GPU): elsewhere bf16 is emulated, slower than fp32, and the series is
recorded as skipped with that reason. OpenVINO is told fp32 explicitly (on a bf16 CPU its default
is bf16). A runtime that fails to export, compile or run is recorded with its message. Quartiles
are :func:`suite.measure.metrics.quartiles`.

CUDA: eager, compile and CUDA graphs, synchronised around every pass; TensorRT through ONNX
Runtime's TensorRT execution provider (``session.run``: its times include copying the batch in and
the logits out). ONNX Runtime's and OpenVINO's CPU runs are skipped there (recorded as such), since
they would time the CPU, not the device asked for; the GPU runtimes are skipped on a CPU.

``--round-to`` adds, to the same interleaved group, the pruned model with its kept channel counts
rounded to multiples of N (:mod:`suite.models.rounding`), so the effect of alignment is read as
a paired speedup against the same baseline repeats.

The report also holds the eager time per layer at batch 64 (:mod:`suite.measure.layer_times`), so a reader
sees where the speed went; ``suite latency --runs-dir`` stores it (:mod:`suite.measure.latency_records`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from suite.measure.metrics import instruction_set, load_per_core, machine_text, processor, quartiles
from suite.measure.runtimes import CPU_ENGINES, GPU_ENGINES, RUNTIMES, Runtime

TARGET_IQR_SHARE = 0.05  # stop repeating once each series' middle half spans less than 5 % of its median
TARGET_INTERVAL_SHARE = 0.05  # ... and each speedup's 95 % interval less than 5 % of the speedup
WIDE_INTERVAL_SHARE = 0.10  # a speedup whose interval spans more than this is flagged
CONFIDENCE = 0.95
RESAMPLES = 2000  # bootstrap resamples (a fixed seed: the same repeats give the same interval)
LAYER_BATCH = 64  # the per-layer breakdown's batch: where a pruned conv's saving shows, if anywhere
TOP_LAYERS = 10  # layers `suite latency` prints, slowest in the baseline first


@dataclass(frozen=True)
class Timing:
    """One model under one runtime at one batch size: median and quartiles in ms, or the error
    that stopped it (a skip is an error beginning ``skipped:``)."""

    runtime: str
    batch: int
    device: str
    threads: int
    numerics: str = "fp32"
    median_ms: float | None = None
    q1_ms: float | None = None
    q3_ms: float | None = None
    repeats: int = 0
    converged: bool = False  # IQR < 5 % of the median
    load_per_core: float = 0.0
    error: str | None = None

    @property
    def iqr_ms(self) -> float | None:
        return None if self.error else self.q3_ms - self.q1_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "iqr_ms": self.iqr_ms}


# --------------------------------------------------------------------------- paired timing
def paired_speedup(base_ms: list[float], pruned_ms: list[float]) -> tuple[float, float | None, float | None]:
    """The speedup (baseline median / pruned median) and its 95 % interval from a bootstrap that
    resamples *pairs* of repeats (taken in turns), so a slow spell that hit both sides of a pair
    stays paired; (speedup, None, None) with fewer than 2 pairs."""
    from scipy import stats

    a, b = np.asarray(base_ms, dtype=float), np.asarray(pruned_ms, dtype=float)
    speedup = float(np.median(a) / np.median(b))
    if len(a) < 2:
        return speedup, None, None
    res = stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.median(x, axis=axis) / np.median(y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    # A percentile interval need not hold the point estimate: with few repeats the resampled medians
    # take few values, and where nearly all equal the estimate an end can land one float ulp past
    # it, computed along another axis (seen: 2.1660915414804265 against 2.166091541480426). A
    # reported interval holds its estimate, so the ends are widened to it, never narrowed.
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return speedup, min(low, speedup), max(high, speedup)


def interval_share(speedup: float, lo: float | None, hi: float | None) -> float:
    """How wide the interval is, as a share of the speedup (infinite without an interval)."""
    return float("inf") if lo is None else (hi - lo) / speedup


def _steady(times: dict[str, list[float]]) -> bool:
    """Every series' IQR under 5 % of its median, and every speedup against the first series
    (the baseline) with an interval under 5 % of it."""
    for t in times.values():
        q1, med, q3 = quartiles(t)
        if q3 - q1 >= TARGET_IQR_SHARE * med:
            return False
    ref, *others = times
    return all(interval_share(*paired_speedup(times[ref], times[o])) < TARGET_INTERVAL_SHARE for o in others)


def repeat_interleaved(
    calls: dict[str, Callable[[], object]],
    warmup: int = 5,
    rounds: int = 10,
    round_size: int = 10,
    min_repeats: int = 10,
) -> tuple[dict[str, list[float]], dict[str, str], bool]:
    """Wall times (ms) of each call, taken in turns (one pass of each per repeat, the order
    reversed every other repeat) after ``warmup`` turns, ``round_size`` repeats at a time until
    :func:`_steady` holds (from ``min_repeats`` on; the first call is the reference) or ``rounds``
    rounds are done. A call that raises is dropped with its times, the others go on. Returns
    (times per call, error per dropped call, steady)."""
    live = list(calls)
    errors: dict[str, str] = {}
    times: dict[str, list[float]] = {name: [] for name in live}

    def turn(order: list[str], timed: bool) -> None:
        for name in order:
            t = time.perf_counter()
            try:
                calls[name]()
            except Exception as e:  # a runtime that fails is a result to report, not a crash
                errors[name] = _one_line(e)
                live.remove(name)
                del times[name]
                continue
            if timed:
                times[name].append(1000 * (time.perf_counter() - t))

    for k in range(warmup):
        turn(live if k % 2 == 0 else live[::-1], timed=False)
    for _ in range(rounds):
        for _ in range(round_size):
            if not live:
                return times, errors, False
            turn(live if len(times[live[0]]) % 2 == 0 else live[::-1], timed=True)
        if live and len(times[live[0]]) >= min_repeats and _steady(times):
            return times, errors, True
    return times, errors, False


# --------------------------------------------------------------------------- the runtimes
def _compiled(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Inductor, one static shape per batch size; compiled now, so a failure is reported here."""
    compiled = torch.compile(model, backend="inductor", dynamic=False)
    compiled(x)
    return lambda: compiled(x)


def _eager(model: nn.Module, x: torch.Tensor, rt: Runtime) -> Callable[[], object]:
    """Eager in the runtime's numerics: a bf16 or channels-last copy of the model and the batch."""
    if rt.dtype == "bf16" or rt.channels_last:
        model = copy.deepcopy(model)
    if rt.dtype == "bf16":
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    if rt.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return lambda: model(x)


def export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    """``torch.onnx.export`` at the input's shape (the exporter's progress lines are kept off stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            model, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=True, external_data=False
        )


def onnx_file(model: nn.Module, x: torch.Tensor, workdir: Path) -> Path:
    """The model exported at ``x``'s batch size in ``workdir`` (exported once: ONNX Runtime and
    OpenVINO run the same file)."""
    path = workdir / f"model-{x.shape[0]}.onnx"
    if not path.exists():
        export_onnx(model, x, path)
    return path


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime session on the CPU execution provider with ``threads`` intra-op threads that
    do not spin: each session has a pool of its own, and a pool left spinning after its run takes
    the cores from the next model timed in turn (measured: ResNet-56 at batch 8 took 50 ms instead
    of 11 while the other session's threads spun), and from everyone else on a shared machine."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_runner(model: nn.Module, x: torch.Tensor, workdir: Path, threads: int) -> Callable[[], list]:
    """Export ``model`` at ``x``'s shape and return a call that runs it in ONNX Runtime on ``x``."""
    session = onnx_session(onnx_file(model, x, workdir), threads)
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def openvino_runner(
    model: nn.Module, x: torch.Tensor, workdir: Path, threads: int, dtype: str = "fp32"
) -> Callable[[], object]:
    """The exported ONNX graph converted by ``openvino.convert_model`` and compiled for OpenVINO's CPU
    plugin (latency hint, ``threads`` threads, the precision named: its default on a bf16 CPU is
    bf16); a call runs one synchronous inference on ``x`` and returns its outputs."""
    import openvino as ov

    props = ov.properties
    compiled = ov.Core().compile_model(
        ov.convert_model(str(onnx_file(model, x, workdir))),
        "CPU",
        {
            props.hint.inference_precision: ov.Type.f32 if dtype == "fp32" else ov.Type.bf16,
            props.inference_num_threads: threads,
            props.hint.performance_mode: props.hint.PerformanceMode.LATENCY,
        },
    )
    request = compiled.create_infer_request()
    data = x.detach().cpu().numpy()
    return lambda: request.infer({0: data})


def cuda_graph_runner(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """One forward pass captured as a CUDA graph (after warm-up passes on a side stream, as
    PyTorch's documentation does it); a call replays it and returns the static output."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(static_x)

    def replay():
        graph.replay()
        return out

    return replay


def tensorrt_runner(model: nn.Module, x: torch.Tensor, workdir: Path) -> Callable[[], list]:
    """The exported ONNX graph under ONNX Runtime's TensorRT execution provider (needs
    onnxruntime-gpu built with TensorRT)."""
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(
            "this ONNX Runtime has no TensorRT execution provider: pip install onnxruntime-gpu and install TensorRT"
        )
    session = ort.InferenceSession(str(onnx_file(model, x, workdir)), providers=["TensorrtExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def skip_reason(runtime: str, device: torch.device) -> str | None:
    """Why ``runtime`` is not timed on ``device`` (None: it is)."""
    from suite.training.numerics_default import fast_bf16

    rt = RUNTIMES[runtime]
    if rt.engine in CPU_ENGINES and device.type != "cpu":
        return f"skipped: {runtime} runs on the CPU here and would not time the device asked for ({device})"
    if rt.engine in GPU_ENGINES and device.type != "cuda":
        return f"skipped: {runtime} needs a CUDA GPU (this run's device is {device})"
    if rt.dtype == "bf16" and not fast_bf16(device):
        return (
            f"skipped: {processor(device)} has no fast bf16 (a CPU needs AMX or AVX512-BF16, a GPU Ampere or "
            f"later); emulated bf16 is slower than fp32, so its time would say nothing"
        )
    return None


def prepare(model: nn.Module, runtime: str, x: torch.Tensor, workdir: Path, threads: int) -> Callable[[], object]:
    """A call that runs ``model`` once on ``x`` under ``runtime`` (exported or compiled now, so a
    failure to export or compile is raised here), synchronised on a GPU."""
    rt = RUNTIMES[runtime]
    workdir.mkdir(parents=True, exist_ok=True)
    if rt.engine == "eager":
        call = _eager(model, x, rt)
    elif rt.engine == "compile":
        call = _compiled(model, x)
    elif rt.engine == "onnx":
        call = onnx_runner(model, x, workdir, threads)
    elif rt.engine == "openvino":
        call = openvino_runner(model, x, workdir, threads, rt.dtype)
    elif rt.engine == "cuda-graph":
        call = cuda_graph_runner(model, x)
    else:
        call = tensorrt_runner(model, x, workdir)
    if x.device.type != "cuda":
        return call

    def synced():
        out = call()
        torch.cuda.synchronize(x.device)
        return out

    return synced


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
def time_group(
    models: dict[str, nn.Module],
    runtime: str,
    input_shape: tuple[int, ...],
    batch: int,
    device: torch.device,
    workdir: Path,
    **repeat,
) -> tuple[dict[str, Timing], dict[str, list[float]]]:
    """Time ``models`` (the first is the reference, the baseline) under one runtime at one batch
    size, their repeats interleaved (:func:`repeat_interleaved`); a model that fails to export,
    compile or run gets a Timing with its error, the others are still timed. Returns each model's
    Timing and its raw times (ms, paired by position)."""
    threads = torch.get_num_threads()
    rt = RUNTIMES[runtime]
    on = "cpu" if rt.engine in CPU_ENGINES else str(device)
    base = dict(runtime=runtime, batch=batch, device=on, threads=threads, numerics=rt.numerics)
    skip = skip_reason(runtime, device)
    if skip:
        return {name: Timing(**base, error=skip) for name in models}, {}
    x = torch.randn(batch, *input_shape, device=device)  # latency only: values do not matter
    calls, errors = {}, {}
    for name, model in models.items():
        try:
            calls[name] = prepare(model.to(device).eval(), runtime, x, workdir / name, threads)
        except Exception as e:
            errors[name] = _one_line(e)
    load = load_per_core()
    times, failed, _ = repeat_interleaved(calls, **repeat)
    errors.update(failed)
    load = max(load, load_per_core())
    out = {}
    for name in models:
        if name in errors:
            out[name] = Timing(**base, error=errors[name])
            continue
        q1, med, q3 = quartiles(times[name])
        out[name] = Timing(
            **base,
            median_ms=med,
            q1_ms=q1,
            q3_ms=q3,
            repeats=len(times[name]),
            converged=q3 - q1 < TARGET_IQR_SHARE * med,
            load_per_core=load,
        )
    return out, times


def versus(timings: dict[str, Timing], times: dict[str, list[float]], ref: str, other: str) -> dict:
    """``other`` against ``ref`` from one interleaved group: both timings and the speedup with its
    paired 95 % interval (None where either failed); ``interval_wide`` when the interval spans
    over 10 % of the speedup; ``converged`` when both series' IQRs are under 5 %."""
    a, b = timings[ref], timings[other]
    out = {
        "baseline": a.to_dict(),
        "pruned": b.to_dict(),
        "speedup": None,
        "speedup_ci_lo": None,
        "speedup_ci_hi": None,
        "interval_wide": None,
        "converged": False,
    }
    if a.error is None and b.error is None:
        s, lo, hi = paired_speedup(times[ref], times[other])
        out.update(
            speedup=s,
            speedup_ci_lo=lo,
            speedup_ci_hi=hi,
            interval_wide=interval_share(s, lo, hi) > WIDE_INTERVAL_SHARE,
            converged=a.converged and b.converged,
        )
    return out


def compare(
    baseline: nn.Module,
    pruned: nn.Module,
    input_shape: tuple[int, ...],
    runtimes: list[str],
    batches: list[int],
    device: torch.device,
    rounded: dict[int, nn.Module] | None = None,
    **repeat,
) -> list[dict]:
    """Baseline against pruned, per runtime and batch, timed in turns: both timings and the
    latency speedup with its paired interval (:func:`versus`). ``rounded`` (N -> the pruned model
    with kept counts rounded to multiples of N) joins the same group; each row then lists under
    ``rounded`` their timings and speedups against the same baseline repeats."""
    rows = []
    rounded = rounded or {}
    models = {"baseline": baseline, "pruned": pruned, **{f"round-to-{n}": m for n, m in rounded.items()}}
    with tempfile.TemporaryDirectory(prefix="suite-latency-") as tmp:
        for runtime in runtimes:
            for batch in batches:
                timings, times = time_group(models, runtime, input_shape, batch, device, Path(tmp), **repeat)
                row = {
                    "runtime": runtime,
                    "batch": batch,
                    "numerics": RUNTIMES[runtime].numerics,
                    **versus(timings, times, "baseline", "pruned"),
                }
                if rounded:
                    row["rounded"] = [
                        {
                            "round_to": n,
                            **{
                                k: v
                                for k, v in versus(timings, times, "baseline", f"round-to-{n}").items()
                                if k != "baseline"
                            },
                        }
                        for n in rounded
                    ]
                rows.append(row)
    return rows


def setting_models(
    setting, ratios: str | None = None, seed: int = 0, round_to: int = 1
) -> tuple[nn.Module, nn.Module, dict]:
    """The setting's model with random weights, and a copy pruned at ``ratios`` (default: the
    setting's target; with ``round_to`` above 1, as ``suite run --round-to`` prunes it:
    :func:`aligned_layers`) by the harness's surgery. Also returns the FLOPs (paper's convention)
    of both."""
    from suite.models.size import count_flops

    torch.manual_seed(seed)
    base = setting.build_model().eval()
    pruned = prune_copy(setting, base, aligned_layers(setting, base, ratios, round_to))
    shape = setting.input_shape
    return base, pruned, {"baseline": count_flops(base, shape), "pruned": count_flops(pruned, shape)}


def aligned_layers(setting, base: nn.Module, ratios: str | None, round_to: int) -> dict[str, float]:
    """The layer ratios a run of ``ratios`` with ``--round-to round_to`` prunes (1: the setting's
    own): every kept count a multiple of ``round_to``, and a FLOPs target met by aligned counts
    (the aligned cut nearest it), not the cut of the counts as given rounded down after, which
    prunes more (ResNet-18's 1.939x aligned to 32: 2.31x instead of 1.72x)."""
    from dataclasses import replace

    return (
        setting.layer_ratios(base, ratios)
        if round_to <= 1
        else replace(setting, round_to=round_to).layer_ratios(base, ratios)
    )


def prune_copy(setting, base: nn.Module, layer_ratios: dict[str, float]) -> nn.Module:
    """A copy of ``base`` with the first ``n_pruned(r, n)`` filters of each layer removed. Which
    filters go does not change the time, so no selection rule is needed (``suite list settings``
    does the same)."""
    from suite.models.nets import example_input
    from suite.models.ratios import n_pruned

    pruned = copy.deepcopy(base)
    shape = setting.input_shape
    choice = {n: list(range(n_pruned(r, setting.layout.unit_size(pruned, n)))) for n, r in layer_ratios.items()}
    setting.layout.remove(pruned, choice, example_input(shape[0], shape[1:]))
    return pruned.eval()


def report(
    setting,
    ratios: str | None,
    runtimes: list[str],
    batches: list[int],
    device: torch.device,
    layer_passes: int = 20,
    round_to: list[int] | None = None,
    **repeat,
) -> dict:
    """Everything ``suite latency`` prints: the setting, the FLOPs speedup, per runtime and batch
    the latency speedup with its interval and its share of the FLOPs speedup, with ``round_to``
    the rounding sweep (``rounding``: per N the kept counts and FLOPs; per row ``rounded``), and
    (unless ``layer_passes`` is 0) the eager time per layer at batch 64 (``layers``; how it was
    taken: ``layer_profile``)."""
    from suite.measure.layer_times import layer_times
    from suite.models.size import count_flops

    base, pruned, flops = setting_models(setting, ratios)
    flops_speedup = flops["baseline"] / flops["pruned"]
    layer_ratios = setting.layer_ratios(base, ratios)
    rounded = {
        n: prune_copy(setting, base, aligned_layers(setting, base, ratios, n)) for n in (round_to or []) if n > 1
    }
    rows = compare(base, pruned, setting.input_shape, runtimes, batches, device, rounded=rounded, **repeat)
    rep = {
        "setting": setting.name,
        "ratios": ratios or setting.ratios,
        "input_shape": list(setting.input_shape),
        "flops": flops,
        "flops_speedup": flops_speedup,
        "device": str(device),
        "processor": processor(device),
        "isa": instruction_set(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # the setting's own alignment (a run's --round-to), which every series above was pruned with
        **({"round_to": setting.round_to} if setting.round_to > 1 else {}),
        "rows": rows,
    }
    if round_to:
        variants = {1: pruned, **rounded}
        pruned_flops = {n: count_flops(m, setting.input_shape) for n, m in variants.items()}
        rep["rounding"] = [
            {
                "round_to": n,
                "flops": pruned_flops[n],
                "flops_speedup": flops["baseline"] / pruned_flops[n],
                "kept": {name: setting.layout.unit_size(m, name) for name in layer_ratios},
            }
            for n, m in variants.items()
        ]
    for r in rows:
        r["share_of_flops_speedup"] = r["speedup"] / flops_speedup if r["speedup"] else None
        for v in r.get("rounded", []):
            fs = flops["baseline"] / pruned_flops[v["round_to"]]
            v["flops_speedup"] = fs
            v["share_of_flops_speedup"] = v["speedup"] / fs if v["speedup"] else None
    if layer_passes:
        profile = layer_times(base, pruned, setting.input_shape, LAYER_BATCH, device, passes=layer_passes)
        rep["layers"] = profile.pop("layers")
        rep["layer_profile"] = profile
    return rep


def _ms(t: dict) -> str:
    if t["error"]:
        return "skipped" if t["error"].startswith("skipped:") else "failed"
    return f"{t['median_ms']:.3f} [{t['iqr_ms']:.3f}]{'' if t['converged'] else '!'}"


def _speedup(r: dict) -> str:
    """``1.36x [1.31-1.40]``, ``~`` after it when the interval is wide, ``-`` without a speedup."""
    if not r["speedup"]:
        return "-"
    if r["speedup_ci_lo"] is None:
        return f"{r['speedup']:.2f}x"
    return f"{r['speedup']:.2f}x [{r['speedup_ci_lo']:.2f}-{r['speedup_ci_hi']:.2f}]{'~' if r['interval_wide'] else ''}"


def format_report(rep: dict) -> str:
    """The table ``suite latency`` prints: ms as median [IQR] ('!': the IQR stayed at or above 5 %
    of the median), the speedup with its paired 95 % interval ('~': the interval spans over 10 %
    of the speedup); then the rounding sweep and the per-layer breakdown when the report has them."""
    lines = [
        f"{rep['setting']} at {rep['ratios']}: FLOPs {rep['flops']['baseline'] / 1e6:.2f}M -> "
        f"{rep['flops']['pruned'] / 1e6:.2f}M, FLOPs speedup {rep['flops_speedup']:.2f}x",
        f"{machine_text(rep)} ({rep['device']}), {rep['threads']} threads, torch {rep['torch']}, random weights; "
        f"baseline and pruned timed in turns",
        f"{'runtime':<14} {'batch':>5} {'baseline ms [IQR]':>22} {'pruned ms [IQR]':>22} "
        f"{'latency x [95% interval]':>26} {'of FLOPs x':>10}",
    ]
    failures = []
    for r in rep["rows"]:
        share = f"{100 * r['share_of_flops_speedup']:.0f}%" if r["speedup"] else "-"
        lines.append(
            f"{r['runtime']:<14} {r['batch']:>5} {_ms(r['baseline']):>22} {_ms(r['pruned']):>22} "
            f"{_speedup(r):>26} {share:>10}"
        )
        sides = [("baseline", r["baseline"]), ("pruned", r["pruned"])]
        sides += [(f"round-to {v['round_to']}", v["pruned"]) for v in r.get("rounded", [])]
        errors = {which: t["error"] for which, t in sides if t["error"]}
        if errors and len(set(errors.values())) == 1 and len(errors) == len(sides):
            failures.append(f"  {r['runtime']} batch {r['batch']}: {next(iter(errors.values()))}")
        else:
            failures += [f"  {r['runtime']} batch {r['batch']} {which}: {e}" for which, e in errors.items()]
    every = [r for r in rep["rows"]] + [v for r in rep["rows"] for v in r.get("rounded", [])]
    if any(not r["converged"] and r["speedup"] for r in every):
        lines.append("! a series' IQR stayed at or above 5% of its median within the repeat cap (busy machine?)")
    if any(r["interval_wide"] for r in every):
        lines.append(
            "~ the speedup's 95% interval spans over 10% of it: the machine was too busy for this ratio; "
            "measure again or raise --max-repeats"
        )
    if failures:
        lines += ["failed or skipped:", *failures]
    if rep.get("rounding"):
        lines += ["", *format_rounding(rep)]
    if rep.get("layers"):
        lines += ["", *format_layers(rep["layers"], rep["layer_profile"])]
    return "\n".join(lines)


def format_rounding(rep: dict) -> list[str]:
    """The rounding sweep: per N the kept counts and FLOPs speedup, then per runtime and batch the
    pruned model's time at each N and its speedup against the baseline timed in the same turns."""
    lines = [
        "channel alignment (--round-to N: kept counts rounded down to multiples of N, at least N)",
        f"{'round-to':>8} {'FLOPs x':>8}  kept channels per pruned layer (distinct counts)",
    ]
    for v in rep["rounding"]:
        lines.append(
            f"{v['round_to']:>8} {v['flops_speedup']:>7.2f}x  "
            f"{', '.join(str(c) for c in sorted(set(v['kept'].values())))}"
        )
    lines.append(
        f"{'runtime':<14} {'batch':>5} {'round-to':>8} {'pruned ms [IQR]':>22} "
        f"{'latency x [95% interval]':>26} {'of FLOPs x':>10}"
    )
    for r in rep["rows"]:
        for n, v in [(1, {**r, "flops_speedup": rep["flops_speedup"]}), *((v["round_to"], v) for v in r["rounded"])]:
            share = f"{100 * v['share_of_flops_speedup']:.0f}%" if v["speedup"] else "-"
            lines.append(
                f"{r['runtime']:<14} {r['batch']:>5} {n:>8} {_ms(v['pruned']):>22} {_speedup(v):>26} {share:>10}"
            )
    return lines


def top_layers(layers: list[dict], n: int = TOP_LAYERS) -> list[dict]:
    """The ``n`` layers slowest in the baseline, slowest first (ties by name, so pages are stable)."""
    return sorted(layers, key=lambda r: (-(r["baseline_ms"] or 0.0), r["layer"]))[:n]


def format_layers(layers: list[dict], profile: dict) -> list[str]:
    """The per-layer table: the baseline's slowest layers, their pruned time, and the share of the
    baseline's forward pass they take; then what the top layers and all layers add up to."""
    fwd = profile["forward_ms"]
    lines = [
        f"per layer: {profile['runtime']}, batch {profile['batch']}, fastest of {profile['passes']} passes "
        f"(torch.profiler); forward pass {fwd['baseline']:.3f} ms -> {fwd['pruned']:.3f} ms",
    ]
    top = top_layers(layers)
    wl = max([28] + [len(r["layer"]) for r in top])  # columns as wide as the longest name shown
    wk = max([12] + [len(r["kind"]) for r in top])
    lines.append(
        f"{'layer':<{wl}} {'kind':<{wk}} {'baseline ms':>11} {'pruned ms':>11} {'pruned/base':>11} {'of forward':>10}"
    )
    for r in top:
        b, p = r["baseline_ms"] or 0.0, r["pruned_ms"]
        ratio = f"{p / b:.2f}" if p is not None and b else "-"
        pruned = f"{p:.3f}" if p is not None else "-"
        lines.append(
            f"{r['layer']:<{wl}} {r['kind']:<{wk}} {b:>11.3f} {pruned:>11} {ratio:>11} {100 * b / fwd['baseline']:>9.0f}%"
        )
    share = sum(r["baseline_ms"] or 0.0 for r in top) / fwd["baseline"]
    every = sum(r["baseline_ms"] or 0.0 for r in layers) / fwd["baseline"]
    lines.append(
        f"top {len(top)} of {len(layers)} layers: {100 * share:.0f}% of the baseline forward pass; "
        f"all {len(layers)} layers: {100 * every:.0f}% (the rest: code between modules, and preemption on a busy machine)"
    )
    return lines
