"""Physical removal is exact: the pruned model computes what the masked model computes."""

import copy

import pytest
import torch
from conftest import randomize_bn

from methods.criteria import l1_smallest_filters, smallest_weights_mask
from suite.errors import SuiteError
from suite.models.nets import MODELS, build_model, example_input
from suite.models.ratios import n_pruned, parse_ratios, resolve
from suite.models.size import count_params
from suite.models.surgery import MaskKeeper, batchnorm_after, remove_filters, sparsity


def mask_filters(model, choice, example):
    """The test oracle: zero the chosen filters *and* their batch norm's scale and shift, in place.
    The result computes exactly what the physically pruned model computes (a removed channel
    contributes nothing downstream)."""
    bns = batchnorm_after(model, choice, example)
    with torch.no_grad():
        for name, idxs in choice.items():
            conv = model.get_submodule(name)
            conv.weight[idxs] = 0
            if conv.bias is not None:
                conv.bias[idxs] = 0
            if bns[name] is not None:
                bn = model.get_submodule(bns[name])
                bn.weight[idxs] = 0
                bn.bias[idxs] = 0
    return model


@pytest.mark.parametrize(
    "name,classes,ratios,shape",
    [
        ("resnet20", 10, "[0,0.5,0.7,0.3,0]", (3, 32, 32)),
        ("cnn4", 10, "0.7", (1, 28, 28)),
        ("vgg19", 100, "[1-15:0.7]", (3, 32, 32)),
        ("resnet50", 1000, "[0,0.6,0.6,0.6,0.21,0]", (3, 64, 64)),
    ],
)
def test_pruned_equals_masked(name, classes, ratios, shape):
    torch.manual_seed(0)
    model = build_model(name, classes, shape[0]).eval()
    randomize_bn(model)
    layer_ratios = resolve(parse_ratios(ratios), model, MODELS.get(name).layout)
    choice = l1_smallest_filters(model, layer_ratios)
    masked = mask_filters(copy.deepcopy(model), choice, example_input(*shape[:2]))
    pruned = remove_filters(copy.deepcopy(model), choice, example_input(*shape[:2]))
    x = torch.randn(4, *shape)
    with torch.no_grad():
        ref, out, orig = masked(x), pruned.eval()(x), model(x)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(orig, ref, atol=1e-3)  # the mask did change the function
    for conv, idxs in choice.items():
        full = model.get_submodule(conv).out_channels
        assert pruned.get_submodule(conv).out_channels == full - len(idxs) == full - n_pruned(layer_ratios[conv], full)
    assert count_params(pruned) < count_params(model)


def test_l1_choice_is_smallest_norms():
    torch.manual_seed(1)
    model = build_model("cnn4", 10, 1)
    choice = l1_smallest_filters(model, {"features.4": 0.5})
    norms = model.get_submodule("features.4").weight.detach().abs().sum((1, 2, 3))  # each filter's L1 norm
    kept = [i for i in range(32) if i not in choice["features.4"]]
    assert len(choice["features.4"]) == 16
    assert norms[choice["features.4"]].max() <= norms[kept].min()


def test_residual_tied_conv_is_refused():
    model = build_model("resnet20", 10)
    with pytest.raises(SuiteError, match="residual"):
        remove_filters(model, {"layer1.0.conv2": [0, 1]}, example_input(3, 32))


def test_unstructured_mask_sparsity_and_keeper():
    torch.manual_seed(0)
    model = build_model("cnn4", 10, 1)
    masks = {n: smallest_weights_mask(model.get_submodule(n).weight, 0.8) for n in ("features.4", "features.8")}
    keeper = MaskKeeper(model, masks)
    for n in masks:
        w = model.get_submodule(n).weight
        assert (w == 0).sum().item() == n_pruned(0.8, w.numel())
    with torch.no_grad():
        model.get_submodule("features.4").weight.add_(1.0)  # an optimizer step would do this
    assert keeper.after_step(model, 1) is False  # the keeper is the fine-tuning loop's hook
    s = sparsity(model, masks)
    assert abs(s["features.4"] - 0.8) < 1e-3 and abs(s["features.8"] - 0.8) < 1e-3


class _Misleading(torch.nn.Module):
    """A batch norm registered right after the conv that it does not follow in the data flow."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.decoy = torch.nn.BatchNorm2d(4)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return self.decoy(torch.relu(self.bn(self.conv(x))))


def test_batchnorm_after_reads_the_graph():
    model = build_model("resnet20", 10)
    assert batchnorm_after(model, ["layer1.0.conv1", "layer3.2.conv1"], example_input(3, 32)) == {
        "layer1.0.conv1": "layer1.0.bn1",
        "layer3.2.conv1": "layer3.2.bn1",
    }
    odd = _Misleading().train()
    assert batchnorm_after(odd, ["conv"], torch.zeros(1, 1, 8, 8)) == {"conv": "bn"}
    assert odd.training and int(odd.bn.num_batches_tracked) == 0  # traced in eval mode, stats untouched
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    assert batchnorm_after(plain, ["0"], torch.zeros(1, 1, 8, 8)) == {"0": None}
