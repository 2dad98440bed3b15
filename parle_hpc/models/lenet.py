"""LeNet as the Parle/Entropy-SGD authors ran it on MNIST."""

from __future__ import annotations

from torch import nn


def _conv_block(c_in: int, c_out: int, pool: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 5), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.MaxPool2d(pool, pool), nn.Dropout(dropout))


class LeNet(nn.Module):
    """conv(1->20,5)-BN-ReLU-maxpool(3)-dropout, conv(20->50,5)-BN-ReLU-maxpool(2)-dropout,
    linear(200->500)-BN-ReLU-dropout, linear(500->10). Input 1x28x28, 10 logits."""

    default_dropout = 0.25
    default_weight_decay = 0.0
    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10, dropout: float = default_dropout) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_block(1, 20, 3, dropout), _conv_block(20, 50, 2, dropout))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(50 * 2 * 2, 500), nn.BatchNorm1d(500), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(500, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))
