"""Params and FLOPs in the paper's convention, against hand-computed values; evaluation and latency."""
import time

import torch
from torch import nn

from suite.measure import count_flops, count_params, latency
from suite.train import evaluate
from suite.models import build_model


def test_resnet56_matches_paper_counts():
    m = build_model("resnet56", 10)
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 853_018
    assert count_params(m) == 848_954  # conv + linear weights and biases, BN left out
    assert count_flops(m, (3, 32, 32)) == 2 * 125_485_696  # 125.49 M multiply-adds, doubled


def test_cnn4_flops_by_hand():
    # cnn4 = conv(1->16)@28, pool, conv(16->32)@14, pool, conv(32->64)@7, conv(64->64)@7, fc(64->10)
    macs = (1 * 16 * 9 * 28 * 28 + 16 * 32 * 9 * 14 * 14 + 32 * 64 * 9 * 7 * 7 + 64 * 64 * 9 * 7 * 7 + 64 * 10)
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
