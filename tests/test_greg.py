"""GReg against GREG_SPEC.md: the schedule, the stop rules, the picked filters, the effect."""
import copy
import math

import torch

from methods import registry
from methods.base import PruneTask
from methods.greg import GRegHook, GRegHparams
from suite.models import build_model, example_input
from suite.surgery import filter_l1, l1_smallest_filters
from suite.train import train

CPU = torch.device("cpu")
RATIOS = {"features.4": 0.5, "features.8": 0.7, "features.11": 0.7}


def _zero_grads(model):
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def _drive(hook, model, steps):
    """Call the hook as the loop would, without training (weights fixed)."""
    for step in range(steps):
        _zero_grads(model)
        hook.after_backward(model, step)
        if hook.after_step(model, step + 1):
            return step + 1
    return None


def test_lambda_reaches_ceiling_after_tau_over_delta_updates():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(penalty_increment=1e-3, penalty_ceiling=0.05, update_interval=3, stabilize_iters=0,
                     mag_ratio_limit=math.inf)
    hook = GRegHook(model, RATIOS, hp, variant=1, structured=True)
    end = _drive(hook, model, 1000)
    # tau/delta = 50 increments, the update after which lambda > tau stops it: within one of 50
    assert abs(hook.updates - 51) <= 1
    assert all(abs(l.lam_pruned - 0.05) <= 1e-3 + 1e-12 for l in hook.layers)
    assert end is not None and abs(end - 3 * hook.updates) <= 3  # one update every K_u = 3 iterations
    assert all(l.lam_kept == 0.0 for l in hook.layers)


def test_penalty_gradient_is_lambda_times_w_on_pruned_filters_only():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(penalty_increment=0.25, update_interval=1)
    hook = GRegHook(model, {"features.4": 0.5}, hp, variant=1, structured=True)
    _zero_grads(model)
    hook.after_backward(model, 0)  # first update at iteration 0: lambda = 0.25
    w = model.get_submodule("features.4").weight
    pruned = hook.layers[0].pruned.tolist()
    kept = [i for i in range(32) if i not in pruned]
    assert torch.allclose(w.grad[pruned], 0.25 * w.detach()[pruned])
    assert torch.equal(w.grad[kept], torch.zeros_like(w.grad[kept]))
    assert model.get_submodule("features.0").weight.grad.abs().sum() == 0  # unregularized layer


def test_magnitude_ratio_stop_fires():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(update_interval=1, stabilize_iters=2)
    hook = GRegHook(model, RATIOS, hp, variant=1, structured=True)
    with torch.no_grad():  # separate the pruned filters by more than 1000x
        for layer in hook.layers:
            model.get_submodule(layer.name).weight[layer.pruned] *= 1e-5
    end = _drive(hook, model, 100)
    # done at iteration 0; K_s = 2 iterations counted from there (the authors' iter - iter_stabilize)
    assert hook.updates == 1 and all(l.done for l in hook.layers) and end == 2
    assert all(l.hist_ratio >= 1000 for l in hook.layers) and all(l.lam_pruned == 0 for l in hook.layers)


def test_greg2_picking_phase_then_recover():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(pick_increment=1e-3, pick_ceiling=0.01, penalty_increment=0.1, penalty_ceiling=0.3,
                     update_interval=1, stabilize_iters=0, mag_ratio_limit=math.inf)
    hook = GRegHook(model, RATIOS, hp, variant=2, structured=True)
    l1_at_start = l1_smallest_filters(model, RATIOS)["features.4"]  # 16 of 32 filters
    _drive(hook, model, 9)  # 9 pick updates: not picked yet
    assert not any(l.picked for l in hook.layers)
    with torch.no_grad():  # during picking, 4 of the L1-smallest filters grow into the largest
        model.get_submodule("features.4").weight[l1_at_start[:4]] *= 100
    _drive(hook, model, 1)  # the 10th: 1e-3 * 10 = 0.01 -> picked, by the ranking at that moment
    assert all(l.picked for l in hook.layers) and all(abs(l.lam_kept - 0.01) < 1e-12 for l in hook.layers)
    picked = sorted(hook.layers[0].pruned.tolist())
    assert picked == l1_smallest_filters(model, RATIOS)["features.4"] and not set(l1_at_start[:4]) & set(picked)
    _drive(hook, model, 1)
    assert all(l.lam_kept == -1e-4 and abs(l.lam_pruned - 0.11) < 1e-12 for l in hook.layers)
    assert hook.summary(False)["pick_overlap_with_l1"]["features.4"] == 12 / 16  # 4 of 16 changed


def _task(data, model, layer_ratios, max_iters):
    def run(hooks, desc, log_every=None, log_extra=None):
        return train(model, data, lr=lambda e: 0.01, batch_size=64, momentum=0.9, weight_decay=5e-4,
                     device=CPU, seed=0, total_steps=max_iters, hooks=hooks, eval_split=None,
                     log_every=log_every, log_extra=log_extra)
    return PruneTask(layer_ratios, CPU, 0, max_iters, run, None, example_input(1, 28))


def test_greg1_removes_l1_filters_and_drives_them_down(small_fmnist):
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    train(model, small_fmnist, lr=lambda e: 0.05, batch_size=128, momentum=0.9, weight_decay=5e-4, device=CPU,
          seed=0, total_steps=32, eval_split=None)  # a (briefly) trained baseline
    l1_choice = registry.get("l1").prune(model, _task(small_fmnist, model, RATIOS, 0), None).filters
    assert l1_choice == l1_smallest_filters(model, RATIOS)
    greg_model = copy.deepcopy(model)
    hp = GRegHparams(penalty_increment=0.02, penalty_ceiling=1.0, update_interval=1, stabilize_iters=350)
    p = registry.get("greg1").prune(greg_model, _task(small_fmnist, greg_model, RATIOS, 1000), hp)
    assert p.filters == l1_choice  # the paper's point: the same filters go
    assert 50 + 350 <= p.reg_iters <= 51 + 350 and p.info["lambda"]["features.4"] > 1.0
    for name, idxs in p.filters.items():
        norms = filter_l1(greg_model.get_submodule(name).weight)
        kept = [i for i in range(len(norms)) if i not in idxs]
        before = filter_l1(model.get_submodule(name).weight)
        assert norms[kept].mean() / norms[idxs].mean() > 10 * before[kept].mean() / before[idxs].mean()
