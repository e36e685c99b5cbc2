"""Per-layer pruning ratios: the paper's ratio strings, parsed and resolved against a model.

Accepted forms (methods/GREG_SPEC.md, "Layer ratios"):
  ``0.7``                      every prunable conv at 0.7 (plain nets: all convs but conv 0, as the
                               paper does for VGG-19; ResNets: every prunable conv of every stage)
  ``[0,0.75,0.75,0.32,0]``     ResNets: stem, stage 1..N, classifier; stem and classifier must be 0
  ``[1-15:0.7]``, ``[0:0.5,3:0.2]``  plain nets: conv index (0-based) or inclusive range -> ratio
Skip lists (ResNets): ``[1.0,2.0,2.3]`` leaves block b (0-based) of stage s (1-based) unpruned.
For any model (``suite.models.groups``; on the built-in families over the paper's prunable convs):
  ``features.*=0.5,classifier=0``  module-name globs -> ratio, the last matching glob wins; a
                               group takes a glob matching any of its convs; unmatched layers stay whole
  ``2.5x``                     a FLOPs speedup: the uniform ratio whose real surgery comes nearest
                               (bisection), filter methods only
A ``generic`` model (torchvision, timm, a user's file) takes a single ratio for every prunable group.
Which form a model takes, and what it selects, is its layout's answer (``suite.models.layouts``).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, replace

import torch
from torch import nn

from suite.errors import SuiteError
from suite.models.nets import example_input

_NUM = r"\d*\.?\d+(?:[eE][-+]?\d+)?"


@dataclass(frozen=True)
class RatioSpec:
    """A parsed ratio string: exactly one of ``uniform``, ``stages`` or ``by_index`` is set."""

    text: str
    uniform: float | None = None
    stages: tuple[float, ...] | None = None
    by_index: tuple[tuple[int, int, float], ...] | None = None  # (first, last, ratio)
    skip: tuple[tuple[int, int], ...] = ()
    globs: tuple[tuple[str, float], ...] | None = None  # (module-name pattern, ratio)
    target: float | None = None  # a FLOPs speedup, e.g. 2.5


def _ratio(tok: str, text: str) -> float:
    if not re.fullmatch(_NUM, tok):
        raise SuiteError(f"bad ratio string {text!r}: {tok!r} is not a number")
    r = float(tok)
    if not 0 <= r < 1:
        raise SuiteError(f"bad ratio string {text!r}: ratio {r} must be in [0, 1)")
    return r


def parse_skip(text: str) -> tuple[tuple[int, int], ...]:
    """``[1.0,2.3]`` -> ((1, 0), (2, 3)); empty string or ``[]`` -> ()."""
    body = text.strip()
    if body in ("", "[]"):
        return ()
    if not (body.startswith("[") and body.endswith("]")):
        raise SuiteError(f"bad skip list {text!r}: write it like [1.0,2.0,2.3] (stage.block)")
    out = []
    for tok in body[1:-1].split(","):
        m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", tok)
        if not m:
            raise SuiteError(f"bad skip list {text!r}: {tok.strip()!r} is not stage.block like 2.3")
        out.append((int(m.group(1)), int(m.group(2))))
    return tuple(out)


def parse_ratios(text: str, skip: str = "") -> RatioSpec:
    """Parse a ratio string; raise a one-line :class:`SuiteError` saying what is wrong."""
    body = text.strip()
    skips = parse_skip(skip)
    if not body:
        raise SuiteError("empty ratio string: give e.g. 0.5, [0,0.5,0.5,0.5,0] or [1-15:0.7]")
    m = re.fullmatch(rf"({_NUM})\s*x", body)
    if m:
        if float(m.group(1)) <= 1:
            raise SuiteError(f"bad target {text!r}: a FLOPs speedup must be > 1, e.g. 2.5x")
        return RatioSpec(text, target=float(m.group(1)), skip=skips)
    if "=" in body and not body.startswith("["):
        globs = []
        for item in (t.strip() for t in body.split(",")):
            pattern, eq, value = item.partition("=")
            if not eq or not pattern.strip():
                raise SuiteError(
                    f"bad ratio string {text!r}: {item!r} is not 'module.glob=ratio' (e.g. features.*=0.5,classifier=0)"
                )
            globs.append((pattern.strip(), _ratio(value.strip(), text)))
        return RatioSpec(text, globs=tuple(globs), skip=skips)
    if not body.startswith("["):
        return RatioSpec(text, uniform=_ratio(body, text), skip=skips)
    if not body.endswith("]"):
        raise SuiteError(f"bad ratio string {text!r}: missing closing ']'")
    items = [t.strip() for t in body[1:-1].split(",")]
    if items == [""]:
        raise SuiteError(f"bad ratio string {text!r}: the list is empty")
    if any(":" in t for t in items):
        ranges = []
        for t in items:
            m = re.fullmatch(r"(\d+)(?:-(\d+))?:(.+)", t)
            if not m:
                raise SuiteError(f"bad ratio string {text!r}: {t!r} is not 'i:r' or 'i-j:r'")
            a, b = int(m.group(1)), int(m.group(2) or m.group(1))
            if b < a:
                raise SuiteError(f"bad ratio string {text!r}: range {a}-{b} runs backwards")
            ranges.append((a, b, _ratio(m.group(3).strip(), text)))
        return RatioSpec(text, by_index=tuple(ranges), skip=skips)
    return RatioSpec(text, stages=tuple(_ratio(t, text) for t in items), skip=skips)


def n_pruned(ratio: float, n: int) -> int:
    """``min(ceil(r * n), n - 1)`` (methods/GREG_SPEC.md). The product is rounded to 9 decimals first so
    that float noise (0.7 * 10 = 7.000000000000001) does not prune one filter too many."""
    if ratio <= 0:
        return 0
    return min(math.ceil(round(ratio * n, 9)), n - 1)


def resolve(
    spec: RatioSpec, model: nn.Module, layout, granularity: str = "filter", input_shape: tuple[int, ...] | None = None
) -> dict[str, float]:
    """Map a parsed spec to {layer name: ratio} (ratio > 0 only) on the model's ``layout``
    (``suite.models.layouts``; the model entry's ``layout``).

    Filter granularity: the layout's prunable convs (a coupled layout: the root conv of each
    prunable group). Weight (unstructured) granularity: any layer, so a ResNet stage entry covers
    every conv of the stage (downsample included) and the stem and classifier entries apply to the
    stem conv and the linear layer. ``input_shape`` (C, H, W): needed to trace a coupled layout and
    for a FLOPs target.
    """
    if spec.target is not None:
        return _resolve_target(spec, model, layout, granularity, input_shape)
    example = None if input_shape is None else example_input(input_shape[0], input_shape[1:])
    if spec.globs is not None:
        return layout.resolve_globs(spec, model, granularity, example)
    return layout.resolve(spec, model, granularity, example)


def _resolve_target(
    spec: RatioSpec, model: nn.Module, layout, granularity: str, input_shape: tuple[int, ...] | None
) -> dict[str, float]:
    if granularity == "weight":
        raise SuiteError(
            f"a FLOPs target ({spec.text}) applies to filter pruning; unstructured methods take a ratio (e.g. 0.9)"
        )
    if input_shape is None:
        raise ValueError("a FLOPs target needs the input shape")

    def uniform(r: float) -> dict[str, float]:
        return resolve(replace(spec, target=None, uniform=round(r, 6)), model, layout, granularity, input_shape)

    r = ratio_for_speedup(model, spec.target, uniform, input_shape, layout)
    return uniform(r)


def dry_surgery(model: nn.Module, layer_ratios: dict[str, float], input_shape: tuple[int, ...], layout) -> dict:
    """Remove the first ``n_pruned(r, n)`` filters of every named conv (or group) from a copy and run
    it (on the meta device): {params, flops, pruned_params, pruned_flops, speedup}. Sizes depend only on how many go, not
    which. A surgery or forward that fails is a one-line error (a spec the model cannot take)."""
    from suite.models.size import count_flops, count_params

    # On the meta device: shapes without arithmetic, so a probe costs the tracing, not the convs.
    work = copy.deepcopy(model).to("meta").eval()
    params, flops = count_params(work), count_flops(work, input_shape)
    choice = {n: list(range(n_pruned(r, layout.unit_size(work, n)))) for n, r in layer_ratios.items()}
    example = example_input(input_shape[0], input_shape[1:])
    try:
        layout.remove(work, choice, example)
        with torch.no_grad():
            work(example.to("meta"))
        p, f = count_params(work), count_flops(work, input_shape)
    except SuiteError:
        raise
    except Exception as e:
        raise SuiteError(
            f"the surgery fails on this model at these ratios ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        ) from None
    return {
        "params": params,
        "flops": flops,
        "pruned_params": p,
        "pruned_flops": f,
        "speedup": flops / f,
        "param_reduction": params / p,
        "pruned_layers": len(layer_ratios),
    }


_TARGETS: dict[tuple, float] = {}


def ratio_for_speedup(
    model: nn.Module,
    target: float,
    uniform: callable,
    input_shape: tuple[int, ...],
    layout,
    tolerance: float = 0.005,
) -> float:
    """The uniform ratio whose real surgery gives the FLOPs speedup nearest ``target``.

    A bracketed search (speedup grows with the ratio): each probe is a dry surgery, placed by
    interpolating log-speedup inside the bracket (FLOPs fall about as (1 - r)^2, so this lands in a
    few probes), or at the bracket's middle when interpolation would not shrink it enough; it stops
    within ``tolerance`` of the target. ``uniform(r)`` maps a ratio to the layer ratios it means.
    Cached per architecture (parameter names and shapes), input shape and target."""
    key = (
        target,
        tuple(input_shape),
        type(layout).__name__,
        tuple((n, tuple(p.shape)) for n, p in model.named_parameters()),
        tuple(sorted(uniform(0.5).items())),
    )
    if key in _TARGETS:
        return _TARGETS[key]

    def speedup(r: float) -> float:
        return dry_surgery(model, uniform(r), input_shape, layout)["speedup"] if r > 0 else 1.0

    lo, s_lo, hi = 0.0, 1.0, 0.99
    s_hi = speedup(hi)
    if s_hi < target:
        raise SuiteError(
            f"target {target:g}x is beyond reach: removing 99% of every prunable group gives "
            f"{s_hi:.2f}x; ask for at most {s_hi:.2f}x or prune more layers"
        )
    guess = min(max(1 - 1 / math.sqrt(target), 0.01), 0.98)  # (1 - r)^2 = 1 / target
    for _ in range(20):
        r = guess
        s = speedup(r)
        if abs(s / target - 1) <= tolerance:
            lo = hi = r
            s_lo = s_hi = s
            break
        if s >= target:
            hi, s_hi = r, s
        else:
            lo, s_lo = r, s
        if hi - lo < 1e-4:
            break
        # interpolate log-speedup linearly inside the bracket; keep clear of its ends
        t = (math.log(target) - math.log(s_lo)) / (math.log(s_hi) - math.log(s_lo))
        guess = lo + min(max(t, 0.1), 0.9) * (hi - lo)
    best = hi if abs(s_hi - target) <= abs(target - s_lo) else lo
    _TARGETS[key] = round(best, 6)
    return _TARGETS[key]
