"""VGG-11/13/16/19, with and without BatchNorm: Very Deep Convolutional Networks (Simonyan & Zisserman, ICLR 2015).

Only 3x3 convolutions (stride 1, padding 1) and 2x2 max pools, deepened from 11 to 19
weight layers (Table 1, configurations A, B, D, E), then three FC layers (4096, 4096,
classes). The `_bn` variants put BatchNorm after every convolution (not in the paper;
the reference models that are trained from scratch without its staged initialisation).

The FC layers are written as the paper evaluates them (Sec. 3.2, dense evaluation):
the first as a 7x7 convolution over the last 7x7 map, the other two as 1x1
convolutions, and the class score map averaged. At 224x224 that is the same function
with the same parameters and MACs as FC layers, and the deployed NHWC graph needs no
transpose before a flatten; larger inputs give a score map, averaged as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from .card import ModelCard
from .registry import register_model

PAPER = "Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan & Zisserman, ICLR 2015)"
PAPER_URL = "https://arxiv.org/abs/1409.1556"

M = "M"  # 2x2 max pool, stride 2
# Table 1: output channels of each 3x3 conv, in order, and the pools
CONFIGS = {
    11: (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),  # A
    13: (64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),  # B
    16: (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M),  # D
    19: (64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M),  # E
}
FC_WIDTH = 4096
FC_KERNEL = 7  # the last feature map at 224x224: 224 / 2^5


class VGG(nn.Module):
    """3x3 conv stack -> FC layers as convolutions (7x7, 1x1, 1x1) -> spatial mean of the class scores."""

    def __init__(
        self,
        *,
        config: tuple,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float = 0.5,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        chs = in_chans
        for v in config:
            if v == M:
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(chs, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            chs = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Conv2d(chs, FC_WIDTH, FC_KERNEL),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(FC_WIDTH, FC_WIDTH, 1),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(FC_WIDTH, num_classes, 1),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).mean((2, 3))


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convolutions with zero bias, unit BatchNorm."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_img_size(img_size, minimum: int, why: str) -> None:
    if img_size is not None and min(img_size) < minimum:
        raise ValueError(f"img_size {tuple(img_size)} is too small: {why}; pass img_size of at least {minimum}")


def _builder(depth: int, batch_norm: bool):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None, dropout: float = 0.5) -> VGG:
        check_img_size(img_size, 224, "VGG's first FC layer is a 7x7 convolution over the last (input / 32) map")
        return VGG(config=CONFIGS[depth], batch_norm=batch_norm, num_classes=num_classes, in_chans=in_chans, dropout=dropout)

    return build


for _depth in CONFIGS:
    for _bn in (False, True):
        register_model(
            ModelCard(
                name=f"vgg{_depth}{'_bn' if _bn else ''}",
                family="vgg",
                paper=PAPER,
                paper_url=PAPER_URL,
                description=f"VGG-{_depth} (configuration {'ABDE'[list(CONFIGS).index(_depth)]})"
                + (" with BatchNorm" if _bn else ""),
                config={"depth": _depth, "batch_norm": _bn},
            )
        )(_builder(_depth, _bn))
