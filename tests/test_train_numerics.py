"""Precision, memory layout and compilation in the training loop and evaluation (suite.training.numerics),
on the real Fashion-MNIST: fp32 master weights under autocast, gradients unscaled before the hooks,
evaluation under inference mode, the compile fallback, and what a run records."""

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import QuietHook
from torch import nn

from suite.cli.commands import main
from suite.models.nets import build_model
from suite.training.loop import evaluate, train
from suite.training.numerics import FP32, Numerics

CPU = torch.device("cpu")
TINY = str(Path(__file__).parent / "data" / "tiny-fmnist.toml")
BF16_CL = Numerics("bf16", channels_last=True)


def _nhwc(t: torch.Tensor) -> bool:
    """Channels-last strides (the channel dimension is the innermost), as a test can tell even
    for one channel, where both layouts count as contiguous."""
    return t.dim() == 4 and t.stride(1) == 1 and t.shape[2] * t.shape[3] > 1


class _Probe:
    """A hook that records, at every after_backward, the dtype and layout of the conv gradients and
    a copy of one gradient; and at every after_step the dtype of the weights."""

    def __init__(self):
        self.grad_dtypes, self.grad_channels_last, self.weight_dtypes, self.grads = set(), set(), set(), []

    def after_backward(self, model, step):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                self.grad_dtypes.add(m.weight.grad.dtype)
                self.grad_channels_last.add(_nhwc(m.weight.grad))
        self.grads.append(model.features[4].weight.grad.clone())

    def after_step(self, model, step):
        self.weight_dtypes |= {p.dtype for p in model.parameters()}
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class _Penalty(QuietHook):
    """grad += 0.5 * w on one conv: a per-step hook whose effect the loss scale would change if it
    ran on scaled gradients."""

    def after_backward(self, model, step):
        w = model.features[4].weight
        w.grad.add_(w.detach(), alpha=0.5)


def _train(data, numerics=FP32, steps=20, hooks=(), eval_split="test", **kw):
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    out = train(
        model,
        data,
        lr=lambda e: 0.05,
        batch_size=128,
        momentum=0.9,
        weight_decay=5e-4,
        device=CPU,
        seed=3,
        stream="baseline",
        total_steps=steps,
        hooks=hooks,
        eval_split=eval_split,
        numerics=numerics,
        **kw,
    )
    return model, out


def test_bf16_channels_last_trains_fp32_weights_and_learns(small_fmnist):
    """Autocast changes the forward's arithmetic (the weights end elsewhere than fp32's) but not the
    master weights: parameters and the gradients a hook sees stay float32, in channels-last; the
    evaluation inside the loop (epoch 1 ends at step 16) leaves the model trainable, and it learns
    as fp32 does."""
    ref, ref_out = _train(small_fmnist)
    probe = _Probe()
    model, out = _train(small_fmnist, BF16_CL, hooks=(probe,))
    assert probe.grad_dtypes == {torch.float32} and probe.weight_dtypes == {torch.float32}
    assert probe.grad_channels_last == {True}
    assert all(_nhwc(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert out.steps == 20 and out.compile_failure is None
    assert max((a - b).abs().max().item() for a, b in zip(model.parameters(), ref.parameters())) > 0
    (row,), (ref_row,) = ([r for r in o.history if "test_top1" in r] for o in (out, ref_out))
    # the epoch's mean loss, from 2.30 (chance) down; and the test top-1 after it, both near fp32's
    assert row["loss"] < 2.1 and abs(row["loss"] - ref_row["loss"]) < 0.05, (row, ref_row)
    assert abs(row["test_top1"] - ref_row["test_top1"]) < 5, (row, ref_row)


class _Flags(nn.Module):
    """cnn4, recording under which modes each forward pass ran, and the layout of the activations
    entering its second conv (16 channels: the one-channel input looks alike in both layouts)."""

    def __init__(self):
        super().__init__()
        self.net = build_model("cnn4", 10, 1)
        self.seen = []
        self.net.features[4].register_forward_pre_hook(
            lambda m, inp: self.seen.append(
                (torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu"), _nhwc(inp[0]))
            )
        )

    def forward(self, x):
        return self.net(x)


def test_evaluation_runs_under_inference_mode_in_the_runs_numerics(small_fmnist):
    torch.manual_seed(0)
    model = _Flags()
    fp32 = evaluate(model, small_fmnist.eval_batches("test", 500, CPU), CPU)
    assert model.seen == [(True, False, False)] * 2
    model.seen.clear()
    bf16 = evaluate(model, small_fmnist.eval_batches("test", 500, CPU), CPU, BF16_CL)
    assert model.seen == [(True, True, True)] * 2 and bf16["n"] == fp32["n"] == 1000
    assert model.training  # evaluation restores the mode it found
    # the parameters were converted outside inference mode: the model still trains
    out = train(
        model,
        small_fmnist,
        lr=lambda e: 0.01,
        batch_size=128,
        momentum=0.9,
        weight_decay=0,
        device=CPU,
        seed=0,
        stream="baseline",
        total_steps=2,
        eval_split=None,
        numerics=BF16_CL,
    )
    assert out.steps == 2


def test_loss_scaling_unscales_before_the_hooks(small_fmnist, monkeypatch, tmp_path):
    """fp16's GradScaler path, forced on CPU in fp32 arithmetic where scaling by a power of two is
    exact: with the gradients unscaled before the hooks' after_backward and the step taken on them,
    the run equals the unscaled one bit for bit (a hook fed scaled gradients would add its penalty
    1/1024 as strongly). Its checkpoint carries the scaler, and a killed run resumes bit-exactly."""
    plain_probe = _Probe()
    plain, _ = _train(small_fmnist, hooks=(_Penalty(), plain_probe), steps=12, eval_split=None)
    scalers = []

    def forced(self, device):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**10))
        return scalers[-1]

    monkeypatch.setattr(Numerics, "grad_scaler", forced)
    probe = _Probe()
    scaled, _ = _train(small_fmnist, hooks=(_Penalty(), probe), steps=12, eval_split=None)
    assert scalers[0].get_scale() == 2.0**10  # it did scale (and never met an inf)
    assert all(torch.equal(a, b) for a, b in zip(probe.grads, plain_probe.grads))
    for k, v in plain.state_dict().items():
        assert torch.equal(v, scaled.state_dict()[k]), k

    class Kill(Exception):
        pass

    class KillAt(_Penalty):
        def after_step(self, model, step):
            if step == 10:
                raise Kill
            return False

    ckpt = tmp_path / "t.ckpt"
    with pytest.raises(Kill):
        _train(small_fmnist, hooks=(KillAt(),), steps=12, eval_split=None, checkpoint=ckpt, checkpoint_every=4)
    assert torch.load(ckpt, weights_only=True)["scaler"]["scale"] == 2.0**10
    resumed, _ = _train(small_fmnist, hooks=(_Penalty(),), steps=12, eval_split=None, checkpoint=ckpt)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


class _Counting:
    """Stands in for torch.compile's result: counts the calls, then runs the model."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x):
        self.calls += 1
        return self.model(x)


def test_compile_is_what_trains_and_evaluates(small_fmnist, monkeypatch):
    made = []
    monkeypatch.setattr(torch, "compile", lambda m: made.append(_Counting(m)) or made[-1])
    ref, _ = _train(small_fmnist)
    model, out = _train(small_fmnist, Numerics(compile=True))
    # 20 training steps and the 2 test batches of the evaluation at the end of epoch 1
    assert sum(c.calls for c in made) == 22 and all(c.model is model for c in made)
    assert out.compile_failure is None
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_compile_failure_falls_back_to_eager_once_and_is_recorded(small_fmnist, monkeypatch, capsys):
    def broken(model):
        def call(x):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore detail")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    ref, _ = _train(small_fmnist)
    capsys.readouterr()
    model, out = _train(small_fmnist, Numerics(compile=True), desc="baseline x")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.compile failed for baseline x" in err[0] and "eager" in err[0]
    assert out.compile_failure == "RuntimeError: InvalidCxxCompiler: no working C++ compiler found"
    for k, v in ref.state_dict().items():  # the failed call was repeated eagerly: nothing skipped
        assert torch.equal(v, model.state_dict()[k]), k


def test_fast_bf16_is_what_the_cpu_flags_say():
    """The header hint's hardware probe agrees with the kernel's CPU flags (AMX tiles or AVX512-BF16)."""
    from suite.training.numerics_default import fast_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
    assert fast_bf16(CPU) == bool(flags & {"amx_tile", "avx512_bf16"})


@pytest.mark.data
@pytest.mark.parametrize("fast", [True, False])
def test_the_default_is_fp32_and_the_header_names_the_fast_flags(fast, monkeypatch, tmp_path, capsys):
    """Naming neither --precision nor --channels-last gives fp32, contiguous, whatever the hardware
    (bf16 lost ResNet-20 accuracy here: README); naming either gives exactly what is named. Where the
    hardware has fast bf16 and nothing was named, the header says which flags would use it."""
    from suite.training import numerics_default

    monkeypatch.setattr(numerics_default, "fast_bf16", lambda device: fast)
    assert numerics_default.resolve(None, None, False, CPU) == FP32
    assert numerics_default.resolve(None, None, True, CPU) == Numerics(compile=True)
    for precision, channels_last, want in (
        ("fp32", None, FP32),
        ("bf16", None, Numerics("bf16")),
        ("bf16", True, BF16_CL),
        (None, True, Numerics(channels_last=True)),
        (None, False, FP32),
    ):
        assert numerics_default.resolve(precision, channels_last, False, CPU) == want
    for extra, label, hinted in (
        ([], "fp32", fast),
        (["--precision", "fp32"], "fp32", False),
        (["--precision", "bf16", "--channels-last"], "bf16, channels-last", False),
        (["--no-channels-last"], "fp32", False),
    ):
        assert (
            main(["run", "--setting", TINY, "--methods", "l1", "--runs-dir", str(tmp_path), "--dry-run", *extra]) == 0
        )
        header = capsys.readouterr().out.splitlines()[0]
        assert f"precision {label}" in header and ("--precision bf16 --channels-last" in header) == hinted, header


def test_fp16_on_cpu_is_one_line_error(capsys):
    assert main(["run", "--precision", "fp16", "--device", "cpu", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --precision fp16 on cpu") and "bf16" in err[0]


@pytest.mark.data
def test_a_bf16_channels_last_run_is_recorded_and_named_apart(tmp_path, capsys):
    """End to end (smoke): the header and every record say the precision; the run and its baseline
    are other folders than fp32's; masks hold exactly after every bf16 step. Batches of 32, not the
    tiny setting's 128: bf16 is emulated on CPUs without AVX512-BF16 or AMX (a 128-batch step of cnn4
    took 0.54 s on an AVX2 EPYC), and nothing here depends on the batch size."""
    from suite.spec.plan import Job, resolve_hparams
    from suite.spec.settings import get_setting

    tiny = tmp_path / "tiny-fmnist.toml"
    tiny.write_text(Path(TINY).read_text().replace("batch_size = 128", "batch_size = 32"))
    runs = tmp_path / "runs"
    args = [
        "run",
        "--setting",
        str(tiny),
        "--methods",
        "greg1-unstructured",
        "--smoke",
        "--runs-dir",
        str(runs),
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--channels-last",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "device cpu, precision bf16, channels-last" in out.splitlines()[0]
    assert "precision bf16, channels-last" in out and "greg1-unstructured [bf16, channels-last]" in out
    (folder,) = runs.glob("tiny-fmnist/greg1-unstructured/*")
    config, result = (json.loads((folder / f).read_text()) for f in ("config.json", "result.json"))
    for record in (config, result):
        assert (record["precision"], record["channels_last"], record["compile"]) == ("bf16", True, False)
    setting = get_setting(str(tiny))
    job = Job(setting, "greg1-unstructured", resolve_hparams(setting, "greg1-unstructured", None), 0, smoke=True)
    data = SimpleNamespace(fingerprint=config["data"])
    assert job.folder(runs, data.fingerprint) != folder  # the fp32 twin is another run
    assert replace(job, numerics=BF16_CL).folder(runs, data.fingerprint) == folder
    from suite.training.baseline import baseline_key

    assert (
        result["baseline_key"]
        == baseline_key(setting, 0, data, BF16_CL) + "-smoke"
        != baseline_key(setting, 0, data) + "-smoke"
    )
    (meta,) = runs.glob("baselines/tiny-fmnist/*/meta.json")
    assert json.loads(meta.read_text())["precision"] == "bf16" and meta.parent.name == result["baseline_key"]
    model = torch.load(folder / "model.pt", weights_only=True)
    for name, keep in (("features.4.weight", 0.5), ("features.8.weight", 0.5), ("features.11.weight", 0.5)):
        assert (model[name] == 0).sum().item() == math.floor(model[name].numel() * keep), name
    assert main(args) == 0 and "cached" in capsys.readouterr().out  # found again under its own name
