"""A model's size and cost in the GReg paper's convention: parameters and FLOPs.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``: it counts conv and matmul FLOPs as
2 x multiply-adds and ignores batch norm, ReLU, pooling and additions, which is exactly the
GReg paper's convention (conv + linear only, multiply-adds doubled; ResNet-56 = 125.49 M MACs).
They live with the models, not with latency timing, because a method's budget (``train_macs``) and
a run's ratios are computed from them: they are training code, timing is not.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Conv and linear weights and biases; batch norm left out (the paper's convention)."""
    return sum(
        p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for p in m.parameters(recurse=False)
    )


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 x multiply-adds) of one forward pass on a single input of ``input_shape`` (C, H, W)."""
    from torch.utils.flop_counter import FlopCounterMode  # imports torch._decomp: seconds, so only when counting

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
