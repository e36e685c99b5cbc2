"""Plug-ins behind one registry pattern, and a model's layout as an object (suite.models.layouts):
the counts below are the papers' architectures counted by hand, not the code's rules re-run."""

import pytest
from torch import nn

from suite.data import datasets
from suite.errors import SuiteError
from suite.models import zoo
from suite.models.groups import GENERIC
from suite.models.layouts import PLAIN, RESNET
from suite.models.nets import MODELS, build_model
from suite.models.ratios import parse_ratios, resolve

SHAPE = (3, 32, 32)


@pytest.mark.parametrize(
    "name, layout, prunable",
    [
        ("resnet56", RESNET, 27),  # 3 stages x 9 basic blocks, the first conv of each
        ("resnet50", RESNET, 32),  # 3 + 4 + 6 + 3 bottlenecks, their first two convs
        ("vgg19", PLAIN, 16),  # every conv
    ],
)
def test_each_builtin_carries_the_papers_layout(name, layout, prunable):
    entry = zoo.get(name)
    assert entry.layout == layout and not entry.layout.coupled
    model = entry.build(10, SHAPE)
    convs = layout.prunable_convs(model)
    assert len(convs) == prunable
    # no conv whose output feeds a residual addition: a block's last conv, a shortcut, the stem
    assert not any(
        c.name.endswith(("conv2" if name == "resnet56" else "conv3", "downsample.0")) or c.name == "conv1"
        for c in convs
    )


def test_outside_models_follow_coupled_channels():
    layout = zoo.get("torchvision:resnet18").layout
    assert layout is GENERIC and layout.coupled and not layout.per_stage
    model = zoo.build("torchvision:resnet18", 10, SHAPE)
    # resnet18: the first conv of each of its 8 basic blocks is a group of its own; the second convs
    # and the shortcuts of a stage share the residual stream (one group per stage, but the stem's
    # stage 1, which stays whole with the stem): 8 + 3
    units = resolve(parse_ratios("0.5"), model, layout, "filter", SHAPE)
    assert len(units) == 11 and "conv1" not in units
    with pytest.raises(SuiteError, match="paper layout"):
        resolve(parse_ratios("[0,0.5,0.5,0.5,0.5,0]"), model, layout, "filter", SHAPE)
    with pytest.raises(SuiteError, match="skip lists apply to the built-in ResNets"):
        resolve(parse_ratios("layer2.*=0.5", "[2.0]"), model, layout, "filter", SHAPE)


def test_the_same_string_resolves_by_the_models_layout():
    """One ratio on a plain net spares conv 0 (as the paper prunes VGG); on a ResNet it takes every
    prunable conv, and a stage list means stages; on a plain net a stage list is refused."""
    vgg, resnet = build_model("vgg19", 100), build_model("resnet20", 10)
    assert len(resolve(parse_ratios("0.5"), vgg, PLAIN)) == 15
    assert len(resolve(parse_ratios("0.5"), resnet, RESNET)) == 9
    staged = resolve(parse_ratios("[0,0,0.5,0,0]"), resnet, RESNET)
    assert sorted(staged) == [f"layer2.{b}.conv1" for b in range(3)]
    with pytest.raises(SuiteError, match="ResNet stage list"):
        resolve(parse_ratios("[0,0,0.5,0,0]"), vgg, PLAIN)


def test_models_are_listed_by_pattern_and_registered_once(monkeypatch):
    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))  # leave the process's registry as it was
    assert zoo.list_models("resnet*") == ["resnet110", "resnet20", "resnet34", "resnet50", "resnet56"]

    @zoo.register_model
    def tiny(num_classes, in_channels=3):
        """A one-conv net."""
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)
        )

    assert "tiny" in zoo.list_models("t*") and zoo.get("tiny").layout is GENERIC
    assert zoo.get("tiny").description == "A one-conv net."
    with pytest.raises(SuiteError, match="registered twice"):
        zoo.register_model(tiny)
    with pytest.raises(SuiteError, match=r"did you mean cnn6, cnn4\?.*torchvision:NAME"):
        zoo.get("cnn5")


def test_datasets_are_registered_with_what_a_setting_needs():
    assert datasets.DATASETS.names("cifar*") == ["cifar10", "cifar10-jpg", "cifar100"]
    assert datasets.info("cifar100").num_classes == 100
    assert datasets.info("fashion-mnist").input_shape == (1, 28, 28)
    with pytest.raises(SuiteError, match="did you mean cifar10.*imagefolder:PATH"):
        datasets.load("cifar11")


def test_builtin_info_is_what_the_loader_gives(fmnist):
    info = datasets.info("fashion-mnist")
    assert tuple(fmnist.train.x.shape[1:]) == info.input_shape and fmnist.num_classes == info.num_classes
