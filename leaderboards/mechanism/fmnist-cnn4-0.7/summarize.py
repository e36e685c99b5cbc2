"""Tables of /tmp/mech/out/*.json (probe.py's outputs) for REPORT.md."""
import json
import sys
from pathlib import Path

OUT = Path("/tmp/mech/out")
PAPER_SAMPLES = 851_776  # the stored paper-protocol GReg-1 run at fmnist-cnn4 0.7 (10,501 x 64 + 1,404 x 128)
FT_SAMPLES = 1404 * 128
EPS = 1e-5


def load(name):
    return json.loads((OUT / f"{name}.json").read_text())


def trunk(d):
    """(CPU, wall) seconds of the trunk's regularization up to the state a branch resumed from."""
    src = d.get("resumed_from")
    if not src:
        return 0.0, 0.0
    stem = Path(src).stem  # NAME_stepN, or B2_final_reopened (B2's last state)
    if stem == "B2_final_reopened":
        b2 = load("B2_greg1_regrow_tau100")
        c, w = trunk(b2)
        return c + b2["reg_cpu_seconds_total"], w + b2["wall_seconds_total"] - b2["probe_seconds_total"]
    name, step = stem.rsplit("_step", 1)
    snap = load(name)["snapshots"][step]
    return snap["reg_cpu_seconds"], snap["reg_wall_seconds"]


def rows(names):
    out = []
    for name in names:
        d = load(name)
        base, base_wall = trunk(d)
        for p in d["probes"]:
            L = p["layers"]
            ratio = "/".join(f"{v['mag_ratio_now']:.0f}" if v["mag_ratio_now"] < 1e6 else ">1e6" for v in L.values())
            var = "/".join(f"{v['running_var_pruned_median'] / EPS:.0f}" for v in L.values())
            sig = "/".join(f"{v['next_in_std_pruned_mean'] / v['next_in_std_kept_mean']:.2f}" for v in L.values())
            gam = "/".join(f"{v['gamma_pruned_absmean']:.2f}" for v in L.values())
            lam = max(v["lambda"] for v in L.values())
            samples = p["reg_iters"] * 64 + FT_SAMPLES  # removal here, then the recipe's fine-tuning
            cpu = base + p["reg_train_cpu_seconds"]
            out.append({
                "run": name, "at": f"{p['kind']}={p['at']}", "lambda": f"{lam:.3g}", "reg_iters": p["reg_iters"],
                "mag_ratio f4/f8/f11": ratio, "var_p/eps": var, "sig_p/sig_k": sig, "gamma_p": gam,
                "acc_before": p["acc_before"], "acc_after": p["acc_after_removal"],
                "cost": round(p["acc_before"] - p["acc_after_removal"], 2),
                "zero_w": p["acc_zero_weights"], "mean_sub": p["acc_signal_removed_shift_kept"],
                "recal": p["acc_after_removal_bn_recalibrated"], "final": p.get("final_top1", ""),
                "samples": samples, "x_paper": round(samples / PAPER_SAMPLES, 2),
                "reg_cpu_s": round(cpu), "reg_wall_s": round(base_wall + p["reg_train_seconds"]),
                "ft_wall_s": round(p["finetune_seconds"]) if "finetune_seconds" in p else "",
            })
    return out


def markdown(rs):
    cols = list(rs[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rs]
    return "\n".join(lines)


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in OUT.glob("*.json"))
    print(markdown(rows([n for n in names if load(n).get("probes")])))
    for n in names:
        d = load(n)
        if "pick" in d or "overlap_log" in d:
            print(f"\n{n}: pick {d.get('pick')}")
            for r in d.get("overlap_log", []):
                print("  ", {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
