"""A user's own model file (the README example and the tests): a stem, two inverted-residual
blocks (1x1 expand, 3x3 depthwise, 1x1 project) with residual additions, and a linear classifier."""

from torch import nn


class Block(nn.Module):
    def __init__(self, channels: int, expand: int):
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU()
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class UserNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.down = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU()
        )
        self.blocks = nn.Sequential(Block(2 * width, 4), Block(2 * width, 4))
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.blocks(self.down(self.stem(x)))
        return self.head(x.mean((2, 3)))


def build(num_classes, in_channels=3):
    """UserNet: stem, a strided conv, two inverted-residual blocks with depthwise convs."""
    return UserNet(num_classes, in_channels)
