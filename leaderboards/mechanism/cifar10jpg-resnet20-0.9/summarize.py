"""Tables of OUT/*.json (``../fmnist-cnn4-0.7/probe.py``'s outputs on cifar10jpg-resnet20) for
REPORT.md: one row per probe, the nine pruned convs (each block's conv1) summarized per stage
(layer1 / layer2 / layer3: the median over the stage's three blocks).

Usage: python summarize.py [OUT_DIR]   (default out/ beside this file)
"""

import json
import statistics
import sys
from pathlib import Path

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out"
BATCH, FT_SAMPLES = 64, 3_900 * 128  # GReg's batch; the recipe's 10 fine-tuning epochs (390 x 128 each)
PAPER_SAMPLES = 11_001 * BATCH + FT_SAMPLES  # GReg-1's paper protocol here: 11,001 iterations (K_s 1,000)
EPS = 1e-5


def per_stage(layers: dict, value) -> str:
    stages = {}
    for name, v in layers.items():
        stages.setdefault(name.split(".")[0], []).append(value(v))
    return "/".join(_fmt(statistics.median(vs)) for vs in stages.values())


def _fmt(x: float) -> str:
    return ">1e6" if x >= 1e6 else f"{x:.2f}" if x < 10 else f"{x:.0f}"


def rows():
    out = []
    for path in sorted(OUT.glob("*.json")):
        d = json.loads(path.read_text())
        for p in d.get("probes", []):
            L = p["layers"]
            samples = p["reg_iters"] * BATCH + FT_SAMPLES
            out.append(
                {
                    "run": d["name"],
                    "at": f"{p['kind']}={p['at']}",
                    "lambda": f"{max(v['lambda'] for v in L.values()):.3g}",
                    "samples (x paper)": f"{samples / 1e6:.2f} M ({samples / PAPER_SAMPLES:.2f})",
                    "kept/pruned ratio": per_stage(L, lambda v: v["mag_ratio_now"]),
                    "pruned var/eps": per_stage(L, lambda v: v["running_var_pruned_median"] / EPS),
                    "share var<eps": per_stage(L, lambda v: v["frac_pruned_var_below_eps"]),
                    "signal p/k": per_stage(L, lambda v: v["next_in_std_pruned_mean"] / v["next_in_std_kept_mean"]),
                    "gamma p": per_stage(L, lambda v: v["gamma_pruned_absmean"]),
                    "beta>0": per_stage(L, lambda v: v["frac_pruned_beta_pos"]),
                    "before -> after (cost)": f"{p['acc_before']:.2f} -> {p['acc_after_removal']:.2f} "
                    f"({p['acc_before'] - p['acc_after_removal']:.1f})",
                    "mean-fold": p["acc_signal_removed_shift_kept"],
                    "zero_w": p["acc_zero_weights"],
                    "recal": p["acc_after_removal_bn_recalibrated"],
                    "final": p.get("final_top1", "-"),
                }
            )
    return out


def markdown(rs: list[dict]) -> str:
    cols = list(rs[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rs])


if __name__ == "__main__":
    print(markdown(rows()))
