"""Channel alignment: kept channel counts rounded to multiples of N, as torch-pruning's ``round_to``.

Vectorised conv kernels (oneDNN's blocked layouts, tensor cores) work on channel blocks of 8, 16 or
more; a layer left with 43 channels may run at the speed of 48. Rounding the kept counts lets a user
ask whether that costs them anything (``suite latency --round-to 1,8,16,32``).

The rule is torch-pruning's (``MetaPruner._round_to``): the kept count is rounded *down* to a
multiple of N, so the layer prunes at least what its ratio asks. Unlike torch-pruning, a layer is
never left empty: a kept count below N becomes N, and a layer of fewer than N channels (no multiple
of N fits) stays whole.

A transformer's attention heads are left as their ratios give them: a head is ``head_dim``
channels of each of q, k and v, so the kept inner width is a multiple of the head width whatever
the head count, and rounding the count of heads to N would leave most blocks' heads whole.

The result is a ratio per layer, not a count, so everything that reads ratios keeps working
unchanged: ``n_pruned(k / n, n) == k`` for every count k < n, so the surgery and every method
remove exactly the rounded count (a layer left whole drops out, as unpruned layers do).
"""

from __future__ import annotations

from torch import nn

from suite.errors import SuiteError
from suite.models.ratios import n_pruned
from suite.models.transformers import transformer_units


def rounded_kept(n: int, kept: int, round_to: int) -> int:
    """``kept`` of ``n`` channels rounded down to a multiple of ``round_to``, at least ``round_to``
    (at most ``n``: a layer narrower than ``round_to`` stays whole)."""
    if round_to < 1:
        raise SuiteError(f"round-to {round_to}: must be an integer >= 1")
    if round_to == 1:
        return kept
    return min(n, max(round_to, kept - kept % round_to))


def round_ratios(model: nn.Module, layer_ratios: dict[str, float], round_to: int, layout) -> dict[str, float]:
    """``layer_ratios`` (layer name -> ratio, as a setting resolves them) with each layer's kept
    count rounded by :func:`rounded_kept`, as ratios ``pruned / n`` that ``n_pruned`` maps back to
    the rounded count exactly; layers the rounding leaves whole are left out. ``layout`` (a
    ``suite.models.layouts.Layout``) says how many channels each unit has."""
    heads = {n for n, unit in transformer_units(model).items() if unit[0] == "heads"}
    out = {}
    for name, r in layer_ratios.items():
        if name in heads:
            out[name] = r
            continue
        n = layout.unit_size(model, name)
        kept = rounded_kept(n, n - n_pruned(r, n), round_to)
        if kept < n:
            out[name] = (n - kept) / n
    return out


_ALIGNED_TARGETS: dict[tuple, dict[str, float]] = {}


def aligned_flops_target(
    spec, model: nn.Module, layout, input_shape: tuple[int, ...], round_to: int
) -> dict[str, float]:
    """A FLOPs target (``2.5x``) with kept counts aligned to ``round_to``: the layer ratios of the
    uniform ratio whose *aligned* surgery comes nearest the target (a tie: the deeper cut, as for counts
    as given).
    Resolving the target as given and aligning after lands elsewhere, since aligning rounds kept
    counts down: torchvision's ResNet-18 at ``1.939x`` aligned to 32 ran 2.31x.
    Aligned, the speedup is a staircase in the ratio, which the interpolating search of
    :func:`suite.models.ratios.ratio_for_speedup` is not made for (and its cache, keyed without the
    alignment, would answer for the counts as given): this bisects the step that crosses the target
    (speedup is non-decreasing in the ratio) and takes the nearer of its two sides. Cached per
    architecture, input shape, spec and alignment."""
    from dataclasses import replace

    from suite.models.ratios import dry_surgery, resolve

    key = (
        spec,
        round_to,
        tuple(input_shape),
        type(layout).__name__,
        tuple((n, tuple(p.shape)) for n, p in model.named_parameters()),
    )
    if key in _ALIGNED_TARGETS:
        return dict(_ALIGNED_TARGETS[key])  # a copy: a caller may edit what it is given

    def layers(r: float) -> dict[str, float]:
        given = resolve(replace(spec, target=None, uniform=round(r, 6)), model, layout, "filter", input_shape)
        return round_ratios(model, given, round_to, layout)

    def speedup(r: float) -> float:
        cut = layers(r)
        return dry_surgery(model, cut, input_shape, layout)["speedup"] if cut else 1.0

    lo, s_lo, hi, s_hi = 0.0, 1.0, 0.99, speedup(0.99)
    if s_hi < spec.target:
        raise SuiteError(
            f"target {spec.target:g}x is beyond reach with counts aligned to {round_to}: removing 99% of every "
            f"prunable group gives {s_hi:.2f}x; ask for at most {s_hi:.2f}x or align to less"
        )
    while hi - lo > 1e-4 and s_hi != spec.target:
        mid = (lo + hi) / 2
        s_mid = speedup(mid)
        if s_mid >= spec.target:
            hi, s_hi = mid, s_mid
        else:
            lo, s_lo = mid, s_mid
    _ALIGNED_TARGETS[key] = layers(hi if s_hi - spec.target <= spec.target - s_lo else lo)
    return dict(_ALIGNED_TARGETS[key])


def parse_round_to(text: str) -> list[int]:
    """``1,8,16,32`` -> [1, 8, 16, 32] (duplicates dropped, order kept); anything else is a one-line error."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise SuiteError(f"--round-to {text!r}: must be a comma list of integers >= 1, e.g. 1,8,16,32")
    return list(dict.fromkeys(values))
