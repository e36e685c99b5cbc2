"""The suite's built-in models, and the one model registry they join (``MODELS``).

CIFAR ResNets follow He et al. 2016 (option-A zero-pad shortcuts), because the GReg paper's
ResNet-56 numbers (0.85 M params, 125.49 M multiply-adds) are for that net; torchvision has no
CIFAR ResNet, so it is written here. ImageNet ResNets are torchvision's own.

Every entry carries its layout (``suite.models.layouts``): which convs a ratio may touch (the paper's
rules for these nets, methods/GREG_SPEC.md "Layer ratios") and how a ratio string resolves on it.
``suite.models.zoo`` resolves every model name through ``MODELS`` and adds the outside ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import SuiteError
from suite.models.layouts import PLAIN, RESNET, Layout
from suite.registry import Registry


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
class ModelEntry:
    """``build(num_classes, input_shape)`` with input_shape (C, H, W); ``layout`` answers what may be
    pruned and how a ratio string resolves (``suite.models.layouts``)."""

    name: str
    layout: Layout
    build: Callable[[int, tuple[int, int, int]], nn.Module]
    description: str


MODELS: Registry[ModelEntry] = Registry("model")


def builtin(name: str, layout: Layout, description: str):
    """Decorator: register ``build(num_classes, in_channels)`` as the built-in model ``name`` (a
    built-in ends in adaptive pooling, so it takes any image size)."""

    def add(build: Callable[[int, int], nn.Module]):
        MODELS.register(name)(ModelEntry(name, layout, lambda k, shape: build(k, shape[0]), description))
        return build

    return add


@builtin("resnet20", RESNET, "CIFAR ResNet-20, option-A shortcuts (He et al. 2016)")
def resnet20(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(20, num_classes)


@builtin("resnet56", RESNET, "CIFAR ResNet-56, option-A shortcuts (He et al. 2016)")
def resnet56(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(56, num_classes)


@builtin("resnet110", RESNET, "CIFAR ResNet-110, option-A shortcuts (He et al. 2016)")
def resnet110(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(110, num_classes)


@builtin("vgg19", PLAIN, "CIFAR VGG-19 with BN, one linear classifier")
def vgg19(num_classes: int, in_channels: int) -> nn.Module:
    return PlainNet(VGG19_CFG, in_channels, num_classes)


@builtin("cnn4", PLAIN, "4-conv BN net for CPU settings (16-32-64-64)")
def cnn4(num_classes: int, in_channels: int) -> nn.Module:
    return PlainNet(CNN4_CFG, in_channels, num_classes)


@builtin("cnn6", PLAIN, "6-conv BN net for CPU settings (32..128)")
def cnn6(num_classes: int, in_channels: int) -> nn.Module:
    return PlainNet(CNN6_CFG, in_channels, num_classes)


# torchvision's ResNets are imported only when one is built: importing torchvision pulls in
# torch._dynamo (seconds), which no CIFAR or Fashion-MNIST command needs.
@builtin("resnet34", RESNET, "torchvision ResNet-34")
def resnet34(num_classes: int, in_channels: int) -> nn.Module:
    from torchvision import models as tvm

    return tvm.resnet34(num_classes=num_classes)


@builtin("resnet50", RESNET, "torchvision ResNet-50")
def resnet50(num_classes: int, in_channels: int) -> nn.Module:
    from torchvision import models as tvm

    return tvm.resnet50(num_classes=num_classes)


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: tuple[int, int] = (32, 32)) -> nn.Module:
    """A registered model by name (``suite.models.zoo.build`` also takes the outside names)."""
    return MODELS.get(name).build(num_classes, (in_channels, *image_size))


def example_input(in_channels: int, image_size, batch: int = 1) -> torch.Tensor:
    """Zeros of one input: ``image_size`` is a side (square) or (H, W)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return torch.zeros(batch, in_channels, h, w)
