"""Measure GReg's removal mechanism on a CPU setting, without touching the suite's code.

One regularization run (the suite's own loop, GRegHook and surgery) whose stabilization is extended
to the longest schedule asked for; at each probe point (K_s iterations after the last layer stopped
growing, i.e. exactly the state a run with stabilize_iters = K_s would remove from, since the hook's
stop decision does not change the trajectory) a deep copy of the model is measured:

  * per pruned layer: pruned/kept filter norms, the pruned channels' BN running_var (vs eps), gamma,
    beta, the std of their BN output (the signal they still carry) and the mean of their post-ReLU
    output (the constant that removal drops);
  * test top-1 before removal, after the suite's removal (remove_filters), with the pruned
    channels' gamma set to 0 (weights exactly zero: output relu(beta)), with gamma 0 and beta set
    to their mean post-ReLU output (signal gone, shift kept), and after removal + BN re-estimation;
  * optionally the setting's fine-tuning of the removed model (final top-1).

Usage: python probe.py --name NAME --variant 1 --ratio 0.7 --hp '{"stabilize_iters": 0}' \
       --probe-ks 0,500,1000 --finetune-ks 500 [--lr 0.001] [--probe-abs 2500,5000]
       [--setting cifar10jpg-resnet20 --precision bf16 --channels-last --threads 2 --dir /tmp/mech-r20]

Written for fmnist-cnn4 (whose report beside it ran it with the defaults); --setting takes any
setting whose pruned convs are a PlainNet's ``features.i`` (BN at ``features.i+1``) or a ResNet
block's ``convK`` (BN at ``bnK``, the block's next conv after it).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from methods.base import rank_overlap
from methods.greg import GReg1, GReg2, GRegHook
from suite.models.surgery import remove_filters
from suite.running.runner import load_data
from suite.spec.plan import resolve_hparams
from suite.spec.settings import get_setting, with_ratios
from suite.training.baseline import get_baseline
from suite.training.loop import evaluate, train
from suite.training.numerics import FP32, Numerics

RUNS = Path("/tmp/mech-runs")
OUT = Path("/tmp/mech/out")
CK = Path("/tmp/mech/ckpt")
DEV = torch.device("cpu")
NUMERICS = FP32  # --precision / --channels-last: the runs' numerics, in training and in every evaluation


def top1(model, data, split="test"):
    return evaluate(model, data.eval_batches(split, 500, DEV), DEV, NUMERICS)["top1"]


def bn_of(model, conv_name):
    """The BatchNorm right after a pruned conv: a PlainNet's features.i -> features.i+1, a ResNet
    block's convK -> bnK."""
    prefix, last = conv_name.rsplit(".", 1)
    if last.startswith("conv"):
        return model.get_submodule(f"{prefix}.bn{last[4:]}")
    return model.get_submodule(f"{prefix}.{int(last) + 1}")


PLAIN_NEXT = {"features.4": "features.8", "features.8": "features.11", "features.11": "classifier"}


class _Next(dict):
    """The layer that reads a pruned conv's channels: fmnist-cnn4's table, or a ResNet block's next conv."""

    def __missing__(self, conv_name):
        prefix, last = conv_name.rsplit(".", 1)
        return f"{prefix}.conv{int(last[4:]) + 1}"


NEXT = _Next(PLAIN_NEXT)


def next_inputs(model, data, names, n_batches=10):
    """Per channel, over n_batches x 500 train images (eval mode): mean and std of what the next
    layer receives from each pruned conv's channels (after BN, ReLU and any pooling)."""
    acc = {n: [] for n in names}
    hs = [model.get_submodule(NEXT[n]).register_forward_pre_hook(
        (lambda n: lambda m, i: acc[n].append(i[0].detach()))(n)) for n in names]
    model.eval()
    with torch.inference_mode():
        for k, (x, _) in enumerate(data.eval_batches("train", 500, DEV)):
            if k == n_batches:
                break
            model(x)
    for h in hs:
        h.remove()
    out = {}
    for n in names:
        o = torch.cat(acc[n])
        o = o.transpose(0, 1).reshape(o.shape[1], -1)
        out[n] = (o.mean(dim=1), o.std(dim=1))
    return out


def with_constant_inputs(model, channels: dict, means: dict):
    """Forward pre-hooks that replace the pruned channels' input to the next layer by their mean:
    removal plus an exact bias compensation (the signal goes, the shift stays)."""
    def make(p, mu):
        def hook(m, i):
            x = i[0].clone(memory_format=torch.contiguous_format)
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x[:, p] = mu[p].view(shape).to(x.dtype)
            return (x,)
        return hook
    return [model.get_submodule(NEXT[n]).register_forward_pre_hook(make(p, means[n])) for n, p in channels.items()]


def recalibrate(model, data, n_batches=20):
    """Re-estimate every BN's running statistics on train batches (no gradient step)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.inference_mode():
        for k, (x, _) in enumerate(data.eval_batches("train", 500, DEV)):
            if k == n_batches:
                break
            model(x)
    model.eval()


def probe(model, hook, data, setting, example, finetune: bool, seed: int):
    rng = torch.get_rng_state()
    t0 = time.perf_counter()
    m = copy.deepcopy(model).eval()
    res = {"acc_before": top1(m, data)}
    layers = {}
    bns = [bn_of(m, L.name) for L in hook.layers]
    channels = {L.name: L.pruned.to(torch.long) for L in hook.layers}
    nxt = next_inputs(m, data, list(channels))
    for L, bn in zip(hook.layers, bns):
        w = m.get_submodule(L.name).weight.detach()
        p = channels[L.name]
        kept = torch.ones(w.shape[0], dtype=torch.bool)
        kept[p] = False
        l2 = w.flatten(1).norm(dim=1)
        l1 = w.flatten(1).abs().mean(dim=1)
        mu, sd = nxt[L.name]
        rv, g, b = bn.running_var, bn.weight.detach(), bn.bias.detach()
        layers[L.name] = {
            "lambda": L.lam_pruned(hook.hp), "hist_mag_ratio": L.hist_ratio,
            "mag_ratio_now": (l1[kept].mean() / l1[p].mean()).item(),
            "l2_pruned_mean": l2[p].mean().item(), "l2_kept_mean": l2[kept].mean().item(),
            "running_var_pruned_median": rv[p].median().item(), "running_var_pruned_max": rv[p].max().item(),
            "running_var_pruned_min": rv[p].min().item(), "running_var_kept_median": rv[kept].median().item(),
            "frac_pruned_var_below_eps": (rv[p] < bn.eps).float().mean().item(),
            "signal_frac_pruned": (rv[p] / (rv[p] + bn.eps)).sqrt().mean().item(),
            "gamma_pruned_absmean": g[p].abs().mean().item(), "gamma_kept_absmean": g[kept].abs().mean().item(),
            "beta_pruned_mean": b[p].mean().item(), "beta_pruned_absmean": b[p].abs().mean().item(),
            "frac_pruned_beta_pos": (b[p] > 0).float().mean().item(),
            "beta_kept_mean": b[kept].mean().item(),
            "next_in_std_pruned_mean": sd[p].mean().item(), "next_in_std_kept_mean": sd[kept].mean().item(),
            "next_in_mean_pruned_mean": mu[p].mean().item(), "next_in_mean_kept_mean": mu[kept].mean().item(),
        }
    res["layers"] = layers
    # pruned channels' gamma -> 0: what they output if their weights were exactly zero (relu(beta))
    m0 = copy.deepcopy(m)
    for L in hook.layers:
        bn_of(m0, L.name).weight.data[channels[L.name]] = 0
    res["acc_zero_weights"] = top1(m0, data)
    # pruned channels -> their mean input to the next layer (signal gone, shift kept)
    hs = with_constant_inputs(m, channels, {n: v[0] for n, v in nxt.items()})
    res["acc_signal_removed_shift_kept"] = top1(m, data)
    for h in hs:
        h.remove()
    # the suite's removal
    mr = copy.deepcopy(m)
    remove_filters(mr, {L.name: L.pruned.tolist() for L in hook.layers}, example)
    res["acc_after_removal"] = top1(mr, data)
    mc = copy.deepcopy(mr)
    recalibrate(mc, data)
    res["acc_after_removal_bn_recalibrated"] = top1(mc, data)
    res["probe_seconds"] = time.perf_counter() - t0
    if finetune:
        ft = setting.finetune
        steps = ft.epochs * data.batches_per_epoch(ft.batch_size)
        t1 = time.perf_counter()
        out = train(mr, data, lr=ft.lr_at, batch_size=ft.batch_size, momentum=ft.momentum,
                    weight_decay=ft.weight_decay, device=DEV, seed=seed, stream="finetune", total_steps=steps,
                    eval_split=None, desc="finetune", numerics=NUMERICS)
        res["final_top1"] = top1(mr, data)
        res["finetune_iters"] = out.steps
        res["finetune_seconds"] = time.perf_counter() - t1
    torch.set_rng_state(rng)
    return res


class Regrow(GRegHook):
    """A branch that grows lambda again from where the trunk stopped (same lambda, new increment
    and ceiling): the loaded layers are re-opened and the stabilization restarts at the new stop."""

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for L in self.layers:
            lam = L.increments * self.trunk_increment
            L.increments = round(lam / self.hp.penalty_increment)
            L.done = False
        self.stabilize_from = None


class BNPenalty:
    """Counterfactual, not GReg: the same growing L2 penalty on the pruned channels' BN gamma and
    beta (the parameters that set what a channel outputs under batch norm), from the branch's
    first iteration, lambda += inc per iteration up to ceil."""

    def __init__(self, greg, inc, ceil):
        self.greg, self.inc, self.ceil, self.start = greg, inc, ceil, None

    def after_backward(self, model, step):
        if self.start is None:
            self.start = step
        lam = min(self.ceil, (step - self.start + 1) * self.inc)
        for L in self.greg.layers:
            bn, p = bn_of(model, L.name), L.pruned.to(torch.long)
            for t in (bn.weight, bn.bias):
                t.grad[p] += lam * t.detach()[p]

    def after_step(self, model, step):
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


class Probe:
    """A hook that measures at chosen points: ``ks`` iterations after the last layer stopped
    growing, and at absolute iterations ``abs_steps``."""

    def __init__(self, greg, ks, abs_steps, ft_ks, data, setting, example, seed, results, t_start):
        self.greg, self.ks, self.abs, self.ft = greg, set(ks), set(abs_steps), set(ft_ks)
        self.data, self.setting, self.example, self.seed = data, setting, example, seed
        self.results, self.t_start, self.probe_time = results, t_start, 0.0
        self.pick_logged = False
        self.cpu_start, self.probe_cpu = time.process_time(), 0.0
        self.overlap_every = 0
        self.snapshots, self.ckpt = set(), None

    def after_backward(self, model, step):
        pass

    def after_step(self, model, step):
        g = self.greg
        if step - 1 in self.snapshots:  # the loop saved its checkpoint after step - 1 iterations
            shutil.copy(self.ckpt, self.ckpt.with_name(f"{self.ckpt.stem}_step{step - 1}.ckpt"))
            self.results.setdefault("snapshots", {})[step - 1] = {
                "reg_cpu_seconds": time.process_time() - self.cpu_start - self.probe_cpu,
                "reg_wall_seconds": time.perf_counter() - self.t_start - self.probe_time}
        if g.variant == 2 and not self.pick_logged and all(L.picked for L in g.layers):
            self.pick_logged = True
            self.results["pick"] = {"step": step, "overlap": {L.name: rank_overlap(L.pruned, L.initial)
                                                              for L in g.layers}}
        if self.overlap_every and step % self.overlap_every == 0:
            self.results.setdefault("overlap_log", []).append(
                {"step": step, "lambda": g.layers[0].lam_pruned(g.hp),
                 **{L.name: rank_overlap(L.rank(g.weights[L.name]), L.initial) for L in g.layers}})
        label = None
        if g.stabilize_from is not None and step - 1 - g.stabilize_from in self.ks:
            label = ("K_s", step - 1 - g.stabilize_from)
        elif step in self.abs:
            label = ("abs", step)
        if label:
            t0 = time.perf_counter()
            reg_seconds = t0 - self.t_start - self.probe_time
            reg_cpu = time.process_time() - self.cpu_start - self.probe_cpu
            c0 = time.process_time()
            r = probe(model, g, self.data, self.setting, self.example,
                      finetune=label[0] == "K_s" and label[1] in self.ft, seed=self.seed)
            self.probe_time += time.perf_counter() - t0
            self.probe_cpu += time.process_time() - c0
            r.update({"kind": label[0], "at": label[1], "reg_iters": step,
                      "reg_train_seconds": reg_seconds, "reg_train_cpu_seconds": reg_cpu,
                      "stabilize_from": g.stabilize_from})
            if g.variant == 2:
                r["pick_overlap_now"] = {L.name: rank_overlap(L.rank(L_w), L.initial)
                                         for L, L_w in ((L, g.weights[L.name]) for L in g.layers)}
            self.results["probes"].append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "layers"}), flush=True)
            Path(self.results["out"]).write_text(json.dumps(self.results, indent=1))
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--variant", type=int, default=1)
    ap.add_argument("--ratio", default="0.7")
    ap.add_argument("--hp", default="{}")
    ap.add_argument("--lr", type=float, default=None, help="lr_prune for the whole regularization phase")
    ap.add_argument("--probe-ks", default="0,500,1000")
    ap.add_argument("--probe-abs", default="")
    ap.add_argument("--finetune-ks", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot-steps", default="", help="keep the loop's checkpoint of these steps (multiples of 500)")
    ap.add_argument("--resume-from", default=None, help="a kept checkpoint: branch from it (same data position)")
    ap.add_argument("--trunk-increment", type=float, default=1e-4)
    ap.add_argument("--regrow", action="store_true", help="after resuming, grow lambda again from its value up to the new ceiling")
    ap.add_argument("--bn-penalty", default="", help="INC,CEIL: counterfactual penalty on the pruned channels' BN gamma/beta")
    ap.add_argument("--max-iters", type=int, default=None, help="stop the regularization here (picking-only runs)")
    ap.add_argument("--overlap-every", type=int, default=0, help="log the current L1 pick's overlap with the initial")
    ap.add_argument("--baseline-seed", type=int, default=1)
    ap.add_argument("--setting", default="fmnist-cnn4")
    ap.add_argument("--dir", default=None, help="runs/, out/ and ckpt/ under this folder (default: /tmp/mech-runs, /tmp/mech)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    a = ap.parse_args()
    global RUNS, OUT, CK, NUMERICS
    if a.dir:
        RUNS, OUT, CK = Path(a.dir) / "runs", Path(a.dir) / "out", Path(a.dir) / "ckpt"
    NUMERICS = Numerics(a.precision, a.channels_last)
    torch.set_num_threads(a.threads)
    ints = lambda s: [int(v) for v in s.split(",") if v]
    ks, abs_steps, ft_ks = ints(a.probe_ks), ints(a.probe_abs), ints(a.finetune_ks)
    setting = with_ratios(get_setting(a.setting), a.ratio)
    method = {1: GReg1, 2: GReg2}[a.variant]
    user = json.loads(a.hp)
    user["stabilize_iters"] = max(ks)  # the longest schedule; shorter ones are its prefixes
    hp = method.Hparams.from_dict(resolve_hparams(setting, method.name, user))
    lr = a.lr or setting.prune.lr
    planned = method.planned_iters(hp)
    cap = a.max_iters or max(planned, setting.prune.max_iters)
    setting = replace(setting, prune=replace(setting.prune, lr=lr, max_iters=cap))
    data = load_data(setting, None)
    base = get_baseline(setting, data, a.baseline_seed, RUNS, DEV, numerics=NUMERICS)
    model = copy.deepcopy(base.model).to(DEV)
    ratios = setting.layer_ratios(model)
    example = torch.zeros(1, *setting.input_shape)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{a.name}.json"
    results = {"name": a.name, "variant": a.variant, "ratio": a.ratio, "hparams": hp.to_dict(), "lr_prune": lr,
               "baseline_top1": base.top1, "baseline_key": base.key, "seed": a.seed, "planned_iters": planned,
               "setting": a.setting, "numerics": NUMERICS.label(), "threads": a.threads,
               "probes": [], "out": str(out)}
    torch.manual_seed(a.seed)
    hook = (Regrow if a.regrow else GRegHook)(model, ratios, hp, a.variant, structured=True, groups={})
    hook.trunk_increment = a.trunk_increment
    CK.mkdir(parents=True, exist_ok=True)
    ckpt = CK / f"{a.name}.ckpt"
    ckpt.unlink(missing_ok=True)
    if a.resume_from:
        shutil.copy(a.resume_from, ckpt)
        results["resumed_from"] = a.resume_from
    t0 = time.perf_counter()
    pr = Probe(hook, ks, abs_steps, ft_ks, data, setting, example, a.seed, results, t0)
    pr.overlap_every = a.overlap_every
    pr.snapshots, pr.ckpt = set(ints(a.snapshot_steps)), ckpt
    extra = ()
    if a.bn_penalty:
        inc, ceil = (float(v) for v in a.bn_penalty.split(","))
        extra = (BNPenalty(hook, inc, ceil),)
        results["bn_penalty"] = {"inc": inc, "ceil": ceil}
    s = setting.prune
    outcome = train(model, data, lr=lambda e: s.lr, batch_size=s.batch_size, momentum=s.momentum,
                    weight_decay=s.weight_decay, device=DEV, seed=a.seed, stream="own",
                    total_steps=s.max_iters, hooks=(hook, pr) + extra, eval_split=None, checkpoint=ckpt, desc=f"greg{a.variant} regularize",
                    log_every=hp.log_every, log_extra=hook.log_row, numerics=NUMERICS)
    results["reg_log"] = outcome.history
    results["reg_iters_total"] = outcome.steps
    results["wall_seconds_total"] = time.perf_counter() - t0
    results["probe_seconds_total"] = pr.probe_time
    results["reg_cpu_seconds_total"] = time.process_time() - pr.cpu_start - pr.probe_cpu
    results["probe_cpu_seconds_total"] = pr.probe_cpu
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
