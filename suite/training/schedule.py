"""How long each training phase of a job runs, and at which learning rates.

The cap on a method's own training, the fine-tuning's length under the paper protocol or an
equal-sample budget, and the fine-tuning's schedule stretched to that length. These decide trained
numbers, so they live with the training code (the training-code fingerprint follows the pipeline
into this module), apart from planning, whose edits (a setting's description, a new setting) must
not make stored runs stale.
"""

from __future__ import annotations

import math
from collections.abc import Callable

SMOKE_STEPS = 20  # every phase of a --smoke run is cut to this many iterations


def prune_cap(max_iters: int, smoke: bool) -> int:
    """The most iterations a method's own training may run (the setting's ``[prune] max_iters``)."""
    return SMOKE_STEPS if smoke else max_iters


def finetune_steps(
    epochs: int, batch_size: int, batches_per_epoch: int, *, total_samples: int | None, own_samples: int, smoke: bool
) -> int:
    """Fine-tuning iterations: the recipe's (``total_samples`` None: the paper protocol; cut to
    :data:`SMOKE_STEPS` in a smoke run), or what a method's own training left of an equal budget,
    rounded up to a whole batch (rows are equal to within one fine-tuning batch)."""
    if total_samples is None:
        steps = epochs * batches_per_epoch
        return min(steps, SMOKE_STEPS) if smoke else steps
    return max(1, math.ceil((total_samples - own_samples) / batch_size))


def stretched_lr(
    lr_at: Callable[[int], float], epochs: int, steps: int, batches_per_epoch: int
) -> Callable[[int], float]:
    """The learning rate per epoch of a fine-tuning of ``steps`` iterations on a recipe of
    ``epochs``: every milestone scaled by steps / the recipe's iterations (the recipe itself when
    they are equal), so a longer or shorter fine-tuning keeps the recipe's shape instead of running
    on at its last rate. A milestone lands on the first epoch at or after its scaled place (the
    loop sets the rate per epoch)."""
    factor = steps / (epochs * batches_per_epoch)
    if factor == 1:
        return lr_at
    return lambda epoch: lr_at(math.floor(epoch / factor + 1e-9))


def lr_milestones(lr: Callable[[int], float], epochs: float) -> dict[str, float]:
    """{first epoch: rate} of a per-epoch schedule over ``epochs``: what a run's fine-tuning ran."""
    out, last = {}, None
    for epoch in range(math.ceil(epochs)):
        if lr(epoch) != last:
            out[str(epoch)] = last = lr(epoch)
    return out
