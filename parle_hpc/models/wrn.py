"""Wide residual networks for 32x32 images (Zagoruyko & Komodakis 2016), ``wrn-<depth>-<width>``."""

from __future__ import annotations

import re

import torch
from torch import nn

_NAME = re.compile(r"wrn-([1-9][0-9]*)-([1-9][0-9]*)")


def parse_wrn_name(name: str) -> tuple[int, int] | None:
    """``(depth, width)`` for a name of the form ``wrn-D-W``; ``None`` for other names.

    Raises ``ValueError`` when the name has that form but no such network exists.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        if name.startswith("wrn"):
            raise ValueError(f"model name {name!r} is not of the form wrn-<depth>-<width> "
                             "(positive integers without leading zeros, e.g. wrn-28-10)")
        return None
    depth, width = int(match[1]), int(match[2])
    check_depth(depth)
    return depth, width


def check_depth(depth: int) -> None:
    """A CIFAR-style WRN has 3 groups of (depth - 4) / 6 two-convolution blocks."""
    if depth < 10 or (depth - 4) % 6:
        good = ", ".join(str(6 * k + 4) for k in range(1, 6))
        raise ValueError(f"wide ResNet depth {depth} is invalid: (depth - 4) must be a positive "
                         f"multiple of 6 ({good}, ...)")


class _Block(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, plus shortcut.

    When the shape changes, the shortcut is a 1x1 convolution of the *activated* input
    (as in the reference implementation), so both paths see BN-ReLU(x).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(x))
        out = self.conv1(a)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nn.Module):
    """WRN-``depth``-``width``: conv3x3(16), three groups of (depth-4)/6 blocks with
    16w, 32w, 64w channels (strides 1, 2, 2), BN-ReLU, global average pooling, linear.

    The registry gives one subclass per name (``wrn-28-10`` ...) with ``depth`` and
    ``width`` fixed, so every model is built as ``cls(num_classes, dropout)``.
    """

    default_dropout = 0.25
    default_weight_decay = 5e-4
    input_shape = (3, 32, 32)
    depth = 28
    width = 10

    def __init__(self, num_classes: int = 10, dropout: float = default_dropout,
                 depth: int | None = None, width: int | None = None) -> None:
        super().__init__()
        depth = self.depth if depth is None else depth
        width = self.width if width is None else width
        check_depth(depth)
        if width < 1:
            raise ValueError(f"wide ResNet width must be >= 1, got {width}")
        self.depth, self.width = depth, width
        blocks = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(3, channels[0], 3, padding=1, bias=False)
        groups = []
        for g, stride in enumerate((1, 2, 2)):
            layers = [_Block(channels[g] if b == 0 else channels[g + 1], channels[g + 1],
                             stride if b == 0 else 1, dropout) for b in range(blocks)]
            groups.append(nn.Sequential(*layers))
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(channels[3])
        self.fc = nn.Linear(channels[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation of the convolutions (the reference implementation's choice).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.groups(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))
