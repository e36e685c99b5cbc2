"""Which pruned layer's removal costs the accuracy: from a kept loop checkpoint of a GReg run,
remove each layer's pruned filters alone (the suite's surgery) and measure test top-1.

Usage: python per_layer.py CKPT [CKPT ...]   (prints one JSON line per checkpoint)
"""
import copy
import json
import sys
from pathlib import Path

import torch

from suite.models.surgery import remove_filters
from suite.running.runner import load_data
from suite.spec.settings import get_setting
from suite.training.loop import evaluate, load_checkpoint

DEV = torch.device("cpu")
torch.set_num_threads(1)
setting = get_setting("fmnist-cnn4")
data = load_data(setting, None)
names = ["features.4", "features.8", "features.11"]


def top1(m):
    return evaluate(m, data.eval_batches("test", 500, DEV), DEV)["top1"]


for path in sys.argv[1:]:
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
