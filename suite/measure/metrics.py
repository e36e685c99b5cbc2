"""The machine a number was measured on, and eager latency with its noise (params and FLOPs:
``suite.models.size``; accuracy: ``suite.training.loop.evaluate``).

Nothing here is training code: the runner times a job's model after the pipeline has trained and
measured it, so a change to how latency is timed never makes a stored run stale.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn


def processor(device: torch.device) -> str:
    """The chip that ran it: the GPU's name, or the CPU's model name.

    Recorded with every baseline and run because both depend on it: latency obviously, and the
    trained weights too (CPU kernels round differently across chips, so a baseline trained on one
    CPU is not bit-identical to the same recipe on another).
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def instruction_set(device: torch.device) -> str | None:
    """The vector instructions torch's CPU kernels run on: its dispatch level (``AVX2``, ``AVX512``)
    and the bf16 and matrix units it can use; None on a GPU (its name says what it is).

    Recorded beside the model name because the name does not say it: two sessions' virtual machines
    both called "AMD EPYC" (the same Zen 4, family 25 model 17) ran one with AVX512-BF16 and one with
    AVX-512 masked by the hypervisor, so torch picked other kernels, which round differently (a
    retraining cannot be bit-exact) and time differently (a latency measured on one says nothing
    about the other)."""
    if device.type != "cpu":
        return None
    units = [torch.backends.cpu.get_cpu_capability()]
    # torch.cpu's probes are private; a torch without them reports its dispatch level alone
    for probe, unit in (("_is_avx512_bf16_supported", "AVX512-BF16"), ("_is_amx_tile_supported", "AMX")):
        if getattr(torch.cpu, probe, lambda: False)():
            units.append(unit)
    return " ".join(units)


def machine(device: torch.device) -> dict:
    """What a trained number depends on besides the code, data and seed: the chip, the instructions
    torch's kernels use on it, and torch's intra-op thread count at training time. Training is
    bit-exact only per CPU model, instruction set *and* thread count (the thread count sets how
    reductions are split, so the roundings differ: the same smoke grid gives 42.74 with 2 threads and
    42.82 with 1, the count ``--executor ray`` gives each task), so every baseline and run records
    them, and a retraining can say which one differs."""
    return {"processor": processor(device), "isa": instruction_set(device), "threads": torch.get_num_threads()}


def machines_after(history: list[dict], here: dict) -> list[dict]:
    """The machines that have trained a checkpoint, in order, once ``here`` trains it on: ``history``
    with ``here`` (its :func:`machine` fields) appended unless ``here`` made the last stretch too. A
    run or baseline resumed in a session on another CPU is thus recorded as trained by each machine
    that made it, not by the last alone."""
    here = {k: here.get(k) for k in ("processor", "isa", "threads")}
    return history if history and history[-1] == here else [*history, here]


def machine_text(record: dict) -> str:
    """A recorded machine in words: "AMD EPYC (AVX2)", or the model name alone for a record made
    before the instruction set was recorded."""
    name = record.get("processor") or f"an unrecorded {record.get('device') or 'processor'}"
    return f"{name} ({record['isa']})" if record.get("isa") else name


# Latency is noise-prone on a shared machine: a repeat series whose IQR exceeds this share of its
# median, or one taken while more runnable threads than cores were queued, is flagged noisy.
NOISY_IQR_SHARE = 0.10


@dataclass(frozen=True)
class Latency:
    """A forward pass's wall time over ``repeats`` runs: median and quartiles, with the load seen."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    batch: int
    device: str
    threads: int
    repeats: int
    load_per_core: float  # highest 1-minute load average seen during the measurement, per CPU core

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    @property
    def noisy(self) -> bool:
        return is_noisy(self.median_ms, self.iqr_ms, self.load_per_core)


def quartiles(times: list[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3) of ``times`` (inclusive method: for 3 repeats the extremes are not outliers)."""
    if len(times) == 1:
        return times[0], times[0], times[0]
    q1, med, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q1, med, q3


def is_noisy(median: float, iqr: float, load_per_core: float) -> bool:
    """Noisy: the middle half of the repeats spans over 10 % of the median, or the machine was
    oversubscribed (1-minute load average above its core count) while we measured."""
    return iqr > NOISY_IQR_SHARE * median or load_per_core > 1.0


def load_per_core() -> float:
    """The 1-minute load average per CPU core (0 where the OS has none, e.g. Windows)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return 0.0


def speedup_range(base: Latency, pruned: Latency) -> tuple[float, float]:
    """The speedup's spread from the two quartile ranges: the slowest pruned quartile against the
    fastest baseline quartile, and the other way round (a conservative interval, no distribution assumed)."""
    return base.q1_ms / pruned.q3_ms, base.q3_ms / pruned.q1_ms


@torch.no_grad()
def latency(
    model: nn.Module, input_shape: tuple[int, ...], batch: int, device: torch.device, warmup: int = 5, repeats: int = 20
) -> Latency:
    """Median and quartiles of the wall time of one forward pass of ``batch`` inputs, after
    ``warmup`` passes, with the machine's load before and after."""
    was_training = model.training
    model.eval()
    x = torch.randn(batch, *input_shape, device=device)  # latency only: values do not matter
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    load = load_per_core()
    for _ in range(warmup):
        model(x)
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model(x)
        sync()
        times.append(time.perf_counter() - t)
    model.train(was_training)
    q1, med, q3 = quartiles([1000 * t for t in times])
    return Latency(med, q1, q3, batch, str(device), torch.get_num_threads(), repeats, max(load, load_per_core()))


def latency_record(base: Latency, pruned: Latency) -> dict:
    """The latency block a result stores for one batch size (speedup = baseline / pruned median)."""
    lo, hi = speedup_range(base, pruned)
    return {
        "baseline_ms": base.median_ms,
        "baseline_iqr_ms": base.iqr_ms,
        "pruned_ms": pruned.median_ms,
        "pruned_iqr_ms": pruned.iqr_ms,
        "speedup": base.median_ms / pruned.median_ms,
        "speedup_lo": lo,
        "speedup_hi": hi,
        "load_per_core": max(base.load_per_core, pruned.load_per_core),
        "noisy": base.noisy or pruned.noisy,
        "repeats": base.repeats,
        "device": base.device,
        "threads": base.threads,
    }


def latency_block(
    base: nn.Module, pruned: nn.Module, input_shape: tuple[int, ...], device: torch.device, smoke: bool
) -> dict:
    """A run's latency fields: eager fp32 forward time of the baseline and the pruned model at
    batch 1 and 64 (each series timed in turn), and the batch-64 speedup the tables show."""
    repeats, warmup = (3, 2) if smoke else (20, 5)
    lat = {}
    for batch in (1, 64):
        b = latency(base, input_shape, batch, device, warmup=warmup, repeats=repeats)
        p = latency(pruned, input_shape, batch, device, warmup=warmup, repeats=repeats)
        lat[f"batch{batch}"] = latency_record(b, p)
    return {"latency_speedup": lat["batch64"]["speedup"], "latency": lat}
