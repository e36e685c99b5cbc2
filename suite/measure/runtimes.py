"""The runtimes ``suite latency`` times a model under, by name. Kept apart from
:mod:`suite.measure.latency` (and free of torch) so the CLI can list them in its help without
importing torch on every command.

Numerics are part of a runtime's name, never mixed into another's series: ``eager-cl`` is fp32 in
channels-last, ``eager-bf16`` bf16 weights and input (contiguous), ``eager-bf16-cl`` both,
``openvino-bf16`` OpenVINO told to infer in bf16; the plain names are fp32 and contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import SuiteError


@dataclass(frozen=True)
class Runtime:
    """How a model is run: the engine and the numerics it computes in."""

    engine: str  # eager, compile, onnx, openvino, cuda-graph, tensorrt
    dtype: str = "fp32"
    channels_last: bool = False

    @property
    def numerics(self) -> str:
        return self.dtype + (", channels-last" if self.channels_last else "")


RUNTIMES = {
    "eager": Runtime("eager"),
    "compile": Runtime("compile"),
    "onnx": Runtime("onnx"),
    "openvino": Runtime("openvino"),
    "eager-cl": Runtime("eager", channels_last=True),
    "eager-bf16": Runtime("eager", "bf16"),
    "eager-bf16-cl": Runtime("eager", "bf16", channels_last=True),
    "openvino-bf16": Runtime("openvino", "bf16"),
    "cuda-graph": Runtime("cuda-graph"),
    "tensorrt": Runtime("tensorrt"),
}
DEFAULT_RUNTIMES = "eager,compile,onnx,openvino"
CPU_ENGINES = ("onnx", "openvino")  # their CPU runs would not time a GPU asked for
GPU_ENGINES = ("cuda-graph", "tensorrt")


def parse_runtimes(text: str) -> list[str]:
    """``eager,compile,onnx`` -> a list; an unknown name is a one-line error."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if bad or not names:
        raise SuiteError(
            f"--runtimes {text!r}: unknown runtime(s) {', '.join(bad) or '(none given)'}; "
            f"choose from {','.join(RUNTIMES)}"
        )
    return list(dict.fromkeys(names))
