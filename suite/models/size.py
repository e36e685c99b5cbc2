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
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_attention_on_cpu()) as counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _attention_on_cpu() -> dict:
    """torch's counter has formulas for the CUDA kernels of ``scaled_dot_product_attention`` but not
    for the CPU one it dispatches to here, whose two matmuls would count as nothing (and as two
    bmm on the meta device the dry surgery runs on): the CPU kernel counted as the same attention."""
    from torch.utils.flop_counter import sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None:
        return {}

    def flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return {op: flops}
