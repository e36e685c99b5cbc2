"""GReg against methods/GREG_SPEC.md and the authors' code: the schedule, the stop rules, the picked
filters, the effect. Schedules use dyadic increments (0.25, 0.125) so float sums are exact and a
hand-written trace can be compared with ==."""

import copy
import math

import pytest
import torch
from conftest import CPU, QuietHook, sgd_run

from methods import registry
from methods.base import PruneTask
from methods.criteria import filter_l1, l1_smallest_filters, smallest_weights_mask
from methods.greg import GRegHook, GRegHparams
from suite.errors import SuiteError
from suite.models.nets import build_model, example_input
from suite.spec.settings import get_setting
from suite.training.loop import Outcome, train

RATIOS = {"features.4": 0.5, "features.8": 0.7, "features.11": 0.7}
NO_RATIO_STOP = math.inf


def _zero_grads(model):
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def _drive(hook, model, steps, trace=None):
    """Call the hook as the training loop would, without training (weights fixed). Returns the
    number of iterations after which the hook ended the phase (None: it did not). ``trace`` gets
    (iteration, lambdas, kept lambdas, picked flags, done flags) after every penalty update."""
    for step in range(steps):
        _zero_grads(model)
        before = hook.updates
        hook.after_backward(model, step)
        if trace is not None and hook.updates > before:
            trace.append(
                (
                    step,
                    [layer.lam_pruned(hook.hp) for layer in hook.layers],
                    [layer.lam_kept for layer in hook.layers],
                    [layer.picked for layer in hook.layers],
                    [layer.done for layer in hook.layers],
                )
            )
        if hook.after_step(model, step + 1):
            return step + 1
    return None


def _authors_trace(n_layers, k_u, delta, tau, pick=None, pick_ceiling=None, recover=None):
    """The authors' ``_update_reg`` with ``_inc_reg`` (GReg-1) or ``_ada_reg`` (GReg-2, ``pick``
    given), written out for fixed weights and no magnitude-ratio stop: at iterations 0, K_u, 2 K_u..
    each unfinished layer first grows its reg (``reg[pruned] += delta``; picking: ``reg += pick``;
    after picking the kept get ``recover``), then stops once ``reg.max() > tau`` (GReg-2: only
    once picked, and picking ends in the update where ``reg.max() >= pick_ceiling``)."""
    pruned, kept = [0.0] * n_layers, [0.0] * n_layers
    picked, finished = [pick is None] * n_layers, [False] * n_layers
    trace, it = [], 0
    while not all(finished):
        if it % k_u == 0:
            for i in range(n_layers):
                if finished[i]:
                    continue
                if picked[i]:
                    pruned[i] += delta
                    if pick is not None:
                        kept[i] = recover
                else:
                    pruned[i] += pick
                    kept[i] += pick
                    picked[i] = max(pruned[i], kept[i]) >= pick_ceiling
                finished[i] = picked[i] and max(pruned[i], kept[i]) > tau
            trace.append((it, list(pruned), list(kept), list(picked), list(finished)))
        it += 1
    return trace


# ------------------------------------------------------------------------- 1. increment, then stop
def test_greg1_schedule_trace_is_the_authors():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(
        penalty_increment=0.25, penalty_ceiling=1.0, update_interval=2, stabilize_iters=0, mag_ratio_limit=NO_RATIO_STOP
    )
    trace = []
    _drive(GRegHook(model, RATIOS, hp, variant=1, structured=True), model, 100, trace)
    drop_picked = lambda tr: [(it, lam, kept, done) for it, lam, kept, _, done in tr]  # noqa: E731
    assert drop_picked(trace) == drop_picked(_authors_trace(3, 2, 0.25, 1.0))
    # read by hand: 0.25, 0.5, 0.75, 1.0 (not above 1.0), 1.25 -> stopped at the 5th update, iteration 8
    assert [t[0] for t in trace] == [0, 2, 4, 6, 8] and trace[-1][1] == [1.25] * 3


def test_greg2_schedule_trace_is_the_authors():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(
        pick_increment=0.125,
        pick_ceiling=0.5,
        penalty_increment=0.25,
        penalty_ceiling=1.0,
        recover=-0.0625,
        update_interval=1,
        stabilize_iters=0,
        mag_ratio_limit=NO_RATIO_STOP,
    )
    trace = []
    _drive(GRegHook(model, RATIOS, hp, variant=2, structured=True), model, 100, trace)
    assert trace == _authors_trace(3, 1, 0.25, 1.0, pick=0.125, pick_ceiling=0.5, recover=-0.0625)
    # by hand: 4 picking updates to 0.5 (picked in the 4th), then 0.75, 1.0, 1.25 -> 7 updates
    assert len(trace) == 7 and trace[3][3] == [True] * 3 and trace[3][2] == [0.5] * 3
    assert trace[-1][1:3] == ([1.25] * 3, [-0.0625] * 3) and trace[-1][4] == [True] * 3


# ------------------------------------------------------------------------- 2. K_s counted exactly
def test_stabilization_runs_exactly_k_s_iterations_after_the_last_stop():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(
        penalty_increment=0.25, penalty_ceiling=1.0, update_interval=2, stabilize_iters=3, mag_ratio_limit=NO_RATIO_STOP
    )
    # last update at iteration 8 (5th update), then iterations 9, 10, 11: 12 iterations in all
    assert _drive(GRegHook(model, RATIOS, hp, variant=1, structured=True), model, 100) == 12


def test_magnitude_ratio_stop_fires():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(update_interval=1, stabilize_iters=2)
    hook = GRegHook(model, RATIOS, hp, variant=1, structured=True)
    with torch.no_grad():  # separate the pruned filters by more than 1000x
        for layer in hook.layers:
            model.get_submodule(layer.name).weight[layer.pruned] *= 1e-5
    end = _drive(hook, model, 100)
    # stopped in the update at iteration 0 (after its increment), then iterations 1 and 2: 3 in all
    assert hook.updates == 1 and all(layer.done for layer in hook.layers) and end == 3
    assert all(layer.hist_ratio >= 1000 for layer in hook.layers) and all(
        layer.lam_pruned(hp) == 1e-4 for layer in hook.layers
    )


# ------------------------------------------------------------------------- 3. stopped layers freeze
def test_stopped_layer_keeps_its_magnitude_ratio():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(
        pick_increment=0.5,
        pick_ceiling=0.5,
        penalty_increment=0.25,
        penalty_ceiling=100.0,
        update_interval=1,
        stabilize_iters=0,
    )
    w = model.get_submodule("features.4").weight
    with torch.no_grad():  # features.4 separated from the start; features.8 not
        w[l1_smallest_filters(model, {"features.4": 0.5})["features.4"]] *= 1e-5
    hook = GRegHook(model, {"features.4": 0.5, "features.8": 0.5}, hp, variant=2, structured=True)
    _drive(hook, model, 2)
    a, b = hook.layers
    assert a.done and not b.done  # features.4 stopped by its ratio, features.8 goes on
    frozen = a.hist_ratio
    with torch.no_grad():
        w.copy_(torch.randn_like(w))  # a stopped layer's weights may still change under training
    _drive(hook, model, 3)
    assert a.hist_ratio == frozen
    assert a.lam_pruned(hp) == 0.5 and b.increments == 4  # both picked at update 1; b grew at updates 2..5


# ------------------------------------------------------------------------- 4. convs only
class _Capture:
    """A PruneTask.train that drives the hook for ``steps`` iterations on fixed weights."""

    def __init__(self, model, steps):
        self.model, self.steps, self.hook = model, steps, None

    def __call__(self, hooks, desc, log_every=None, log_extra=None):
        (self.hook,) = hooks
        end = _drive(self.hook, self.model, self.steps)
        return Outcome(end or self.steps, 0.0, stopped_by_hook=end is not None)


def test_unstructured_greg_penalises_convs_only():
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    ratios = get_setting("cifar10jpg-resnet20").layer_ratios(model, "[0,0.5,0.5,0.5,0.5]", granularity="weight")
    assert "fc" in ratios  # unstructured ratios may prune the classifier too
    fc_mask = smallest_weights_mask(model.fc.weight, ratios["fc"])
    run = _Capture(model, 3)
    hp = GRegHparams(penalty_increment=0.25, update_interval=1)
    p = registry.get("greg1-unstructured").prune(model, PruneTask(ratios, CPU, 0, 3, run, None, None), hp)
    names = [layer.name for layer in run.hook.layers]
    assert "fc" not in names and all(isinstance(model.get_submodule(n), torch.nn.Conv2d) for n in names)
    assert set(names) == set(ratios) - {"fc"}
    assert model.fc.weight.grad.abs().sum() == 0  # no penalty gradient on the classifier
    assert torch.equal(p.masks["fc"], fc_mask) and p.info["unregularized_layers"] == ["fc"]


# ------------------------------------------------------------------------- 5. a forced pick is recorded
def _task(data, model, layer_ratios, max_iters):
    run = sgd_run(model, data, 64, max_iters)
    return PruneTask(layer_ratios, CPU, 0, max_iters, run, None, example_input(1, 28))


def test_greg2_pick_forced_by_the_cap_is_recorded(small_fmnist):
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(pick_increment=1e-3, pick_ceiling=0.01, update_interval=1, stabilize_iters=0)
    p = registry.get("greg2").prune(model, _task(small_fmnist, model, RATIOS, 4), hp)  # picking needs 10
    assert p.info["capped_before_done"]
    assert p.info["pick_forced"] is True and p.info["pick_updates"] == 4
    assert p.filters == l1_smallest_filters(model, RATIOS)  # by the L1 ranking at the cap


# ------------------------------------------------------------------------- 6. check()
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("pick_increment", 0.0, "pick_increment"),
        ("pick_increment", -1e-5, "pick_increment"),
        ("pick_ceiling", 0.0, "pick_ceiling"),
        ("recover", 1e-4, "recover"),
        ("mag_ratio_limit", 0.0, "mag_ratio_limit"),
        ("mag_ratio_limit", -5.0, "mag_ratio_limit"),
        ("ratio_momentum", 1.0, "ratio_momentum"),
        ("ratio_momentum", -0.1, "ratio_momentum"),
        ("penalty_increment", 0.0, "penalty_increment"),
    ],
)
def test_check_refuses_schedules_that_cannot_work(field, value, message):
    with pytest.raises(SuiteError, match=message) as e:
        GRegHparams.from_dict({field: value})
    assert "\n" not in str(e.value)


def test_check_accepts_edges():
    GRegHparams.from_dict({"recover": 0.0, "ratio_momentum": 0.0, "mag_ratio_limit": 1e30})


# ------------------------------------------------------------------------- planned length
def test_planned_iters_by_hand():
    greg1, greg2 = type(registry.get("greg1")), type(registry.get("greg2"))
    # defaults: 1.0 / 1e-4 = 10,000 increments reach 1.0, the 10,001st goes above it; K_u 10, K_s 10,000
    assert greg1.planned_iters(GRegHparams()) == 10_000 * 10 + 1 + 10_000
    # GReg-2: 1,000 picking updates to 0.01, then 0.01 + m * 1e-4 > 1.0 first at m = 9,901
    assert greg2.planned_iters(GRegHparams()) == (1_000 + 9_901 - 1) * 10 + 1 + 10_000
    # not a multiple: 0.3 / 0.25 -> 2 updates (0.25, 0.5); K_u 1, K_s 0
    assert (
        greg1.planned_iters(
            GRegHparams(penalty_increment=0.25, penalty_ceiling=0.3, update_interval=1, stabilize_iters=0)
        )
        == 2
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("greg1", (5 - 1) * 3 + 1 + 4),  # 0.25 .. 1.25: 5 updates, the last at iteration 12, then K_s = 4
        ("greg2", (4 + 3 - 1) * 3 + 1 + 4),  # 4 picking updates (0.125 .. 0.5), then 0.75, 1.0, 1.25
    ],
)
def test_planned_iters_is_the_real_run(small_fmnist, name, expected):
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(
        penalty_increment=0.25,
        penalty_ceiling=1.0,
        pick_increment=0.125,
        pick_ceiling=0.5,
        update_interval=3,
        stabilize_iters=4,
        mag_ratio_limit=NO_RATIO_STOP,
    )
    method = registry.get(name)
    task, outcomes = _task(small_fmnist, model, RATIOS, 1000), []
    run = task.train
    task.train = lambda *a, **kw: outcomes.append(run(*a, **kw)) or outcomes[-1]
    p = method.prune(model, task, hp)
    assert method.planned_iters(hp) == expected == sum(o.steps for o in outcomes)
    assert not p.info["capped_before_done"]
    if name == "greg2":
        assert p.info["pick_forced"] is False and p.info["pick_updates"] == 4


# ------------------------------------------------------------------------- the penalty and its effect
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


def test_greg2_picking_phase_then_recover():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    hp = GRegHparams(
        pick_increment=1e-3,
        pick_ceiling=0.01,
        penalty_increment=0.1,
        penalty_ceiling=0.3,
        update_interval=1,
        stabilize_iters=0,
        mag_ratio_limit=math.inf,
    )
    hook = GRegHook(model, RATIOS, hp, variant=2, structured=True)
    l1_at_start = l1_smallest_filters(model, RATIOS)["features.4"]  # 16 of 32 filters
    _drive(hook, model, 9)  # 9 pick updates: not picked yet
    assert not any(layer.picked for layer in hook.layers)
    with torch.no_grad():  # during picking, 4 of the L1-smallest filters grow into the largest
        model.get_submodule("features.4").weight[l1_at_start[:4]] *= 100
    _drive(hook, model, 1)  # the 10th: 1e-3 * 10 = 0.01 -> picked, by the ranking at that moment
    assert all(layer.picked for layer in hook.layers) and all(
        abs(layer.lam_kept - 0.01) < 1e-12 for layer in hook.layers
    )
    picked = sorted(hook.layers[0].pruned.tolist())
    assert picked == l1_smallest_filters(model, RATIOS)["features.4"] and not set(l1_at_start[:4]) & set(picked)
    _drive(hook, model, 1)
    assert all(layer.lam_kept == -1e-4 and abs(layer.lam_pruned(hp) - 0.11) < 1e-12 for layer in hook.layers)
    assert hook.summary(False)["pick_overlap_with_l1"]["features.4"] == 12 / 16  # 4 of 16 changed


def test_greg1_removes_l1_filters_and_drives_them_down(small_fmnist):
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    train(
        model,
        small_fmnist,
        lr=lambda e: 0.05,
        batch_size=128,
        momentum=0.9,
        weight_decay=5e-4,
        device=CPU,
        seed=0,
        stream="baseline",
        total_steps=32,
        eval_split=None,
    )  # a (briefly) trained baseline
    l1_choice = registry.get("l1").prune(model, _task(small_fmnist, model, RATIOS, 0), None).filters
    for name, ratio in RATIOS.items():  # Li et al.'s rule from the weights: the ceil(r * n) smallest |w| sums
        norms = model.get_submodule(name).weight.detach().abs().flatten(1).sum(1)
        assert l1_choice[name] == sorted(torch.argsort(norms)[: math.ceil(ratio * len(norms))].tolist()), name
    greg_model = copy.deepcopy(model)
    hp = GRegHparams(penalty_increment=0.02, penalty_ceiling=1.0, update_interval=1, stabilize_iters=350)
    p = registry.get("greg1").prune(greg_model, _task(small_fmnist, greg_model, RATIOS, 1000), hp)
    assert p.filters == l1_choice  # the paper's point: the same filters go
    assert p.info["updates"] == 51 and p.info["lambda"]["features.4"] > 1.0  # 51 * 0.02 > 1.0, K_u 1
    for name, idxs in p.filters.items():
        norms = filter_l1(greg_model.get_submodule(name).weight)
        kept = [i for i in range(len(norms)) if i not in idxs]
        before = filter_l1(model.get_submodule(name).weight)
        assert norms[kept].mean() / norms[idxs].mean() > 10 * before[kept].mean() / before[idxs].mean()


# ------------------------------------------------------------------------- mixed precision
class _PenaltyCheck(QuietHook):
    """A hook run after GReg's in the same loop. At every after_backward it checks that the
    penalty GReg just added is ``lambda * w`` in float32 on the float32 gradient: the difference to
    the gradient a hook before GReg saw equals lambda * w computed in float64 to float32's rounding
    (a bf16 addition would be off by ~4e-3 relative). At the update that fixes GReg-2's pick it
    checks the pick against the L1 ranking of the float32 master weights at that moment."""

    def __init__(self):
        self.greg, self.before, self.worst, self.picks = None, {}, 0.0, []

    def snapshot(self, model, step):
        self.before = {layer.name: layer.members[0][0].grad.clone() for layer in self.greg.layers}

    def after_backward(self, model, step):
        for layer in self.greg.layers:
            w = layer.members[0][0]  # a one-conv unit: its conv's weight
            assert w.dtype == w.grad.dtype == torch.float32
            lam, kept = layer.lam_pruned(self.greg.hp), layer.lam_kept
            want = ((lam - kept) * layer.masks[0].double() + kept) * w.detach().double()
            got = (w.grad - self.before[layer.name]).double()
            scale = w.grad.double().abs() + want.abs() + 1e-30
            self.worst = max(self.worst, ((got - want).abs() / scale).max().item())
        if self.greg.variant == 2 and not self.picks and all(layer.picked for layer in self.greg.layers):
            self.picks.append({layer.name: sorted(layer.pruned.tolist()) for layer in self.greg.layers})
            self.picks.append(l1_smallest_filters(model, {layer.name: layer.ratio for layer in self.greg.layers}))


class _Before(_PenaltyCheck):
    def __init__(self, check):
        self.check = check

    def after_backward(self, model, step):
        self.check.snapshot(model, step)


def _precision_task(data, model, numerics, check):
    outcomes, train_1000 = [], sgd_run(model, data, 64, 1000, (_Before(check),), (check,), numerics=numerics)

    def run(hooks, desc, log_every=None, log_extra=None):
        check.greg = hooks[0]
        outcomes.append(train_1000(hooks, desc, log_every, log_extra))
        return outcomes[-1]

    return PruneTask(RATIOS, CPU, 0, 1000, run, None, example_input(1, 28)), outcomes


@pytest.mark.parametrize("name", ["greg1", "greg2"])
def test_bf16_keeps_the_schedule_the_penalty_and_the_choice(small_fmnist, name):
    """A bf16 + channels-last run on real data against the fp32 run from the same weights: the
    same updates, lambdas, stop and stabilization iterations, the penalty added exactly in float32,
    and the same filters. GReg-1's filters are fixed before any training, so they must be equal.
    GReg-2 picks by the L1 ranking after its picking phase, of weights that bf16 trained slightly
    differently, so its pick may legitimately differ at a near-tie: what must hold is that each
    run's pick is the ranking of its own float32 master weights at the pick update, and is what the
    run returns (on this data and CPU the two picks were also equal). The magnitude-ratio stop is
    off: it reads the weights, so its iteration may legitimately move."""
    from suite.training.numerics import FP32, Numerics

    hp = GRegHparams(
        penalty_increment=0.25,
        penalty_ceiling=1.0,
        pick_increment=0.125,
        pick_ceiling=0.5,
        update_interval=3,
        stabilize_iters=4,
        mag_ratio_limit=NO_RATIO_STOP,
    )
    torch.manual_seed(0)
    base = build_model("cnn4", 10, 1)
    runs = {}
    for numerics in (FP32, Numerics("bf16", channels_last=True)):
        model, check = copy.deepcopy(base), _PenaltyCheck()
        task, outcomes = _precision_task(small_fmnist, model, numerics, check)
        runs[numerics.precision] = (registry.get(name).prune(model, task, hp), outcomes, model, check)
    (p32, o32, m32, c32), (p16, o16, m16, c16) = runs["fp32"], runs["bf16"]
    assert max((a - b).abs().max().item() for a, b in zip(m32.parameters(), m16.parameters())) > 0  # bf16 ran
    assert (
        [(o.steps, o.stopped_by_hook) for o in o16]
        == [(o.steps, o.stopped_by_hook) for o in o32]
        == [(type(registry.get(name)).planned_iters(hp), True)]
    )

    def lambdas(outcomes):
        return [{k: v for k, v in r.items() if k.startswith("lambda:")} for o in outcomes for r in o.history]

    assert lambdas(o16) == lambdas(o32) and lambdas(o32)
    measured = ("mag_ratio", "pick_overlap_with_l1", "bn_var_over_eps", "bn_out_ratio", "bn_beta_pruned")
    schedule = {k: v for k, v in p32.info.items() if k not in measured}  # what the schedule decides
    assert {k: v for k, v in p16.info.items() if k in schedule} == schedule
    assert c32.worst < 1e-6 and c16.worst < 1e-6
    if name == "greg1":
        assert p16.filters == p32.filters
    else:
        for check, p in ((c32, p32), (c16, p16)):
            assert check.picks[0] == check.picks[1] == {k: sorted(v) for k, v in p.filters.items()}


def test_the_batchnorm_record_reads_the_pruned_channels_scale_after_the_conv():
    """Hand-set batch norm statistics: 4 channels, channels 1 and 3 pruned. Output scale per channel
    is |gamma| * sqrt(var / (var + eps)): with eps 0.5 and var (1.5, 0.5, 3.5, 0.5), gamma (2, -1, 4, 3)
    the scales are 2*sqrt(.75)=1.732, 1*sqrt(.5)=.7071, 4*sqrt(.875)=3.742, 3*sqrt(.5)=2.121."""
    from types import SimpleNamespace

    from methods.greg import batchnorm_record

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, eps=0.5), torch.nn.ReLU())
    bn = model[1]
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([1.5, 0.5, 3.5, 0.5]))
        bn.weight.copy_(torch.tensor([2.0, -1.0, 4.0, 3.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.4, 0.3, 0.2]))
    layer = SimpleNamespace(name="0", pruned=torch.tensor([1, 3]))
    got = batchnorm_record(model, [layer], torch.zeros(1, 1, 8, 8))
    assert got["bn_var_over_eps"] == {"0": pytest.approx(1.0)}  # both pruned variances are 0.5 = eps
    # torch's median of two values is the lower one: kept 1.732 (of 1.732, 3.742), pruned 0.7071
    assert got["bn_out_ratio"]["0"] == pytest.approx(1.7320508 / 0.7071068, rel=1e-5)
    assert got["bn_beta_pruned"] == {"0": pytest.approx(0.2)}
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())  # no batch norm: nothing to say
    assert batchnorm_record(plain, [layer], torch.zeros(1, 1, 8, 8)) == {}
