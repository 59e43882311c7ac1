"""DenseNet-121/169/201: Densely Connected Convolutional Networks (Huang et al., CVPR 2017).

Inside a dense block every layer reads the concatenation of all earlier feature
maps and adds k (the growth rate) new ones, so features are reused instead of
relearned. Layers are DenseNet-BC: BN -> ReLU -> 1x1 conv (4k) -> BN -> ReLU -> 3x3
conv (k). Between blocks a transition (BN -> ReLU -> 1x1 conv halving the channels
-> 2x2 average pool) shrinks the map. Table 1 of the paper gives the layers per block.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBNAct
from .card import ModelCard
from .registry import register_model

PAPER = "Densely Connected Convolutional Networks (Huang et al., CVPR 2017)"
PAPER_URL = "https://arxiv.org/abs/1608.06993"

GROWTH_RATE = 32  # k for the ImageNet models
BOTTLENECK_WIDTH = 4  # the 1x1 conv makes 4k maps (the "B" in BC)
COMPRESSION = 0.5  # a transition keeps half the channels (the "C" in BC)

# Table 1: layers per dense block (the stem makes 2k channels)
VARIANTS = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
}


class DenseLayer(nn.Module):
    """BN -> ReLU -> 1x1 conv (4k) -> BN -> ReLU -> 3x3 conv (k): k new maps from the concatenated input."""

    def __init__(self, in_chs: int, growth_rate: int):
        super().__init__()
        width = BOTTLENECK_WIDTH * growth_rate
        self.norm = nn.BatchNorm2d(in_chs)
        self.act = nn.ReLU()
        self.conv1 = ConvBNAct(in_chs, width, 1, act_layer=nn.ReLU)
        self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(self.act(self.norm(x))))


class DenseBlock(nn.Module):
    """Each layer gets [x, y1, ..., y_{l-1}] concatenated on channels; the block returns all of them."""

    def __init__(self, in_chs: int, num_layers: int, growth_rate: int):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_chs + i * growth_rate, growth_rate) for i in range(num_layers))
        self.out_channels = in_chs + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN -> ReLU -> 1x1 conv (compress) -> 2x2 average pool."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(
            nn.BatchNorm2d(in_chs),
            nn.ReLU(),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.AvgPool2d(2, 2),
        )
        self.out_channels = out_chs


class DenseNet(nn.Module):
    """7x7/2 conv stem + 3x3/2 max pool -> dense blocks and transitions -> BN -> ReLU -> pool -> FC."""

    def __init__(
        self,
        *,
        block_layers: tuple[int, ...],
        growth_rate: int = GROWTH_RATE,
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        chs = 2 * growth_rate
        self.stem = nn.Sequential(ConvBNAct(in_chans, chs, 7, 2, act_layer=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        for i, n in enumerate(block_layers):
            stages.append(DenseBlock(chs, n, growth_rate))
            chs = stages[-1].out_channels
            if i < len(block_layers) - 1:
                stages.append(Transition(chs, int(chs * COMPRESSION)))
                chs = stages[-1].out_channels
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(chs)
        self.act = nn.ReLU()
        self.num_features = chs
        self.fc = nn.Linear(chs, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.stages(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def _init_weights(model: nn.Module) -> None:
    """The reference's: Kaiming-normal convolutions, unit BatchNorm, zero FC bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def _builder(block_layers: tuple[int, ...]):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> DenseNet:
        return DenseNet(block_layers=block_layers, num_classes=num_classes, in_chans=in_chans)

    return build


for _depth, _layers in VARIANTS.items():
    register_model(
        ModelCard(
            name=f"densenet{_depth}",
            family="densenet",
            paper=PAPER,
            paper_url=PAPER_URL,
            description=f"DenseNet-BC-{_depth}: k = {GROWTH_RATE}, dense blocks of {'-'.join(map(str, _layers))} layers",
            config={"block_layers": _layers, "growth_rate": GROWTH_RATE},
        )
    )(_builder(_layers))
