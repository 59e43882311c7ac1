"""MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al., 2018).

Table 2 of the paper, one row per stage:
t = expansion factor, c = output channels, n = repeats, s = stride of the first repeat.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ClassifierHead, ConvBNAct, InvertedResidual, init_mobilenet_weights, make_divisible
from .card import ModelCard
from .registry import register_model

PAPER = "MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al., CVPR 2018)"
PAPER_URL = "https://arxiv.org/abs/1801.04381"

# t, c, n, s
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        round_nearest: int = 8,
    ):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        stem_chs = make_divisible(32 * width_mult, round_nearest)
        # The paper keeps the last layer at 1280 for widths below 1.0.
        self.num_features = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        layers: list[nn.Module] = [ConvBNAct(in_chans, stem_chs, 3, 2)]
        in_chs = stem_chs
        for t, c, n, s in STAGES:
            out_chs = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                layers.append(InvertedResidual(in_chs, out_chs, stride=s if i == 0 else 1, expanded_chs=in_chs * t))
                in_chs = out_chs
        layers.append(ConvBNAct(in_chs, self.num_features, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = ClassifierHead(self.num_features, num_classes, dropout=dropout)
        init_mobilenet_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.mean((2, 3)))


def _builder(width: float):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None, **kw) -> MobileNetV2:
        return MobileNetV2(num_classes=num_classes, in_chans=in_chans, width_mult=width, **kw)

    return build


for _width, _suffix in ((1.0, ""), (0.35, "_035"), (0.5, "_050"), (0.75, "_075"), (1.3, "_130"), (1.4, "_140")):
    register_model(
        ModelCard(
            name=f"mobilenet_v2{_suffix}",
            family="mobilenet_v2",
            paper=PAPER,
            paper_url=PAPER_URL,
            description=f"MobileNetV2, width multiplier {_width}",
            config={"width_mult": _width},
        )
    )(_builder(_width))

