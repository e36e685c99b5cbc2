"""Which pruned layer's removal costs the accuracy: from a kept loop checkpoint of a GReg run,
remove each layer's pruned filters alone (the suite's surgery) and measure test top-1.

Usage: python per_layer.py [--setting S --ratio R --precision bf16 --channels-last --threads N] CKPT [CKPT ...]
(prints one JSON line per checkpoint; the defaults are fmnist-cnn4 at 0.7, fp32, 1 thread, as its report ran it)
"""
import argparse
import copy
import json
from pathlib import Path

import torch

from suite.models.surgery import remove_filters
from suite.running.runner import load_data
from suite.spec.settings import get_setting, with_ratios
from suite.training.loop import evaluate, load_checkpoint
from suite.training.numerics import Numerics

ap = argparse.ArgumentParser()
ap.add_argument("ckpts", nargs="+")
ap.add_argument("--setting", default="fmnist-cnn4")
ap.add_argument("--ratio", default="0.7")
ap.add_argument("--precision", default="fp32")
ap.add_argument("--channels-last", action="store_true")
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
DEV = torch.device("cpu")
torch.set_num_threads(a.threads)
numerics = Numerics(a.precision, a.channels_last)
setting = with_ratios(get_setting(a.setting), a.ratio)
data = load_data(setting, None)
names = list(setting.layer_ratios(setting.build_model()))  # the order GRegHook holds its layers in


def top1(m):
    return evaluate(m, data.eval_batches("test", 500, DEV), DEV, numerics)["top1"]


for path in a.ckpts:
    state = load_checkpoint(Path(path))
    model = setting.build_model()
    model.load_state_dict(state["model"])
    pruned = {n: [int(i) for i in L["pruned"]] for n, L in zip(names, state["hooks"][0]["layers"])}
    example = torch.zeros(1, *setting.input_shape)
    row = {"ckpt": path, "step": state["step"], "before": top1(model)}
    for n in names:
        m = copy.deepcopy(model)
        remove_filters(m, {n: pruned[n]}, example)
        row[f"remove_only_{n}"] = top1(m)
    m = copy.deepcopy(model)
    remove_filters(m, pruned, example)
    row["remove_all"] = top1(m)
    print(json.dumps(row), flush=True)
