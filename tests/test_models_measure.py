"""Params and FLOPs in the paper's convention, against hand-computed values; evaluation and latency."""

import time

import torch
from torch import nn

from suite.measure import metrics as measure
from suite.measure.metrics import latency
from suite.models.nets import build_model
from suite.models.size import count_flops, count_params
from suite.training.loop import evaluate


def test_resnet56_matches_paper_counts():
    m = build_model("resnet56", 10)
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 853_018
    assert count_params(m) == 848_954  # conv + linear weights and biases, BN left out
    assert count_flops(m, (3, 32, 32)) == 2 * 125_485_696  # 125.49 M multiply-adds, doubled


def test_cnn4_flops_by_hand():
    # cnn4 = conv(1->16)@28, pool, conv(16->32)@14, pool, conv(32->64)@7, conv(64->64)@7, fc(64->10)
    macs = 1 * 16 * 9 * 28 * 28 + 16 * 32 * 9 * 14 * 14 + 32 * 64 * 9 * 7 * 7 + 64 * 64 * 9 * 7 * 7 + 64 * 10
    params = 1 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9 + 64 * 64 * 9 + 64 * 10 + 10
    m = build_model("cnn4", 10, 1)
    assert count_flops(m, (1, 28, 28)) == 2 * macs
    assert count_params(m) == params


def test_vgg19_cifar100_size():
    m = build_model("vgg19", 100)
    cfg = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    sizes = [32, 32, 16, 16, 8, 8, 8, 8, 4, 4, 4, 4, 2, 2, 2, 2]
    cin = [3] + cfg[:-1]
    macs = sum(i * o * 9 * s * s for i, o, s in zip(cin, cfg, sizes)) + 512 * 100
    assert count_flops(m, (3, 32, 32)) == 2 * macs


def test_evaluate_top1_top5_on_known_logits():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x  # the inputs are the logits

    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0], [0.1, 0, 0.3, 9, 0.4, 0.2]])
    y = torch.tensor([5, 5, 0])  # rank 1; rank 6 (out of the top 5); rank 5 (in), no ties anywhere
    r = evaluate(Fixed(), [(logits, y)], torch.device("cpu"))
    assert abs(r["top1"] - 100 / 3) < 1e-9
    assert abs(r["top5"] - 200 / 3) < 1e-9


class _Sleeps(nn.Module):
    """Takes a known time per forward pass and records the batches it was given."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.shapes = seconds, []
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        time.sleep(self.seconds)
        return x


def test_latency_measures_the_forward_pass():
    model = _Sleeps(0.05)
    lat = latency(model, (1, 28, 28), 4, torch.device("cpu"), warmup=1, repeats=5)
    assert lat.batch == 4 and lat.threads == torch.get_num_threads()
    assert model.shapes == [(4, 1, 28, 28)] * 6  # 1 warm-up + 5 timed passes
    assert 50 <= lat.median_ms < 250  # one pass, not the sum of 5; a loaded machine may add some


def test_latency_quartiles_match_numpy_percentiles():
    import numpy as np

    times = [10.0, 10.2, 9.9, 10.1, 14.0, 10.0, 9.8, 10.3, 25.0]
    q1, med, q3 = measure.quartiles(times)
    assert np.allclose([q1, med, q3], np.percentile(times, [25, 50, 75]))  # linear interpolation
    assert measure.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


def test_noisy_when_iqr_over_a_tenth_of_the_median_or_load_high():
    assert not measure.is_noisy(10.0, 1.0, 0.5)  # IQR exactly 10 %: still clean
    assert measure.is_noisy(10.0, 1.01, 0.5)
    assert measure.is_noisy(10.0, 0.1, 1.5)  # tight timings on an oversubscribed machine
    # sorted 9.8 9.9 10.0 10.0 10.1 10.2 10.3 14.0 25.0: Q1 10.0, median 10.1, Q3 10.3 (two outliers ignored)
    q1, med, q3 = measure.quartiles([10.0, 10.2, 9.9, 10.1, 14.0, 10.0, 9.8, 10.3, 25.0])
    assert abs((q3 - q1) - 0.3) < 1e-9 and not measure.is_noisy(med, q3 - q1, 0.0)


def test_speedup_range_from_quartiles():
    base = measure.Latency(10.0, 9.0, 11.0, 64, "cpu", 1, 20, 0.2)
    pruned = measure.Latency(4.5, 4.0, 5.0, 64, "cpu", 1, 20, 0.2)
    rec = measure.latency_record(base, pruned)
    assert rec["speedup"] == 10.0 / 4.5 and (rec["speedup_lo"], rec["speedup_hi"]) == (9.0 / 5.0, 11.0 / 4.0)
    assert rec["baseline_iqr_ms"] == 2.0 and rec["pruned_iqr_ms"] == 1.0
    assert rec["noisy"]  # 2.0 > 10 % of 10.0


def test_latency_is_noisy_under_high_load(monkeypatch):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (3.0 * (os.cpu_count() or 1), 0.0, 0.0))
    lat = latency(build_model("cnn4", 10, 1), (1, 28, 28), 2, torch.device("cpu"), warmup=1, repeats=5)
    assert lat.load_per_core == 3.0 and lat.noisy and lat.q1_ms <= lat.median_ms <= lat.q3_ms
