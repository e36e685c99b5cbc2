"""Transformers: attention heads and MLP channels as prunable units, for every structured method.

Models: the small ViT of ``suite/examples/vit.py`` (torchvision's ViT with removable heads) on real
Fashion-MNIST, timm's ViT/DeiT and torchvision's Swin at 32x32. The references are computed here
independently of the suite's code: a removed head is the same function as its output-projection
columns zeroed, a removed MLP channel as its second layer's column zeroed; a head's L1 norm is the
sum over its query, key and value rows read off the weight reshaped as [3, heads, head_dim, width].
"""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import CPU, own_batches, sgd_run
from torch import nn

from methods import registry
from methods.base import PruneTask
from methods.greg import GRegHparams
from suite.errors import SuiteError
from suite.models import zoo
from suite.models.groups import GENERIC
from suite.models.nets import example_input
from suite.models.ratios import dry_surgery, n_pruned, parse_ratios, resolve
from suite.models.size import count_flops
from suite.models.transformers import HeadAttention, headwise, transformer_units

SHAPE = (1, 28, 28)
EXAMPLE = example_input(1, (28, 28))
TINY = f"{Path(__file__).parent.parent / 'suite' / 'examples' / 'vit.py'}:tiny"
GREG = GRegHparams(penalty_increment=0.5, update_interval=1, stabilize_iters=1, pick_increment=0.005, pick_ceiling=0.01)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def vit():
    torch.manual_seed(0)
    model = zoo.build(TINY, 10, SHAPE).eval()
    nn.init.normal_(model.heads.head.weight, std=0.1)  # torchvision starts its ViT's classifier at zero
    return model


def _task(model, data, ratios, max_iters=6, example=EXAMPLE):
    run, batches = sgd_run(model, data, 32, max_iters), own_batches(data, 32)
    groups = {n: g for n, g in GENERIC.groups(model, example).items() if n in ratios}
    return PruneTask(ratios, CPU, 0, max_iters, run, batches, example, groups=groups)


def masked(model, choice):
    """The oracle: each removed head's columns of its attention's output projection zeroed, each
    removed MLP channel's column of the MLP's second layer zeroed (their contribution is gone)."""
    out = copy.deepcopy(model)
    units = transformer_units(model)
    with torch.no_grad():
        for name, idxs in choice.items():
            kind, module, _, second = units[name]
            w = out.get_submodule(second).weight
            if kind == "heads":
                d = out.get_submodule(module).head_dim
                for h in idxs:
                    w[:, h * d : (h + 1) * d] = 0
            else:
                w[:, idxs] = 0
    return out


def test_headwise_attention_computes_what_multihead_attention_computes():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    ref = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64).eval()
    converted = headwise(copy.deepcopy(ref)).eval()
    assert sum(isinstance(m, HeadAttention) for m in converted.modules()) == 2
    assert not any(isinstance(m, nn.MultiheadAttention) for m in converted.modules())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(converted(x), ref(x), atol=1e-5)


def test_units_are_every_blocks_heads_and_mlp_and_kinds_select_them(vit):
    units = GENERIC.units(vit, EXAMPLE)
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in range(2)]
    assert list(units) == [n for b in blocks for n in (f"{b}.self_attention.qkv", f"{b}.mlp.0")]
    assert [GENERIC.unit_size(vit, n) for n in units] == [4, 64, 4, 64]
    heads = resolve(parse_ratios("heads=0.5"), vit, GENERIC, "filter", SHAPE)
    assert heads == {f"{b}.self_attention.qkv": 0.5 for b in blocks}
    both = resolve(parse_ratios("heads=0.5,mlp=0.25,*encoder_layer_1.*=0"), vit, GENERIC, "filter", SHAPE)
    assert both == {f"{blocks[0]}.self_attention.qkv": 0.5, f"{blocks[0]}.mlp.0": 0.25}
    with pytest.raises(SuiteError, match="no convs to prune"):
        resolve(parse_ratios("convs=0.5"), vit, GENERIC, "filter", SHAPE)


def test_a_pruned_model_has_the_units_of_the_unpruned_one_at_their_new_sizes(vit):
    """Pruned to one head, an attention module is still its unit, of size 1 (not its qkv layer's 24
    rows), in the model and in a copy of it (what a dry surgery or a latency record reads)."""
    units = list(GENERIC.units(vit, EXAMPLE))
    first_heads, first_mlp = units[0], units[1]
    GENERIC.remove(vit, {first_heads: [0, 1, 3], first_mlp: list(range(0, 64, 2))}, EXAMPLE)
    for model in (vit, copy.deepcopy(vit)):
        assert list(GENERIC.units(model, EXAMPLE)) == units
        assert [GENERIC.unit_size(model, n) for n in units] == [1, 32, 4, 64]
        assert model(EXAMPLE).shape == (1, 10)


@pytest.mark.parametrize("method", ["l1", "random", "greg1", "greg2"])
def test_every_method_prunes_heads_and_mlp_channels(vit, small_fmnist, method):
    ratios = resolve(parse_ratios("heads=0.5,mlp=0.5"), vit, GENERIC, "filter", SHAPE)
    work = copy.deepcopy(vit)
    m = registry.get(method)
    choice = m.prune(work, _task(work, small_fmnist, ratios), GREG if "greg" in method else m.Hparams()).filters
    sizes = {n: GENERIC.unit_size(vit, n) for n in ratios}
    assert {n: len(set(i)) for n, i in choice.items()} == {n: n_pruned(0.5, sizes[n]) for n in ratios}
    reference = masked(work, choice).eval()
    pruned = GENERIC.remove(copy.deepcopy(work), choice, EXAMPLE).eval()
    assert [a.num_heads for a in pruned.modules() if isinstance(a, HeadAttention)] == [2, 2]
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))  # a function check, no accuracy
    with torch.no_grad():
        assert torch.allclose(pruned(x), reference(x), atol=1e-5)
        assert not torch.allclose(work.eval()(x), reference(x), atol=1e-3)  # the removal changed the function
    assert count_flops(pruned, SHAPE) == dry_surgery(vit, ratios, SHAPE, GENERIC)["pruned_flops"]
    # the pruned model trains (its optimizer sees the new shapes)
    pruned.train()
    opt = torch.optim.SGD(pruned.parameters(), lr=0.01)
    x, y = next(iter(small_fmnist.train_batches(16, 0, 0, CPU, stream="own")))
    loss = nn.functional.cross_entropy(pruned(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_l1_ranks_a_head_by_its_query_key_and_value_rows(vit):
    name = "encoder.layers.encoder_layer_0.self_attention.qkv"
    qkv = vit.get_submodule(name).weight.detach()  # [3 * heads * d, width]
    with torch.no_grad():  # make head 1 the smallest in q only, head 3 the smallest summed over q, k, v
        qkv.view(3, 4, 8, -1)[0, 1] *= 0.1
        qkv.view(3, 4, 8, -1)[:, 3] *= 0.3
    norms = qkv.view(3, 4, 8, -1).abs().sum((0, 2, 3))
    want = sorted(torch.argsort(norms)[:2].tolist())
    assert 3 in want
    task = _task(vit, None, {name: 0.5})
    assert registry.get("l1").prune(vit, task, None).filters == {name: want}


def test_greg_penalty_shrinks_the_chosen_heads_rows_only(vit, small_fmnist):
    name = "encoder.layers.encoder_layer_1.self_attention.qkv"
    l1 = registry.get("l1").prune(vit, _task(vit, None, {name: 0.5}), None).filters[name]
    work = copy.deepcopy(vit)
    hp = GRegHparams(penalty_increment=2.0, update_interval=1, stabilize_iters=1, penalty_ceiling=50.0)
    p = registry.get("greg1").prune(work, _task(work, small_fmnist, {name: 0.5}, max_iters=40), hp)
    assert p.filters[name] == l1  # GReg-1 removes L1's heads
    before = vit.get_submodule(name).weight.detach().view(3, 4, 8, -1).abs().mean((0, 2, 3))
    after = work.get_submodule(name).weight.detach().view(3, 4, 8, -1).abs().mean((0, 2, 3))
    kept = [h for h in range(4) if h not in l1]
    assert (after[l1] / before[l1]).max() < 0.2  # the chosen heads' q, k, v rows shrink
    assert (after[kept] / before[kept]).min() > 0.8  # the others barely move
    assert p.info["mag_ratio"][name] > 5


def test_the_embedding_width_prunes_only_when_asked_with_every_tensor_it_reaches(vit, small_fmnist):
    """``embed=`` prunes the residual stream: the patch embedding's filters, every block's output rows
    (attention proj, MLP second layer) ranked together, and every tensor that reads the stream
    (LayerNorms, qkv and MLP inputs, class token, position embedding, classifier inputs) follows.
    A plain ratio leaves it whole; GReg shrinks the chosen channels' rows."""
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in range(2)]
    assert "conv_proj" not in resolve(parse_ratios("0.5"), vit, GENERIC, "filter", SHAPE)
    ratios = resolve(parse_ratios("embed=0.25"), vit, GENERIC, "filter", SHAPE)
    assert ratios == {"conv_proj": 0.25}
    writers = ["conv_proj", *(f"{b}.{layer}" for b in blocks for layer in ("self_attention.proj", "mlp.3"))]
    # L1 by hand: per channel, the sum of |w| over the rows of every layer that writes it
    l1_norm = sum(vit.get_submodule(n).weight.detach().abs().flatten(1).sum(1) for n in writers)
    want = sorted(torch.argsort(l1_norm)[: n_pruned(0.25, 32)].tolist())
    choice = registry.get("l1").prune(vit, _task(vit, None, ratios), None).filters
    assert choice == {"conv_proj": want}
    kept = [c for c in range(32) if c not in want]
    pruned = GENERIC.remove(copy.deepcopy(vit), choice, EXAMPLE).eval()
    assert pruned.hidden_dim == pruned.conv_proj.out_channels == 24 and pruned.heads.head.in_features == 24
    assert torch.equal(pruned.conv_proj.weight, vit.conv_proj.weight[kept])
    assert torch.equal(pruned.class_token, vit.class_token[..., kept])
    assert torch.equal(pruned.encoder.pos_embedding, vit.encoder.pos_embedding[..., kept])
    for b in blocks:
        block, original = pruned.get_submodule(b), vit.get_submodule(b)
        assert block.ln_1.normalized_shape == block.ln_2.normalized_shape == (24,)
        assert block.self_attention.qkv.in_features == block.mlp[0].in_features == 24
        assert torch.equal(block.self_attention.proj.weight, original.self_attention.proj.weight[kept])
        assert block.self_attention.num_heads == 4  # heads are their own unit
    assert pruned(EXAMPLE).shape == (1, 10)

    work = copy.deepcopy(vit)
    hp = GRegHparams(penalty_increment=2.0, update_interval=1, stabilize_iters=1, penalty_ceiling=50.0)
    p = registry.get("greg1").prune(work, _task(work, small_fmnist, ratios, max_iters=40), hp)
    assert p.filters == choice  # GReg-1 removes L1's channels
    shrink = work.conv_proj.weight.detach().abs().flatten(1).mean(1) / vit.conv_proj.weight.abs().flatten(1).mean(1)
    assert shrink[want].max() < 0.2 and shrink[kept].min() > 0.8


def test_embed_is_refused_in_one_line_where_there_is_none():
    model = zoo.build("torchvision:resnet18", 10, (3, 32, 32))
    with pytest.raises(SuiteError, match="this model has no embedding width to prune"):
        resolve(parse_ratios("embed=0.5"), model, GENERIC, "filter", (3, 32, 32))


@pytest.mark.parametrize("target", [2.0, 3.0])
def test_a_flops_target_lands_on_a_vit(target):
    """On the example ViT (6 blocks of 4 heads, MLP 128, 49 tokens), attention's matmuls counted."""
    model = zoo.build(TINY.replace(":tiny", ":vit"), 10, SHAPE).eval()
    ratios = resolve(parse_ratios(f"{target}x"), model, GENERIC, "filter", SHAPE)
    pruned = GENERIC.remove(
        copy.deepcopy(model),
        {n: list(range(n_pruned(r, GENERIC.unit_size(model, n)))) for n, r in ratios.items()},
        EXAMPLE,
    )
    achieved = count_flops(model, SHAPE) / count_flops(pruned, SHAPE)
    assert abs(achieved / target - 1) < 0.02, achieved


@pytest.mark.parametrize("name", ["timm:vit_tiny_patch16_224", "timm:deit_tiny_patch16_224"])
def test_timm_vits_are_built_for_the_image_size_and_prune_their_heads(name):
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = zoo.build(name, 10, (3, 32, 32)).eval()
    example = example_input(3, (32, 32))
    ratios = resolve(parse_ratios("0.5"), model, GENERIC, "filter", (3, 32, 32))
    kinds = transformer_units(model)
    assert len(ratios) == 24 and {kinds[n][0] for n in ratios} == {"heads", "mlp"}
    choice = registry.get("l1").prune(model, _task(model, None, ratios, example=example), None).filters
    pruned = GENERIC.remove(copy.deepcopy(model), choice, example).eval()
    assert {a.num_heads for n, a in pruned.named_modules() if n.endswith(".attn")} == {3 - n_pruned(0.5, 3)}  # of 3
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked(model, choice).eval()(x), atol=1e-4)


def _windowwise_computes_the_same(ref):
    """``windowwise`` on a copy of ``ref``, checked to compute exactly what ``ref`` computes on two
    32x32 images; returns the copy and the images."""
    from suite.models.transformers import windowwise

    model = windowwise(copy.deepcopy(ref)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    return model, x


@pytest.mark.parametrize("name", ["swin_t", "swin_v2_t"])
def test_swin_prunes_heads_and_mlps_and_computes_what_torchvision_does(name):
    """Swin's window attention as the zoo builds it (``windowwise``: a head width of its own)
    computes exactly what torchvision's does; its heads and MLP channels are units; removing heads
    (their q, k, v rows, proj columns and position-bias entries) equals zeroing their proj columns."""
    from torchvision import models as tvm

    torch.manual_seed(0)
    ref = tvm.get_model(name, weights=None, num_classes=10).eval()
    nn.init.normal_(ref.head.weight, std=0.1)
    model, x = _windowwise_computes_the_same(ref)
    example = example_input(3, (32, 32))
    units = transformer_units(model)
    assert [k for k, *_ in units.values()].count("heads") == 12 and len(units) == 24
    ratios = resolve(parse_ratios("heads=0.5,mlp=0.5"), model, GENERIC, "filter", (3, 32, 32))
    choice = registry.get("l1").prune(model, _task(model, None, ratios, example=example), None).filters
    pruned = GENERIC.remove(copy.deepcopy(model), choice, example).eval()
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked(model, choice).eval()(x), atol=1e-4)
    assert count_flops(pruned, (3, 32, 32)) < 0.8 * count_flops(model, (3, 32, 32))


def test_maxvit_prunes_heads_and_mlps_computes_what_torchvision_does_and_trains():
    """MaxViT's window and grid attention as the zoo makes it (``windowwise``: qkv/proj names, heads'
    outputs num_heads * head_dim wide) computes exactly what torchvision's does; removing heads
    (with their position-bias columns) equals zeroing their proj columns; the pruned model trains."""
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(0)
    ref = MaxVit(
        input_size=(32, 32),
        stem_channels=16,
        partition_size=4,
        block_channels=[32, 64],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
        num_classes=10,
    ).eval()
    model, x = _windowwise_computes_the_same(ref)
    example = example_input(3, (32, 32))
    units = transformer_units(model)
    heads = [n for n, (kind, *_) in units.items() if kind == "heads"]
    assert len(heads) == 4 and len(units) == 8  # a window and a grid attention per block, each with its MLP
    assert [GENERIC.unit_size(model, n) for n in heads] == [4, 4, 8, 8]
    ratios = resolve(parse_ratios("heads=0.5,mlp=0.5"), model, GENERIC, "filter", (3, 32, 32))
    choice = registry.get("l1").prune(model, _task(model, None, ratios, example=example), None).filters
    pruned = GENERIC.remove(copy.deepcopy(model), choice, example).eval()
    assert [GENERIC.unit_size(pruned, n) for n in heads] == [2, 2, 4, 4]
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked(model, choice).eval()(x), atol=1e-5)
    pruned.train()
    opt = torch.optim.SGD(pruned.parameters(), lr=0.01)
    y = torch.tensor([3, 7])
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(pruned(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_torch_prunings_criteria_score_heads_and_mlp_channels(vit, small_fmnist):
    """Torch-Pruning scores the rows of a unit's layer (a head: its q, k, v rows, summed): its L1 of
    the layer itself (tp-l1) must choose exactly what the suite's l1 chooses; its group L2 (tp-l2)
    prunes the asked counts; a criterion that cannot read a transformer says why in one line."""
    ratios = resolve(parse_ratios("heads=0.5,mlp=0.5"), vit, GENERIC, "filter", SHAPE)
    task = _task(vit, small_fmnist, ratios)
    l1 = registry.get("l1").prune(vit, task, None).filters
    assert registry.get("tp-l1").prune(vit, task, registry.get("tp-l1").Hparams()).filters == l1
    l2 = registry.get("tp-l2").prune(vit, task, registry.get("tp-l2").Hparams()).filters
    assert {n: len(i) for n, i in l2.items()} == {n: len(i) for n, i in l1.items()} and l2 != l1
    for name, why in (("tp-bn-scale", "BatchNorm2d"), ("tp-hessian", "see tokens")):
        m = registry.get(name)
        with pytest.raises(SuiteError, match=why) as e:
            m.prune(
                copy.deepcopy(vit),
                _task(vit, small_fmnist, ratios),
                m.Hparams(**({"sparse_iters": 2} if name == "tp-bn-scale" else {"batches": 2})),
            )
        assert "\n" not in str(e.value)


def test_round_to_aligns_mlp_channels_and_leaves_head_counts_as_asked():
    """--round-to 8 on the example ViT (MLP 128, 4 heads of 16) at heads=0.5,mlp=0.3: an MLP keeps
    128 - ceil(0.3 * 128) = 89 channels, rounded down to 88; a head is 16 channels of each of q, k, v,
    so 2 kept heads are already aligned (rounding the count 2 to 8 would keep all 4 heads)."""
    from suite.models.rounding import round_ratios

    model = zoo.build(TINY.replace(":tiny", ":vit"), 10, SHAPE).eval()
    ratios = resolve(parse_ratios("heads=0.5,mlp=0.3"), model, GENERIC, "filter", SHAPE)
    rounded = round_ratios(model, ratios, 8, GENERIC)
    kinds = transformer_units(model)
    kept = {n: GENERIC.unit_size(model, n) - n_pruned(r, GENERIC.unit_size(model, n)) for n, r in rounded.items()}
    assert set(rounded) == set(ratios)
    assert {k for n, k in kept.items() if kinds[n][0] == "mlp"} == {88}
    assert {k for n, k in kept.items() if kinds[n][0] == "heads"} == {2}
    pruned = GENERIC.remove(
        copy.deepcopy(model), {n: list(range(GENERIC.unit_size(model, n) - kept[n])) for n in rounded}, EXAMPLE
    )
    with torch.no_grad():
        assert pruned(torch.zeros(2, *SHAPE)).shape == (2, 10)


def test_convnext_prunes_the_mlp_of_every_block():
    """ConvNeXt's block ends in an MLP on channels-last features (linear, GELU, linear after the
    depthwise conv): its hidden channels are units, and removing them equals zeroing their columns
    of the second linear layer."""
    torch.manual_seed(0)
    model = zoo.build("torchvision:convnext_tiny", 10, (3, 32, 32)).eval()
    for block in model.modules():  # its layer scale starts at 1e-6: the blocks would add nothing yet
        if hasattr(block, "layer_scale"):
            nn.init.constant_(block.layer_scale, 1.0)
    example = example_input(3, (32, 32))
    ratios = resolve(parse_ratios("mlp=0.5"), model, GENERIC, "filter", (3, 32, 32))
    assert len(ratios) == 18 and all(n.endswith(".block.3") for n in ratios)  # 3 + 3 + 9 + 3 blocks
    choice = registry.get("l1").prune(model, _task(model, None, ratios, example=example), None).filters
    pruned = GENERIC.remove(copy.deepcopy(model), choice, example).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = masked(model, choice).eval()(x)
        assert torch.allclose(pruned(x), reference, atol=1e-4)
        assert not torch.allclose(model(x), reference, atol=1e-3)  # the removal changed the function


def test_attention_whose_heads_cannot_leave_is_not_a_unit():
    """Shaped like timm's attention (qkv, proj, num_heads, head_dim), but a head cannot leave: one
    takes its head width from the embedding width in its forward (as CrossViT's attention does),
    one has a bias of its own that nothing here slices (as EVA's separate q and v biases). Both fail
    the trial removal, so neither is a unit; the well-formed one beside them is."""

    class Attention(nn.Module):
        def __init__(self, dim=32, heads=4, own_bias=False, width_from_input=False):
            super().__init__()
            self.num_heads, self.head_dim, self.width_from_input = heads, dim // heads, width_from_input
            self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=not own_bias), nn.Linear(dim, dim)
            self.q_bias = nn.Parameter(torch.zeros(dim)) if own_bias else None

        def forward(self, x):
            b, n, c = x.shape
            bias = None if self.q_bias is None else torch.cat([self.q_bias, torch.zeros_like(self.q_bias)] * 2)[: 3 * c]
            d = c // self.num_heads if self.width_from_input else self.head_dim
            qkv = nn.functional.linear(x, self.qkv.weight, bias if bias is not None else self.qkv.bias)
            q, k, v = qkv.reshape(b, n, 3, self.num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
            return self.proj(nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1))

    model = nn.ModuleDict(
        {"good": Attention(), "reads_width": Attention(width_from_input=True), "own_bias": Attention(own_bias=True)}
    )
    assert {u[1] for u in transformer_units(model).values()} == {"good"}
