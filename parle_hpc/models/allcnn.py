"""All-CNN-C with batch norm, as the Parle/Entropy-SGD authors ran it on CIFAR."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1,
                  padding: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class AllCNN(nn.Module):
    """All-CNN-C (Springenberg et al. 2015) with BN after every convolution.

    The authors' variant (Entropy-SGD / Parle code): dropout 0.2 on the input;
    three 3x3 convolutions of ``c1`` channels (the last with stride 2, replacing max
    pooling); dropout; three 3x3 of ``c2`` (the last with stride 2); dropout; two 3x3
    of ``c2``; a 1x1 convolution to ``num_classes``; every convolution followed by
    BN and ReLU; global average pooling gives the logits. Input 3x32x32.
    """

    default_dropout = 0.5
    default_weight_decay = 1e-3
    input_shape = (3, 32, 32)
    input_dropout = 0.2
    """Dropout on the input image (fixed, as in the authors' code; ``dropout`` sets the others)."""

    def __init__(self, num_classes: int = 10, dropout: float = default_dropout,
                 c1: int = 96, c2: int = 192) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Dropout(self.input_dropout),
            _conv_bn_relu(3, c1, 3, padding=1),
            _conv_bn_relu(c1, c1, 3, padding=1),
            _conv_bn_relu(c1, c1, 3, stride=2, padding=1),
            nn.Dropout(dropout),
            _conv_bn_relu(c1, c2, 3, padding=1),
            _conv_bn_relu(c2, c2, 3, padding=1),
            _conv_bn_relu(c2, c2, 3, stride=2, padding=1),
            nn.Dropout(dropout),
            _conv_bn_relu(c2, c2, 3, padding=1),
            _conv_bn_relu(c2, c2, 3, padding=1),
            _conv_bn_relu(c2, num_classes, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
