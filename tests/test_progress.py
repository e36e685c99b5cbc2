"""Progress lines in a log: what `suite run > run.log` shows while a phase trains."""

import io
import re

import torch
from torch import nn

from suite.training.loop import train
from suite.training.progress import Progress, duration

CPU = torch.device("cpu")


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _lines(text):
    return [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in text.splitlines()]


def test_lines_every_1000_iterations_and_every_epoch_with_rate_and_eta():
    out, clock = io.StringIO(), _Clock()
    p = Progress("l1 fine-tune", total=3000, done=0, steps_per_epoch=1200, lines=True, stream=out, clock=clock)
    for i in range(1, 3001):
        clock.now = i * 0.01  # 100 iterations per second
        p.step(loss=float(i), lr=0.01 if i <= 2000 else 0.001, images=64)
        if i % 1200 == 0 or i == 3000:
            p.row({"phase": "l1 fine-tune", "step": i, "lr": 0.01, "loss": 1.0, "test_top1": 91.25})
    p.close()
    lines = _lines(out.getvalue())
    assert lines[0] == "l1 fine-tune  start  3000 iterations"
    steps = [int(re.search(r"step (\d+)/3000", line).group(1)) for line in lines[1:]]
    assert steps == [1000, 1200, 2000, 2400, 3000]
    # at step 1000: mean loss of 1..1000 = 500.5; 64 images per 0.01 s; 2000 iterations left at 100/s
    assert lines[1] == ("l1 fine-tune  step 1000/3000 (33%)  epoch 0.83  loss 500.5000  lr 0.01  6400 img/s  ETA 20s")
    # the epoch line: the losses since the previous line (1001..1200, mean 1100.5) and the evaluation
    assert lines[2] == (
        "l1 fine-tune  step 1200/3000 (40%)  epoch 1/3 done  loss 1100.5000  lr 0.01  "
        "test_top1 91.25  6400 img/s  ETA 18s"
    )
    assert "lr 0.001" in lines[5] and "epoch 2.50" in lines[5] and "ETA" not in lines[5]


def test_a_quiet_log_gets_a_line_within_30_seconds_then_every_5_minutes():
    out, clock = io.StringIO(), _Clock()
    p = Progress("greg1 regularize", total=None, done=0, steps_per_epoch=10_000, lines=True, stream=out, clock=clock)
    for i in range(1, 200):
        clock.now = i * 2.0  # a slow CPU: 2 s per iteration
        p.step(loss=1.0, lr=0.001, images=128)
    lines = _lines(out.getvalue())
    # lines at 30 s (step 15), then 300 s later (step 165); no total: no percentage and no ETA
    assert [re.search(r"step (\d+)/\?", line).group(1) for line in lines[1:]] == ["15", "165"]
    assert "ETA" not in lines[1] and "64 img/s" in lines[1]


def test_a_terminal_gets_the_bar_and_no_lines():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    p = Progress("x", total=10, done=0, steps_per_epoch=5, stream=out)
    for _ in range(10):
        p.step(loss=1.0, lr=0.1, images=8)
    p.row({"test_top1": 50.0})
    p.close()
    assert out.getvalue() == ""


def test_duration():
    assert [duration(s) for s in (0, 59.4, 61, 3599, 3600, 3 * 3600 + 4 * 60 + 59)] == [
        "0s",
        "59s",
        "1m01s",
        "59m59s",
        "1h00m",
        "3h04m",
    ]


class _StopAt:
    def __init__(self, at):
        self.at = at

    def after_backward(self, model, step):
        pass

    def after_step(self, model, step):
        return step == self.at

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def _linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def test_train_prints_lines_when_stdout_is_not_a_terminal(small_fmnist, capsys, tmp_path):
    """Under pytest stdout is a pipe, like `suite run > run.log`."""
    kw = dict(lr=lambda e: 0.05, batch_size=256, momentum=0.9, weight_decay=0, device=CPU, seed=0, stream="finetune")
    train(_linear(), small_fmnist, total_steps=12, desc="demo fine-tune", **kw)  # 8 iterations per epoch
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == "demo fine-tune  start  12 iterations"
    assert lines[1].startswith("demo fine-tune  step 8/12 (66%)  epoch 1/2 done  loss ")
    assert "test_top1 " in lines[1] and "ETA " in lines[1]
    assert lines[2].startswith("demo fine-tune  step 12/12 (100%)  epoch 1.50  loss ") and len(lines) == 3

    # a phase a hook ends: the planned iterations are the total; a resumed phase says where it resumes
    train(
        _linear(),
        small_fmnist,
        total_steps=None,
        hooks=(_StopAt(6),),
        expected_steps=20,
        eval_split=None,
        desc="reg",
        **kw,
    )
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == "reg  start  20 iterations" and lines[-1].startswith("reg  step 6/20 (30%)")
    ckpt = tmp_path / "reg.ckpt"  # the first 4 iterations were run by a process that died
    train(_linear(), small_fmnist, total_steps=4, eval_split=None, desc="reg", checkpoint=ckpt, **kw)
    capsys.readouterr()
    train(
        _linear(),
        small_fmnist,
        total_steps=None,
        hooks=(_StopAt(6),),
        expected_steps=20,
        eval_split=None,
        desc="reg",
        checkpoint=ckpt,
        **kw,
    )
    assert _lines(capsys.readouterr().out)[0] == "reg  resume  at step 4/20"
