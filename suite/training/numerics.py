"""How a run's arithmetic is carried out: precision (autocast), memory layout, compilation.

A run's :class:`Numerics` applies to every pass the harness makes for it (the baseline, a method's
own training through the suite's loop, fine-tuning, evaluation), so one comparison is computed in
one precision. Mixed precision here is autocast: the weights, their gradients and the optimizer
stay float32 (the master weights); only the operations autocast lowers (convolutions and matrix
products, forward and backward) run in bf16/fp16. So a method's per-step hook (a penalty
``grad += lambda * w``, a mask re-applied after the step) works on float32 tensors exactly as in
an fp32 run. fp16 scales the loss (``GradScaler``), and the loop unscales the gradients before
any hook sees them.

Only what differs from fp32 / contiguous / eager enters a run's identity (:meth:`Numerics.identity`),
so every run stored before these options existed keeps its folder name. Which numerics a command
gets when it names none is decided in ``suite.training.numerics_default`` (outside the training-code
fingerprint: the choice is recorded in the run's identity, so it cannot change a trained number).

Latency (``suite.measure.metrics``) is always timed on the fp32, contiguous, eager model: it measures the
pruned architecture, not how it was trained.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from dataclasses import dataclass

import torch
import torch._functorch.config
from torch import nn

from suite.errors import SuiteError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Numerics:
    """``precision``: fp32, bf16 or fp16 (autocast); ``channels_last``: model and batches in NHWC;
    ``compile``: ``torch.compile`` the model for the training step and evaluation."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise SuiteError(f"--precision {self.precision!r}: must be one of {', '.join(PRECISIONS)}")

    @classmethod
    def from_record(cls, d: dict) -> Numerics:
        """The numerics a stored config or result records (runs stored before the options: fp32)."""
        return cls(d.get("precision") or "fp32", bool(d.get("channels_last", False)), bool(d.get("compile", False)))

    def identity(self) -> dict:
        """What enters a run's (and a baseline's) identity: only what differs from fp32, contiguous
        and eager (compared with fp32, not with the default, so a changed default never renames a
        stored fp32 run)."""
        ident = {}
        if self.precision != "fp32":
            ident["precision"] = self.precision
        if self.channels_last:
            ident["channels_last"] = True
        if self.compile:
            ident["compile"] = True
        return ident

    def record(self) -> dict:
        """All three fields, for config.json, result.json and a baseline's meta.json."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile}

    def label(self) -> str:
        """``fp32``, ``bf16, channels-last``, ``fp32, compiled``: how pages and headers name it."""
        return ", ".join([self.precision] + ["channels-last"] * self.channels_last + ["compiled"] * self.compile)

    def check(self, device: torch.device) -> None:
        """Refuse a precision the device cannot run usefully, before anything is trained."""
        if self.precision == "fp16" and device.type != "cuda":
            raise SuiteError(
                f"--precision fp16 on {device.type}: fp16 autocast with loss scaling is for CUDA; "
                f"on a CPU use --precision bf16 (or fp32)"
            )
        if self.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise SuiteError(
                f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use --precision fp16 (or fp32)"
            )

    # ------------------------------------------------------------------ applied by the loop
    def autocast(self, device: torch.device):
        """The context a forward pass (and its loss) runs in; nothing at all for fp32."""
        dtype = PRECISIONS[self.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """fp16's loss scaler (fp16 gradients underflow without it); None for fp32 and bf16,
        whose exponent range is float32's."""
        return torch.amp.GradScaler(device.type) if self.precision == "fp16" else None

    def layout(self, model: nn.Module) -> nn.Module:
        """The model in the run's memory format (in place: the parameters stay the same objects,
        so hooks holding them keep working)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def forward(self, model: nn.Module, desc: str = "model"):
        """What the loop calls for a forward pass: the model, or its compiled form. A model whose
        compilation failed once runs eager from then on (said once, not at every phase)."""
        if not self.compile or model in _FAILED:
            return model
        return Compiled(model, desc)


FP32 = Numerics()


# Why a model's compilation fell back to eager. Weak keys: a finished job's model is freed. (Compiled
# graphs need no cache here: dynamo keeps them per code object and reuses them for a new wrapper.)
_FAILED: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


class Compiled:
    """``torch.compile(model)``, falling back to the eager model (with one line saying why) when
    compilation fails: inductor needs a C++ compiler on CPU and cannot take every model, and a run
    should train rather than stop. The reason is kept for the run's record (:func:`compile_failure`).

    Compilation happens at the first forward call (and again when shapes or the train/eval mode
    change), so that is where a failure shows; the failed call is repeated eagerly, so nothing is
    skipped."""

    def __init__(self, model: nn.Module, desc: str):
        self.model, self.desc = model, desc
        try:
            self.fn = torch.compile(model)
        except Exception as e:  # e.g. a Python version dynamo does not support
            self._fall_back(e)

    def __call__(self, x):
        if self.model not in _FAILED:
            try:
                # compile the backward graph together with the forward (AOTAutograd defers it to the
                # first backward by default), so its failure too shows here, before anything ran
                with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                    return self.fn(x)
            except Exception as e:  # torch.compile raises many types (backend, C++ compiler, tracing)
                self._fall_back(e)
        return self.model(x)

    def _fall_back(self, e: Exception) -> None:
        text = str(e).strip()
        _FAILED[self.model] = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]
        print(
            f"--compile: torch.compile failed for {self.desc} ({_FAILED[self.model]}); running it eager instead",
            file=sys.stderr,
            flush=True,
        )


def compile_failure(model: nn.Module) -> str | None:
    """Why ``model``'s compilation fell back to eager, or None (not compiled, or compiled fine)."""
    return _FAILED.get(model)
