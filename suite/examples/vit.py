"""A small vision transformer for CPU budgets (the transformer comparison and the tests): torchvision's
ViT with attention whose heads can be removed (``suite.models.transformers.headwise``)."""

from torch import nn
from torchvision.models import VisionTransformer

from suite.models.transformers import headwise


def vit(num_classes, in_channels=3, input_size=(32, 32), patch=4, depth=6, heads=4, head_dim=16):
    """ViT for small images: 4x4 patches, 6 blocks of 4 heads of width 16 (embedding 64), MLP 128."""
    side = input_size[0]
    if input_size[1] != side or side % patch:
        raise ValueError(f"this ViT takes square images whose side is a multiple of {patch}, not {tuple(input_size)}")
    width = heads * head_dim
    model = VisionTransformer(
        image_size=side,
        patch_size=patch,
        num_layers=depth,
        num_heads=heads,
        hidden_dim=width,
        mlp_dim=2 * width,
        num_classes=num_classes,
    )
    if in_channels != 3:
        model.conv_proj = nn.Conv2d(in_channels, width, patch, patch)
    return headwise(model)


def tiny(num_classes, in_channels=3, input_size=(32, 32)):
    """Two blocks of 4 heads of width 8 on a 4x4 grid of patches: seconds to train, for tests."""
    return vit(num_classes, in_channels, input_size, patch=input_size[0] // 4, depth=2, heads=4, head_dim=8)
