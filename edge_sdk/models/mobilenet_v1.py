"""MobileNetV1: Efficient Convolutional Neural Networks for Mobile Vision Applications (Howard et al., 2017).

Table 1 of the paper: a full 3x3 stem convolution, then 13 depthwise-separable
layers (3x3 depthwise conv + 1x1 pointwise conv, each followed by BN + ReLU as in
Figure 3; the TF reference uses ReLU6), global average pooling and one fully
connected layer.

The width multiplier alpha scales every layer's channels as the reference
(TF-slim `mobilenet_v1`) does: `max(int(channels * alpha), 8)`.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ClassifierHead, ConvBNAct, init_mobilenet_weights
from .card import ModelCard
from .registry import register_model

PAPER = "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications (Howard et al., 2017)"
PAPER_URL = "https://arxiv.org/abs/1704.04861"

STEM_CHS = 32  # Table 1, "Conv / s2, 3x3x3x32"

# Table 1 after the stem, one row per depthwise-separable layer:
# s = stride of the 3x3 depthwise conv, c = output channels of the 1x1 pointwise conv, n = repeats.
LAYERS = (
    (1, 64, 1),
    (2, 128, 1),
    (1, 128, 1),
    (2, 256, 1),
    (1, 256, 1),
    (2, 512, 1),
    (1, 512, 5),
    (2, 1024, 1),
    # Table 1 prints "Conv dw / s2" here, yet the layer maps 7x7 to 7x7: stride 1, as in the reference.
    (1, 1024, 1),
)


class DepthwiseSeparable(nn.Sequential):
    """Figure 3 (right): 3x3 depthwise conv -> BN -> ReLU -> 1x1 pointwise conv -> BN -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__(
            ConvBNAct(in_chs, in_chs, 3, stride, groups=in_chs, act_layer=nn.ReLU),
            ConvBNAct(in_chs, out_chs, 1, act_layer=nn.ReLU),
        )


class MobileNetV1(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        dropout: float = 1e-3,
    ):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        def width(chs: int) -> int:
            return max(int(chs * width_mult), 8)

        layers: list[nn.Module] = [ConvBNAct(in_chans, width(STEM_CHS), 3, 2, act_layer=nn.ReLU)]
        in_chs = width(STEM_CHS)
        for s, c, n in LAYERS:
            for i in range(n):
                layers.append(DepthwiseSeparable(in_chs, width(c), s if i == 0 else 1))
                in_chs = width(c)
        self.features = nn.Sequential(*layers)
        self.num_features = in_chs
        # The reference keeps 0.999 of the pooled features in training (dropout 1e-3).
        self.classifier = ClassifierHead(self.num_features, num_classes, dropout=dropout)
        init_mobilenet_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.mean((2, 3)))


def _builder(width: float):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None, dropout: float = 1e-3) -> MobileNetV1:
        return MobileNetV1(num_classes=num_classes, in_chans=in_chans, width_mult=width, dropout=dropout)

    return build


for _width, _suffix in ((1.0, ""), (0.75, "_075"), (0.5, "_050"), (0.25, "_025")):
    register_model(
        ModelCard(
            name=f"mobilenet_v1{_suffix}",
            family="mobilenet_v1",
            paper=PAPER,
            paper_url=PAPER_URL,
            description=f"MobileNetV1, width multiplier {_width}",
            config={"width_mult": _width},
        )
    )(_builder(_width))
