"""Ratio strings parsed as methods/GREG_SPEC.md says, and each paper setting's achieved speedup."""

import pytest

from suite.errors import SuiteError
from suite.models.layouts import PLAIN, RESNET
from suite.models.nets import build_model
from suite.models.ratios import n_pruned, parse_ratios, resolve
from suite.pages.overview import achieved
from suite.spec.settings import SETTINGS, get_setting


def test_n_pruned_rule():
    assert n_pruned(0.75, 16) == 12
    assert n_pruned(0.7, 10) == 7  # float noise 7.000000000000001 must not give 8
    assert n_pruned(0.32, 64) == 21  # ceil(20.48)
    assert n_pruned(0.99, 10) == 9  # never the whole layer
    assert n_pruned(0.0, 10) == 0


def test_resnet_stage_list_and_skip():
    m = build_model("resnet34", 1000)
    r = resolve(parse_ratios("[0,0.5,0.6,0.4,0,0]", "[1.0,2.0,2.3,3.0,3.5]"), m, RESNET)
    assert "layer1.0.conv1" not in r and "layer2.3.conv1" not in r and "layer3.5.conv1" not in r
    assert r["layer1.1.conv1"] == 0.5 and r["layer2.1.conv1"] == 0.6 and r["layer3.1.conv1"] == 0.4
    assert not any(k.endswith("conv2") or "downsample" in k or k == "conv1" for k in r)
    assert len(r) == 3 - 1 + 4 - 2 + 6 - 2  # stages 1-3, minus the skipped blocks


def test_bottleneck_prunes_first_two_convs():
    r = resolve(parse_ratios("[0,0.3,0.3,0.3,0.14,0]"), build_model("resnet50", 1000), RESNET)
    assert r["layer1.0.conv1"] == 0.3 and r["layer1.0.conv2"] == 0.3 and "layer1.0.conv3" not in r
    assert r["layer4.2.conv2"] == 0.14


def test_plain_ranges():
    r = resolve(parse_ratios("[1-15:0.7]"), build_model("vgg19", 100), PLAIN)
    assert len(r) == 15 and "features.0" not in r


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("[0,0.5,0.5", "missing closing"),
        ("[0,abc,0]", "not a number"),
        ("[0,1.5,0.5,0.5,0]", "[0, 1)"),
        ("[3-1:0.5]", "backwards"),
        ("[]", "empty"),
        ("-0.5", "not a number"),
        ("", "empty ratio"),
    ],
)
def test_malformed_ratio_strings(text, fragment):
    with pytest.raises(SuiteError, match=fragment.replace("[", r"\[").replace(")", r"\)")):
        parse_ratios(text)


def test_ratio_string_must_fit_model():
    with pytest.raises(SuiteError, match="needs 5 "):
        resolve(parse_ratios("[0,0.5,0.5,0]"), build_model("resnet56", 10), RESNET)
    with pytest.raises(SuiteError, match="stem and classifier"):
        resolve(parse_ratios("[0.5,0.5,0.5,0.5,0]"), build_model("resnet56", 10), RESNET)
    with pytest.raises(SuiteError, match="convs 0-15"):
        resolve(parse_ratios("[1-16:0.5]"), build_model("vgg19", 100), PLAIN)
    with pytest.raises(SuiteError, match="does not have"):
        resolve(parse_ratios("[0,0.5,0.5,0.5,0]", "[1.9]"), build_model("resnet20", 10), RESNET)


@pytest.mark.parametrize(
    "setting,ratios,paper",
    [
        ("cifar10-resnet56", None, 2.55),
        ("cifar10-resnet56", "[0,0.5,0.5,0.5,0]", 1.99),
        ("cifar10-resnet56", "[0,0.7,0.7,0.7,0]", 3.59),
        ("cifar100-vgg19", None, 8.84),
        ("imagenet-resnet34", None, 1.32),
        ("imagenet-resnet50", "[0,0.3,0.3,0.3,0.14,0]", 1.49),
        ("imagenet-resnet50", None, 2.31),
        ("imagenet-resnet50", "[0,0.74,0.74,0.6,0.21,0]", 2.56),
        ("imagenet-resnet50", "[0,0.68,0.68,0.68,0.5,0]", 3.06),
    ],
)
def test_paper_speedups_after_physical_removal(setting, ratios, paper):
    got = achieved(SETTINGS[setting], ratios)["speedup"]
    assert abs(got / paper - 1) < 0.01, f"{setting} {ratios}: {got:.3f}x vs paper {paper}x"


def test_unknown_setting_suggests():
    with pytest.raises(SuiteError, match="did you mean cifar10-resnet56"):
        get_setting("cifar10-resnet5")


def test_every_setting_validates():
    for s in SETTINGS.values():
        s.validate()


def test_a_stored_setting_is_read_back_without_its_model_but_with_its_field_checks():
    """A page reads a TOML setting back from its runs' config.json: its ratios were checked against
    the model when the runs were planned, so ``against_model=False`` builds no model (the page of a
    FLOPs-target setting would pay a dry surgery per target), while every field is still checked."""
    from suite.spec.settings import Setting

    stored = get_setting("fmnist-cnn4").to_dict() | {"name": "gone", "ratios": "[9:0.5]"}
    with pytest.raises(SuiteError, match="names conv 9, but the model has only convs 0-3"):
        Setting.from_dict(stored)
    assert Setting.from_dict(stored, against_model=False).ratios == "[9:0.5]"
    with pytest.raises(SuiteError, match="val_size = 0: must be an integer >= 1"):
        Setting.from_dict({**stored, "val_size": 0}, against_model=False)
