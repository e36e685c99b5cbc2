"""Which numerics a command gets: exactly what it names, and fp32 when it names nothing.

Kept apart from ``suite.training.numerics`` because choosing is not computing: the numerics a run gets are
recorded in its identity, so this module cannot change a trained number and stays outside the
training-code fingerprint (changing the default renames no run and makes none stale).

Why fp32 by default, even where bf16 is fast (measured on 2 cores of an Intel Xeon with AMX, torch
2.14.1; README: Precision and speed): bf16 + channels-last trains ResNet-20 2.3x faster, and on
fmnist-cnn4 its baseline kept the fp32 accuracy (90.39 +- 0.30 against 90.13 +- 0.29, 3 seeds), but
on cifar10jpg-resnet20 the mean of its 3 seeds (86.06 +- 0.23) fell below every fp32 seed (86.25 +-
0.09; Welch p 0.27). A difference that small is not significant at 3 seeds, but it is outside the fp32 spread,
and a pruning comparison should not trade accuracy for speed unless its author chooses to: so the
fast arithmetic is one flag away and said so in the run header (:func:`hint`), never implied.
"""

from __future__ import annotations

import torch

from suite.training.numerics import Numerics


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: a CPU with AMX or AVX512-BF16 (elsewhere bf16
    is emulated and slower than fp32), a GPU of compute capability 8.0 (Ampere) or later."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":  # torch.cpu's probes are private; a torch without them counts as no
        return any(
            getattr(torch.cpu, probe, lambda: False)()
            for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        )
    return False


def resolve(precision: str | None, channels_last: bool | None, compile: bool, device: torch.device) -> Numerics:
    """The command's numerics (``None``: not named, so fp32 and contiguous), checked against the device."""
    numerics = Numerics(precision or "fp32", bool(channels_last), compile)
    numerics.check(device)
    return numerics


def hint(precision: str | None, channels_last: bool | None, device: torch.device) -> str:
    """What a header adds when the command named no numerics on hardware where the fast ones pay
    off: the flags, and that they are a choice (empty otherwise)."""
    if precision is not None or channels_last is not None or not fast_bf16(device):
        return ""
    return (
        f" ({device.type} has fast bf16: --precision bf16 --channels-last trains about 2x faster, "
        f"a separate comparison with its own baseline; README: Precision and speed)"
    )
