"""The machine a number was trained or timed on: its model name does not say its instructions, and a
training resumed in a session on another machine is recorded as trained by both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from suite.measure.metrics import instruction_set, machine, machine_text

CPU = torch.device("cpu")


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo (Linux) to check against")
def test_the_instruction_set_is_what_the_kernel_reports():
    """Checked against the CPU flags the kernel lists (not torch's own probes): AVX-512 dispatch
    only where avx512f is listed, and the bf16 and AMX units exactly where they are."""
    flags, isa = _cpu_flags(), instruction_set(CPU).split()
    assert (isa[0] == "AVX512") <= ("avx512f" in flags) and (isa[0] == "AVX2") <= ("avx2" in flags)
    assert ("AVX512-BF16" in isa) == ("avx512_bf16" in flags) and ("AMX" in isa) == ("amx_tile" in flags)
    assert machine(CPU)["isa"] == instruction_set(CPU)


def test_a_machine_in_words_and_one_recorded_before_its_instructions_were():
    assert machine_text({"processor": "AMD EPYC", "isa": "AVX2"}) == "AMD EPYC (AVX2)"
    assert machine_text({"processor": "AMD EPYC"}) == "AMD EPYC"
    assert machine_text({"device": "cpu"}) == "an unrecorded cpu"


def test_a_run_resumed_on_another_machine_records_each(tmp_path):
    """The runner's record of a job whose checkpoints another machine made (a campaign resumed in a
    session on another CPU) lists both machines in order; one that starts afresh, or resumes on the
    machine that made them, records none."""
    from suite.running.runner import _machines_so_far

    here = machine(CPU)
    other = {"processor": "AMD EPYC", "isa": "AVX512 AVX512-BF16", "threads": 2}
    (tmp_path / "config.json").write_text(json.dumps({"training_code": "x", **other}))
    assert _machines_so_far(tmp_path, here) == {}  # no checkpoint: it starts again, all of it here
    (tmp_path / "finetune.ckpt").write_bytes(b"")
    assert _machines_so_far(tmp_path, here) == {"machines": [other, here]}
    (tmp_path / "config.json").write_text(json.dumps({"training_code": "x", **here, "machines": [other, here]}))
    assert _machines_so_far(tmp_path, here) == {"machines": [other, here]}  # resumed again here: not twice
    (tmp_path / "config.json").write_text(json.dumps({"training_code": "x", **here}))
    assert _machines_so_far(tmp_path, here) == {}


def test_a_baseline_resumed_on_another_machine_records_each(tmp_path):
    from suite.training.baseline import _machines_so_far

    here = machine(CPU)
    other = {"processor": "Intel Xeon", "isa": "AVX512 AVX512-BF16 AMX", "threads": 2}
    assert _machines_so_far(tmp_path, other) == [other]  # a fresh training
    (tmp_path / "train.ckpt").write_bytes(b"")  # killed after a checkpoint
    assert _machines_so_far(tmp_path, here) == [other, here]
    assert json.loads((tmp_path / "machines.json").read_text()) == [other, here]
    assert _machines_so_far(tmp_path, here) == [other, here]
