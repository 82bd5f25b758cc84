"""Plain-PyTorch architectures of the bundled zoo, sized for 16 x 16 one-channel digits.

Every model exposes ``default_layers()``: the module names analysed by default (REFERENCE.md section 1): every conv
block output for conv stacks (Tiny-10, VGG), the stem and every residual block output for ResNets, every hidden layer
for the MLP. Each of those units is one child of an ``nn.Sequential`` so it can be hooked, and removed by pruning,
by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvBNReLU", "LinearBNReLU", "Tiny10", "BasicBlock", "CifarResNet", "VGG", "MLP", "PlainNet",
           "VGG_CONFIGS"]


class ConvBNReLU(nn.Sequential):
    """conv -> batch norm -> ReLU; the block's output is the post-activation feature map."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None):
        if padding is None:
            padding = kernel_size // 2
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=False),
        )


class LinearBNReLU(nn.Sequential):
    """linear -> batch norm -> ReLU."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__(nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=False))


class _ConvStack(nn.Module):
    """``features`` (an ``nn.Sequential`` of conv blocks, maybe with pools), global average pooling, a linear
    classifier; the conv blocks are the default layers."""

    def _finish(self, layers: Sequence[nn.Module], c_out: int, num_classes: int) -> None:
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    def default_layers(self) -> list[str]:
        return [f"features.{i}" for i, m in enumerate(self.features) if isinstance(m, ConvBNReLU)]


class Tiny10(_ConvStack):
    """The Tiny-10 CNN of the CKA paper (Kornblith et al. 2019, Table 7).

    conv3x3 16, conv3x3 16, conv3x3 32 stride 2, conv3x3 32, conv3x3 32, conv3x3 64 stride 2, conv3x3 64 valid padding,
    conv1x1 64, each with batch norm and ReLU, then global average pooling and a linear classifier. ``width`` multiplies
    every channel count (the CKA paper's width family: 1x, 2x, 4x).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 1):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive integer multiplier; got {width}")
        a, b, c = 16 * width, 32 * width, 64 * width
        self.width = width
        self._finish([
            ConvBNReLU(in_channels, a),
            ConvBNReLU(a, a),
            ConvBNReLU(a, b, stride=2),
            ConvBNReLU(b, b),
            ConvBNReLU(b, b),
            ConvBNReLU(b, c, stride=2),
            ConvBNReLU(c, c, padding=0),
            ConvBNReLU(c, c, kernel_size=1),
        ], c, num_classes)


class BasicBlock(nn.Module):
    """Residual block of two 3x3 convs; the output is taken after the addition and the final ReLU.

    When the stride or width changes, the shortcut is a 1x1 conv with batch norm (projection shortcut).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    @property
    def keeps_shape(self) -> bool:
        """True when input and output have the same shape, so the block can be removed."""
        return isinstance(self.shortcut, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016): a 16-wide stem and three stages of ``(depth - 2) / 6`` basic blocks of width
    16, 32, 64 (strides 1, 2, 2), global average pooling and a linear classifier. ResNet-20 has 3 blocks per stage,
    ResNet-56 has 9. ``blocks_per_stage`` overrides the count per stage (e.g. after pruning).
    """

    def __init__(
        self,
        depth: int = 20,
        in_channels: int = 1,
        num_classes: int = 10,
        blocks_per_stage: Sequence[int] | None = None,
        widths: Sequence[int] = (16, 32, 64),
    ):
        super().__init__()
        if blocks_per_stage is None:
            if (depth - 2) % 6 != 0:
                raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, ...); got {depth}")
            blocks_per_stage = [(depth - 2) // 6] * 3
        if len(blocks_per_stage) != len(widths):
            raise ValueError(f"blocks_per_stage has {len(blocks_per_stage)} entries but there are {len(widths)} stages")
        self.stem = ConvBNReLU(in_channels, widths[0])
        c_in = widths[0]
        for s, (n_blocks, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            blocks = []
            for b in range(n_blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(c_in, width, stride))
                c_in = width
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.n_stages = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{s + 1}") for s in range(self.n_stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        return self.fc(torch.flatten(self.pool(x), 1))

    def default_layers(self) -> list[str]:
        names = ["stem"]
        for s, stage in enumerate(self.stages()):
            names += [f"layer{s + 1}.{b}" for b in range(len(stage))]
        return names


# Channel plans for 16 x 16 inputs: the ImageNet VGG plans at a quarter of the width, with three max-pools instead of
# five (16 -> 8 -> 4 -> 2), so the deepest convs still see a 2 x 2 map. "M" is a 2x2 max-pool.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [16, "M", 32, "M", 64, 64, "M", 128, 128, 128, 128],
    "vgg16": [16, 16, "M", 32, 32, "M", 64, 64, 64, "M", 128, 128, 128, 128, 128, 128],
    "vgg19": [16, 16, "M", 32, 32, "M", 64, 64, 64, 64, "M", 128, 128, 128, 128, 128, 128, 128, 128],
}


class VGG(_ConvStack):
    """VGG-style conv stack with batch norm: conv blocks and max-pools from a channel plan, global average pooling,
    and a linear classifier."""

    def __init__(self, config: str | Sequence[int | str] = "vgg11", in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        plan = VGG_CONFIGS[config] if isinstance(config, str) else list(config)
        layers: list[nn.Module] = []
        c_in = in_channels
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBNReLU(c_in, int(item)))
                c_in = int(item)
        self.plan = list(plan)
        self._finish(layers, c_in, num_classes)


class MLP(nn.Module):
    """Deep fully connected network: flatten, ``depth`` hidden blocks (linear, batch norm, ReLU), linear classifier."""

    def __init__(self, in_features: int = 256, hidden: int = 256, depth: int = 8, num_classes: int = 10):
        super().__init__()
        widths = [in_features] + [hidden] * depth
        self.hidden = nn.Sequential(*(LinearBNReLU(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)))
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(torch.flatten(x, 1)))

    def default_layers(self) -> list[str]:
        return [f"hidden.{i}" for i in range(len(self.hidden))]


class PlainNet(_ConvStack):
    """Plain-(8n+2): a conv stack without shortcuts, the CKA paper's depth family (Kornblith et al. 2019, section 6.1).

    A conv stem, four stages of ``2n`` conv blocks (conv 3x3, batch norm, ReLU) of width 16, 32, 64 and 128, each later
    stage opening with a stride-2 conv (16 -> 8 -> 4 -> 2 on the digits), global average pooling and a linear
    classifier: ``8n`` convs in the stages, plus the stem and the classifier, ``8n + 2`` weight layers. Deep plain nets
    develop the block structure (large groups of layers with near-identical representations) seen in CKA heatmaps.
    """

    def __init__(self, depth: int = 10, in_channels: int = 1, num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        if (depth - 2) % 8 != 0 or depth < 10:
            raise ValueError(f"depth must be 8n + 2 with n >= 1 (10, 18, 34, ...); got {depth}")
        per_stage = (depth - 2) // 8 * 2
        layers: list[nn.Module] = [ConvBNReLU(in_channels, widths[0])]
        c_in = widths[0]
        for s, width in enumerate(widths):
            for b in range(per_stage):
                layers.append(ConvBNReLU(c_in, width, stride=2 if (s > 0 and b == 0) else 1))
                c_in = width
        self.depth = depth
        self._finish(layers, c_in, num_classes)
