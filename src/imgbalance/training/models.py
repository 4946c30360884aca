"""Models for ``imgbalance train``: a small CNN for CPUs, and any torchvision classifier."""

from __future__ import annotations

import torch
from torch import nn

from ..torch_models import build_model, final_linear

__all__ = ["SmallCNN", "make_model"]

#: ImageNet statistics: the normalisation torchvision's pretrained weights expect
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-pool blocks (16-32-64-128), global average pooling, dropout, linear.

    About 0.1 M parameters, small enough to train on a CPU: an epoch over a
    thousand 64 x 64 images takes seconds on two cores.
    """

    def __init__(self, n_classes: int, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for k in range(4):
            c_out = width * 2**k
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))
        return out


def make_model(name: str, n_classes: int, weights: str | None = None) -> nn.Module:
    """``small-cnn`` or a torchvision model (random init, or ``weights``) with an
    ``n_classes`` head. The caller seeds torch first: the initial weights come from it."""
    if name == "small-cnn":
        if weights is not None:
            raise ValueError("small-cnn has no pretrained weights; drop --pretrained.")
        return SmallCNN(n_classes)
    model = build_model(name, weights).model
    parent, attr, head = final_linear(model)
    setattr(parent, attr, nn.Linear(head.in_features, n_classes))
    return model
