"""Whether this machine has stored a ``suite latency`` record of a cut (exit 0) or not (exit 1), so
that a restarted campaign does not time again, and replace, the records its pages publish (two
idle measurements of one cut differ by more than either's interval: the ViT's ONNX Runtime batch 1
gave 1.52x at 19:23 and 1.42x at 20:27 on one machine). The same ``suite latency`` by hand still
times it again and replaces the record.

    timed_here.py RUNS_DIR SETTING_NAME RATIOS [ROUND_TO]

ROUND_TO above 1: the record must also hold that alignment's entry of its rounding sweep (an
aligned comparison's cut is timed by that entry). The record is the one ``suite latency --threads
2`` stores on this processor, instruction set and torch.
"""

import json
import sys
from pathlib import Path

import torch

from suite.measure.latency_records import record_path
from suite.measure.metrics import instruction_set, processor

runs, name, ratios = sys.argv[1:4]
round_to = int(sys.argv[4]) if len(sys.argv) > 4 else 1
cpu = torch.device("cpu")
rep = {
    "setting": name,
    "ratios": ratios,
    "processor": processor(cpu),
    "isa": instruction_set(cpu),
    "threads": 2,
    "torch": torch.__version__,
}
path = record_path(Path(runs), rep)
timed = path.exists() and (
    round_to == 1
    or any(v.get("round_to") == round_to for row in json.loads(path.read_text())["rows"] for v in row.get("rounded", []))
)
sys.exit(0 if timed else 1)
