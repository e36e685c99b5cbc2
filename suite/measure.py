"""Params, FLOPs and latency, in the paper's convention (accuracy: ``suite.train.evaluate``).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``: it counts conv and matmul FLOPs as
2 x multiply-adds and ignores batch norm, ReLU, pooling and additions, which is exactly the
GReg paper's convention (conv + linear only, multiply-adds doubled; ResNet-56 = 125.49 M MACs).
"""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Conv and linear weights and biases; batch norm left out (the paper's convention)."""
    return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               for p in m.parameters(recurse=False))


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 x multiply-adds) of one forward pass on a single input of ``input_shape`` (C, H, W)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


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


@dataclass(frozen=True)
class Latency:
    median_ms: float
    batch: int
    device: str
    threads: int
    repeats: int


@torch.no_grad()
def latency(model: nn.Module, input_shape: tuple[int, ...], batch: int, device: torch.device,
            warmup: int = 5, repeats: int = 20) -> Latency:
    """Median wall time of one forward pass of ``batch`` inputs, after ``warmup`` passes."""
    was_training = model.training
    model.eval()
    x = torch.randn(batch, *input_shape, device=device)  # latency only: values do not matter
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
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
    return Latency(1000 * statistics.median(times), batch, str(device), torch.get_num_threads(), repeats)
