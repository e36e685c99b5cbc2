"""Any model: torchvision nets and a user's file at 32x32, pruned by groups of coupled channels.

For each model every filter method's choice is removed by the one surgery, the pruned model runs,
its FLOPs fall as the dry surgery said, a FLOPs target lands within 2 %, and the pruned model
computes what the masked one computes. Data for methods that train: real Fashion-MNIST images
padded to 32x32 and repeated to 3 channels (nothing here reports an accuracy).
"""

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CPU, own_batches, randomize_bn, sgd_run

from methods import registry
from methods.base import PruneTask
from methods.greg import GRegHook, GRegHparams
from suite.data.datasets import TensorSplit
from suite.errors import SuiteError
from suite.models import zoo
from suite.models.groups import GENERIC, prunable_groups
from suite.models.nets import example_input
from suite.models.ratios import dry_surgery, n_pruned, parse_ratios, resolve
from suite.models.size import count_flops
from suite.models.surgery import batchnorm_after, remove_filters

SHAPE = (3, 32, 32)
USER = f"{Path(__file__).parent.parent / 'suite' / 'examples' / 'mynet.py'}:build"
MODELS = ["torchvision:resnet18", "torchvision:mobilenet_v2", USER]
EXAMPLE = example_input(3, (32, 32))


@pytest.fixture(scope="module", params=MODELS, ids=["resnet18", "mobilenet_v2", "user_net"])
def net(request):
    """(name, model, groups, {ratio string: dry surgery}) of a model at 32x32, BN trained-like."""
    torch.manual_seed(0)
    model = zoo.build(request.param, 10, SHAPE).eval()
    randomize_bn(model)
    return request.param, model, prunable_groups(model, EXAMPLE)


_DRY = {}


def _dry(name, model, ratios):
    """The dry surgery of the uniform 0.5 target, once per model (it is the reference of 5 tests)."""
    if name not in _DRY:
        _DRY[name] = dry_surgery(model, ratios, SHAPE, GENERIC)
    return _DRY[name]


@pytest.fixture(scope="module")
def data32(small_fmnist):
    """Real Fashion-MNIST, 2,048 images, padded to 32x32 and repeated to 3 channels."""

    def conv(split):
        return TensorSplit(F.pad(split.x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous(), split.y)

    return replace(
        small_fmnist,
        train=conv(small_fmnist.train),
        test=conv(small_fmnist.test),
        mean=small_fmnist.mean * 3,
        std=small_fmnist.std * 3,
    )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these nets are tiny at 32x32, and a second thread only spins."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _task(model, data, ratios, groups, max_iters=3):
    run, batches = sgd_run(model, data, 16, max_iters), own_batches(data, 16)
    return PruneTask(ratios, CPU, 0, max_iters, run, batches, EXAMPLE, groups=groups)


def mask_groups(model, choice, groups):
    """The oracle: zero the chosen channels' filters in every conv of each group (at that conv's
    own index of the channel) and the batch norm right after each conv, in place."""
    names = [m for root in choice for m, _ in groups[root].members]
    bns = batchnorm_after(model, names, EXAMPLE)
    with torch.no_grad():
        for root, idxs in choice.items():
            for name, index in groups[root].members:
                own = [index[i] for i in idxs]
                layer = model.get_submodule(name)
                layer.weight[own] = 0
                if layer.bias is not None:
                    layer.bias[own] = 0
                if bns.get(name) is not None:
                    bn = model.get_submodule(bns[name])
                    bn.weight[own] = 0
                    bn.bias[own] = 0
    return model


GREG = GRegHparams(penalty_increment=0.5, update_interval=1, stabilize_iters=1, pick_increment=0.005, pick_ceiling=0.01)
HP = {"greg1": GREG, "greg2": GREG}


@pytest.mark.parametrize("method", ["l1", "random", "greg1", "greg2", "tp-l2"])
def test_every_method_prunes_any_model(net, data32, method):
    name, model, groups = net
    ratios = resolve(parse_ratios("0.5"), model, GENERIC, "filter", SHAPE)
    assert ratios and set(ratios) == set(groups)
    work = copy.deepcopy(model)
    m = registry.get(method)
    choice = m.prune(work, _task(work, data32, ratios, groups), HP.get(method, m.Hparams()))
    assert set(choice.filters) == set(ratios)
    for root, idxs in choice.filters.items():
        assert len(idxs) == n_pruned(0.5, groups[root].size) and len(set(idxs)) == len(idxs)
    pruned = remove_filters(copy.deepcopy(work), choice.filters, EXAMPLE, coupled=True).eval()
    with torch.no_grad():
        assert pruned(example_input(3, (32, 32), batch=2)).shape == (2, 10)
    # FLOPs fall as the dry surgery (first channels removed) said: sizes depend on counts only
    dry = _dry(name, model, ratios)
    assert count_flops(pruned, SHAPE) == dry["pruned_flops"] < 0.75 * dry["flops"]


def test_pruned_equals_masked(net):
    name, model, groups = net
    ratios = resolve(parse_ratios("0.4"), model, GENERIC, "filter", SHAPE)
    choice = registry.get("l1").prune(model, _task(model, None, ratios, groups), None).filters
    masked = mask_groups(copy.deepcopy(model), choice, groups)
    pruned = remove_filters(copy.deepcopy(model), choice, EXAMPLE, coupled=True).eval()
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))  # a function check, no accuracy
    with torch.no_grad():
        ref, out, orig = masked(x), pruned(x), model(x)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(orig, ref, atol=1e-3)  # the mask did change the function


@pytest.mark.parametrize("target", [2.0])
def test_target_speedup_lands_within_two_percent(net, target):
    name, model, _ = net
    ratios = resolve(parse_ratios(f"{target}x"), model, GENERIC, "filter", SHAPE)
    assert len(set(ratios.values())) == 1  # a uniform ratio
    pruned = copy.deepcopy(model)
    remove_filters(
        pruned,
        {n: list(range(n_pruned(r, pruned.get_submodule(n).out_channels))) for n, r in ratios.items()},
        EXAMPLE,
        coupled=True,
    )
    achieved = count_flops(model, SHAPE) / count_flops(pruned, SHAPE)
    assert abs(achieved / target - 1) < 0.02, achieved


def test_groups_couple_residual_and_depthwise():
    model = zoo.build(USER, 10, SHAPE)
    groups = prunable_groups(model, EXAMPLE)
    # the strided conv feeds both residual additions: its group holds both projections, and the
    # stem and classifier stay whole
    assert {m for m, _ in groups["down.0"].members} == {"down.0", "blocks.0.project.0", "blocks.1.project.0"}
    assert "stem.0" not in groups and all(m != "head" for g in groups.values() for m, _ in g.members)
    # an expand conv carries its depthwise conv, channel for channel
    assert groups["blocks.0.expand.0"].members == (
        ("blocks.0.expand.0", tuple(range(128))),
        ("blocks.0.depthwise.0", tuple(range(128))),
    )


def test_greg_penalises_every_conv_of_a_group():
    """grad += lambda * w on the to-be-removed filters of the root and of its depthwise conv alike;
    nothing on the kept filters (GReg-1: lambda of kept groups is 0)."""
    torch.manual_seed(0)
    model = zoo.build(USER, 10, SHAPE)
    groups = prunable_groups(model, EXAMPLE)
    root, dw = "blocks.0.expand.0", "blocks.0.depthwise.0"
    hook = GRegHook(
        model, {root: 0.25}, GRegHparams(penalty_increment=0.5, update_interval=1), 1, True, {root: groups[root]}
    )
    w_root, w_dw = model.get_submodule(root).weight, model.get_submodule(dw).weight
    # the pruned set: the 32 channels of smallest L1 summed over the two convs (computed here)
    total = w_root.detach().abs().flatten(1).sum(1) + w_dw.detach().abs().flatten(1).sum(1)
    expected = set(torch.argsort(total)[:32].tolist())
    assert set(hook.layers[0].pruned.tolist()) == expected
    for w in (w_root, w_dw):
        w.grad = torch.zeros_like(w)
    hook.after_backward(model, 0)  # first update: lambda = 0.5
    for w in (w_root, w_dw):
        for c in range(128):
            want = 0.5 * w[c].detach() if c in expected else torch.zeros_like(w[c])
            assert torch.allclose(w.grad[c], want)


def test_one_conv_group_is_the_paper_rule():
    """On a paper net the generic L1 path (groups of one conv) picks the ceil(r * n) filters of smallest
    L1 norm, computed here from the weights."""
    from methods.criteria import l1_smallest_filters
    from suite.models.layouts import single
    from suite.models.nets import build_model

    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    ratios = {"features.4": 0.5, "features.8": 0.7}
    by_group = l1_smallest_filters(model, ratios, {n: single(n, model) for n in ratios})
    for n, r in ratios.items():
        w = model.get_submodule(n).weight.detach().abs().flatten(1).sum(1)
        assert by_group[n] == sorted(torch.argsort(w)[: math.ceil(r * w.numel())].tolist())


@pytest.mark.parametrize(
    "text, message",
    [
        ("nothere.*=0.5", "matches no module"),
        ("stem.*=0.5", "matches no prunable layer"),
        ("60x", "beyond reach"),
        ("[0,0.5,0.5,0]", "paper layout"),
        ("0.5x", "must be > 1"),
    ],
)
def test_impossible_specs_are_one_line_errors(text, message):
    model = zoo.build(USER, 10, SHAPE)
    with pytest.raises(SuiteError, match=message):
        resolve(parse_ratios(text), model, GENERIC, "filter", SHAPE)


def test_a_model_that_fails_on_the_datas_size_says_so_not_that_tracing_failed():
    """Pooled to nothing before its last conv at 28x28: the error names the input, not torch-pruning;
    MaxViT is built for the data's size, and refused at one it cannot partition, in one line."""
    too_small = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(8),
        torch.nn.Conv2d(8, 8, 5),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    with pytest.raises(SuiteError, match=r"the model fails on 1x28x28 inputs before any pruning \(RuntimeError: "):
        GENERIC.groups(too_small, example_input(1, (28, 28)))
    with pytest.raises(SuiteError, match=r"maxvit_t cannot be built for 10 classes at 28x28: Input size \(4, 4\)"):
        zoo.build("torchvision:maxvit_t", 10, (1, 28, 28))


def test_globs_pick_groups_by_any_member():
    model = zoo.build(USER, 10, SHAPE)
    ratios = resolve(parse_ratios("blocks.*=0.5,blocks.1.*=0,head=0"), model, GENERIC, "filter", SHAPE)
    # blocks.0's expand group, and the residual group (its projections are blocks.* convs), then
    # blocks.1.* = 0 clears what it matches: blocks.1's expand group and the residual group again
    assert ratios == {"blocks.0.expand.0": 0.5}


def test_grey_input_and_non_square_input():
    model = zoo.build("torchvision:resnet18", 7, (1, 24, 40))
    assert model(torch.zeros(2, 1, 24, 40)).shape == (2, 7)
    ratios = resolve(parse_ratios("0.5"), model, GENERIC, "filter", (1, 24, 40))
    assert dry_surgery(model, ratios, (1, 24, 40), GENERIC)["speedup"] > 2


@pytest.mark.parametrize(
    "name, message",
    [
        ("torchvision:resnet19", "did you mean"),
        ("nofile.py:build", "does not exist"),
        (f"{Path(__file__).parent.parent / 'suite' / 'examples' / 'mynet.py'}:nothing", "no function"),
        ("timm:resnet18" if __import__("importlib").util.find_spec("timm") is None else "timm:notamodel", "timm"),
    ],
)
def test_bad_model_names(name, message):
    with pytest.raises(SuiteError, match=message):
        zoo.get(name)


def test_timm_model_if_installed():
    pytest.importorskip("timm")
    model = zoo.build("timm:resnet10t", 10, SHAPE).eval()
    groups = prunable_groups(model, EXAMPLE)
    ratios = resolve(parse_ratios("0.5"), model, GENERIC, "filter", SHAPE)
    choice = registry.get("l1").prune(model, _task(model, None, ratios, groups), None).filters
    pruned = remove_filters(copy.deepcopy(model), choice, EXAMPLE, coupled=True).eval()
    assert pruned(EXAMPLE).shape == (1, 10)
    assert count_flops(pruned, SHAPE) < count_flops(model, SHAPE)


@pytest.mark.parametrize("method", ["magnitude", "greg1-unstructured"])
def test_unstructured_methods_on_any_conv_and_linear(data32, method):
    """Weight granularity on a generic model: every conv and linear but the stem and classifier."""
    torch.manual_seed(0)
    model = zoo.build(USER, 10, SHAPE)
    ratios = resolve(parse_ratios("0.6"), model, GENERIC, "weight", SHAPE)
    layers = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert set(ratios) == layers - {"stem.0", "head"}
    m = registry.get(method)
    choice = m.prune(
        model, _task(model, data32, ratios, {}), HP.get("greg1", m.Hparams()) if "greg" in method else m.Hparams()
    )
    for name, mask in choice.masks.items():
        n = mask.numel()
        assert mask.shape == model.get_submodule(name).weight.shape
        assert int((mask == 0).sum()) == n_pruned(0.6, n)
    with pytest.raises(SuiteError, match="applies to filter pruning"):
        resolve(parse_ratios("2x"), model, GENERIC, "weight", SHAPE)


@pytest.mark.parametrize("method", ["l1", "random", "greg1", "greg2"])
def test_shufflenet_is_pruned_inside_its_branches(data32, method):
    """ShuffleNetV2's channel shuffle cannot be traced whole (torch-pruning divides by zero in its
    reshape mapping), so it is pruned inside each block's branch2: the first 1x1 conv's filters with
    the depthwise conv that follows. Each method prunes the asked count of every unit; the pruned
    model equals the masked one computed independently (the filters of both convs and the batch
    norm after each zeroed, by their known positions in torchvision's block); its FLOPs equal the
    dry surgery's; a tracing-based method says in one line why it cannot."""
    from suite.models.groups import shuffled_scopes

    torch.manual_seed(0)
    model = zoo.build("torchvision:shufflenet_v2_x0_5", 10, SHAPE).eval()
    randomize_bn(model)
    groups = prunable_groups(model, EXAMPLE)
    scopes = shuffled_scopes(model)
    assert len(scopes) == 16 and set(groups) == {f"{s}.0" for s in scopes}
    assert all([m for m, _ in g.members] == [g.root, g.root[:-1] + "3"] for g in groups.values())
    ratios = resolve(parse_ratios("0.5"), model, GENERIC, "filter", SHAPE)
    work = copy.deepcopy(model)
    m = registry.get(method)
    choice = m.prune(work, _task(work, data32, ratios, groups), HP.get(method, m.Hparams())).filters
    assert {r: len(i) for r, i in choice.items()} == {r: n_pruned(0.5, groups[r].size) for r in ratios}

    masked = copy.deepcopy(work)
    with torch.no_grad():
        for root, idxs in choice.items():
            scope = root[:-2]
            for conv, bn in ((".0", ".1"), (".3", ".4")):
                masked.get_submodule(scope + conv).weight[idxs] = 0
                masked.get_submodule(scope + bn).weight[idxs] = 0
                masked.get_submodule(scope + bn).bias[idxs] = 0
    pruned = GENERIC.remove(copy.deepcopy(work), choice, EXAMPLE).eval()
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))  # a function check, no accuracy
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked.eval()(x), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(work.eval()(x), masked(x), atol=1e-3)  # the mask changed the function
    assert count_flops(pruned, SHAPE) == dry_surgery(model, ratios, SHAPE, GENERIC)["pruned_flops"]


def test_a_method_that_traces_the_whole_model_says_why_it_cannot_prune_shufflenet(data32):
    torch.manual_seed(0)
    model = zoo.build("torchvision:shufflenet_v2_x0_5", 10, SHAPE).eval()
    groups = prunable_groups(model, EXAMPLE)
    ratios = resolve(parse_ratios("0.5"), model, GENERIC, "filter", SHAPE)
    with pytest.raises(SuiteError) as e:
        registry.get("tp-l2").prune(model, _task(model, data32, ratios, groups), registry.get("tp-l2").Hparams())
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", ["0.3", "2x"])
def test_grouped_convolutions_stay_whole_and_the_rest_prunes_on_real_tensors(spec):
    """A grouped conv's channels can only go as the same positions of every group, never as the
    filters a method picks (on real tensors RegNet and ResNeXt failed at any ratio with "INDICES
    element is out of DATA bounds", while the meta-device dry surgery passed): the groups that
    reach one stay whole. The surgery of the others succeeds on real tensors, every grouped conv
    keeps its channels, its FLOPs are the dry surgery's, and the pruned model runs."""
    torch.manual_seed(0)
    model = zoo.build("torchvision:regnet_x_400mf", 10, SHAPE).eval()
    ratios = resolve(parse_ratios(spec), model, GENERIC, "filter", SHAPE)
    assert ratios
    pruned = copy.deepcopy(model)
    choice = {n: list(range(n_pruned(r, pruned.get_submodule(n).out_channels))) for n, r in ratios.items()}
    GENERIC.remove(pruned, choice, EXAMPLE)
    before = {n: (m.in_channels, m.out_channels) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    grouped = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and 1 < m.groups < m.out_channels]
    assert grouped and all(
        (pruned.get_submodule(n).in_channels, pruned.get_submodule(n).out_channels) == before[n] for n in grouped
    )
    assert (
        count_flops(pruned, SHAPE)
        == dry_surgery(model, ratios, SHAPE, GENERIC)["pruned_flops"]
        < count_flops(model, SHAPE)
    )
    with torch.no_grad():
        assert pruned(torch.randn(2, *SHAPE)).shape == (2, 10)


def test_maxvit_prunes_its_conv_blocks_and_leaves_its_attention_whole():
    """MaxViT's attention reshapes to the head count and width it was built with, so pruning a
    channel it reads made the pruned model fail its forward: the groups that reach it stay whole and
    the MBConv blocks' inner channels and its attention layers' MLPs prune. On a MaxViT of torchvision's class made small (64x64,
    two stages): the surgery succeeds on real tensors, no attention layer changes shape, FLOPs fall
    as the dry surgery says, and the pruned model runs."""
    from torchvision.models import MaxVit
    from torchvision.models.maxvit import RelativePositionalMultiHeadAttention

    torch.manual_seed(0)
    model = MaxVit(
        input_size=(64, 64),
        stem_channels=8,
        partition_size=2,
        block_channels=[16, 32],
        block_layers=[1, 1],
        head_dim=4,
        stochastic_depth_prob=0.0,
        num_classes=10,
    ).eval()
    shape, example = (3, 64, 64), example_input(3, (64, 64))
    groups = prunable_groups(model, example)
    attention = {n for n, m in model.named_modules() if isinstance(m, RelativePositionalMultiHeadAttention)}
    assert groups and not any(m.startswith(a) for g in groups.values() for m, _ in g.members for a in attention)
    ratios = resolve(parse_ratios("0.5"), model, GENERIC, "filter", shape)
    pruned = copy.deepcopy(model)
    GENERIC.remove(
        pruned, {n: list(range(n_pruned(r, GENERIC.unit_size(pruned, n)))) for n, r in ratios.items()}, example
    )
    assert sum(n.endswith("mlp_layer.1") for n in ratios) == 4  # 2 stages x (block and grid attention)
    shapes = {n: p.shape for n, p in model.named_parameters() if any(n.startswith(a) for a in attention)}
    assert all(pruned.get_parameter(n).shape == s for n, s in shapes.items())
    assert (
        count_flops(pruned, shape)
        == dry_surgery(model, ratios, shape, GENERIC)["pruned_flops"]
        < count_flops(model, shape)
    )
    with torch.no_grad():
        assert pruned(torch.randn(2, *shape)).shape == (2, 10)


def test_a_vit_built_with_multihead_attention_prunes_its_mlps_and_says_how_to_prune_its_heads():
    """torchvision's ViT as a user builds it (``nn.MultiheadAttention``, whose inner width is the
    embedding width): its MLPs are units, its heads are not, and asking for heads is a one-line error
    naming the way (``headwise``); its weights can still be masked unstructured."""
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(
        image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10
    ).eval()
    assert resolve(parse_ratios("0.5"), vit, GENERIC, "filter", SHAPE) == {"encoder.layers.encoder_layer_0.mlp.0": 0.5}
    with pytest.raises(SuiteError, match=r"no heads to prune .*headwise"):
        resolve(parse_ratios("heads=0.5"), vit, GENERIC, "filter", SHAPE)
    masked = resolve(parse_ratios("0.5"), vit, GENERIC, "weight", SHAPE)
    assert masked and all(isinstance(vit.get_submodule(n), torch.nn.Linear) for n in masked)
