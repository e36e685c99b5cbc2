"""Models of the suite, and which of their convs a pruning ratio may touch.

CIFAR ResNets follow He et al. 2016 (option-A zero-pad shortcuts), because the GReg paper's
ResNet-56 numbers (0.85 M params, 125.49 M multiply-adds) are for that net; torchvision has no
CIFAR ResNet, so it is written here. ImageNet ResNets are torchvision's own.

Every model exposes its *prunable layout* through :func:`prunable_convs`: the convs whose output
filters may be removed without touching a residual addition (methods/GREG_SPEC.md, "Layer ratios").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import SuiteError


# --------------------------------------------------------------------------- CIFAR ResNet
class _ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = _ZeroPadShortcut(planes - in_planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: 16/32/64 channels, three stages of n basic blocks."""

    def __init__(self, depth: int, num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise SuiteError(f"CIFAR ResNet depth must be 6n+2 (20, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes, layers = 16, []
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                stride = 2 if (i > 0 and b == 0) else 1
                blocks.append(BasicBlock(planes, width, stride))
                planes = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# --------------------------------------------------------------------------- plain nets
class PlainNet(nn.Module):
    """A VGG-style net: conv-BN-ReLU blocks and max-pools from a cfg list, then one linear layer.

    ``features`` holds the convs in order, so "conv i" of a ratio string is the i-th Conv2d here.
    """

    def __init__(self, cfg: list, in_channels: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
# Sized for a 2-core CPU: 3.7 M multiply-adds on 28x28 Fashion-MNIST, so a 10k-iteration
# regularization phase takes minutes (GReg needs 10k+ iterations to drive filters to zero).
CNN4_CFG = [16, "M", 32, "M", 64, 64]
CNN6_CFG = [32, 32, "M", 64, 64, "M", 128, 128]


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "cifar-resnet" | "torchvision-resnet" | "plain"
    build: Callable[[int, int], nn.Module]  # (num_classes, in_channels) -> model
    description: str


MODELS: dict[str, ModelSpec] = {}


def _add(name, family, build, description):
    MODELS[name] = ModelSpec(name, family, build, description)


for _d in (20, 56, 110):
    _add(f"resnet{_d}", "cifar-resnet", (lambda d: lambda k, c: CifarResNet(d, k))(_d),
         f"CIFAR ResNet-{_d}, option-A shortcuts (He et al. 2016)")
_add("vgg19", "plain", lambda k, c: PlainNet(VGG19_CFG, c, k), "CIFAR VGG-19 with BN, one linear classifier")
_add("cnn4", "plain", lambda k, c: PlainNet(CNN4_CFG, c, k), "4-conv BN net for CPU settings (16-32-64-64)")
_add("cnn6", "plain", lambda k, c: PlainNet(CNN6_CFG, c, k), "6-conv BN net for CPU settings (32..128)")
def _torchvision(name: str) -> Callable[[int, int], nn.Module]:
    """A torchvision ResNet builder, importing torchvision only when one is built: importing it
    pulls in torch._dynamo (seconds), which no CIFAR or Fashion-MNIST command needs."""
    def build(k: int, c: int) -> nn.Module:
        from torchvision import models as tvm
        return getattr(tvm, name)(num_classes=k)
    return build


_add("resnet34", "torchvision-resnet", _torchvision("resnet34"), "torchvision ResNet-34")
_add("resnet50", "torchvision-resnet", _torchvision("resnet50"), "torchvision ResNet-50")


def build_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    if name not in MODELS:
        raise SuiteError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name].build(num_classes, in_channels)


def model_family(name: str) -> str:
    return MODELS[name].family


# --------------------------------------------------------------------------- prunable layout
@dataclass(frozen=True)
class PrunableConv:
    """A conv whose output filters may be removed. ``stage``/``block`` are None for plain nets."""

    name: str
    index: int  # position among all convs of the model (plain nets: the "conv i" of a ratio string)
    stage: int | None = None  # 1-based ResNet stage (layer1 = 1)
    block: int | None = None  # 0-based block inside the stage


def _all_convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def prunable_convs(model: nn.Module, family: str) -> list[PrunableConv]:
    """The convs methods/GREG_SPEC.md allows to prune, in model order.

    ResNets: the first conv of a basic block, the first two of a bottleneck; never the last conv
    of a block, a downsample conv or the stem (their channels are tied by the residual addition).
    Plain nets: every conv.
    """
    convs = _all_convs(model)
    if family == "plain":
        return [PrunableConv(n, i) for i, n in enumerate(convs)]
    out = []
    for i, n in enumerate(convs):
        parts = n.split(".")
        if len(parts) != 3 or not parts[0].startswith("layer"):
            continue  # stem conv and downsample convs (layerS.B.downsample.0)
        stage, block, conv = int(parts[0][5:]), int(parts[1]), parts[2]
        block_mod = model.get_submodule(f"{parts[0]}.{parts[1]}")
        last = "conv3" if hasattr(block_mod, "conv3") else "conv2"
        if conv != last:
            out.append(PrunableConv(n, i, stage, block))
    return out


def num_stages(model: nn.Module) -> int:
    return sum(1 for n, _ in model.named_children() if n.startswith("layer"))


def example_input(in_channels: int, image_size, batch: int = 1) -> torch.Tensor:
    """Zeros of one input: ``image_size`` is a side (square) or (H, W)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return torch.zeros(batch, in_channels, h, w)
