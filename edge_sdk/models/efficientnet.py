"""EfficientNet B0-B7 (Tan & Le, ICML 2019) and EfficientNet-Lite0-4 (TensorFlow TPU models).

B0 is Table 1 of the paper; B1-B7 scale its width (channels), depth (layers
per stage) and input resolution together: compound scaling. Lite is the
reference repository's variant for mobile accelerators: no squeeze-excite
(poorly supported there), ReLU6 instead of SiLU (quantises better), and the
stem, the head and the depth of the first and last stages left unscaled.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ..data import IMAGENET_MEAN, IMAGENET_STD
from .blocks import ActLayer, ClassifierHead, ConvBNAct, InvertedResidual, SqueezeExcite, damp_inverted_residuals, make_divisible
from .card import ModelCard
from .registry import register_model

PAPER = "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks (Tan & Le, ICML 2019)"
PAPER_URL = "https://arxiv.org/abs/1905.11946"
LITE_PAPER = "EfficientNet-Lite (TensorFlow TPU reference models, 2020), after Tan & Le, ICML 2019"
LITE_URL = "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite"

# Table 1 (EfficientNet-B0), one row per stage:
# operator, kernel size, input resolution, output channels, layers.
# MBConv<e> is the mobile inverted bottleneck with expansion ratio e. A stage
# downsamples in its first layer by its input resolution over the next stage's.
B0_TABLE = (
    ("Conv", 3, 224, 32, 1),
    ("MBConv1", 3, 112, 16, 1),
    ("MBConv6", 3, 112, 24, 2),
    ("MBConv6", 5, 56, 40, 2),
    ("MBConv6", 3, 28, 80, 3),
    ("MBConv6", 5, 14, 112, 3),
    ("MBConv6", 5, 14, 192, 4),
    ("MBConv6", 3, 7, 320, 1),
    ("Conv", 1, 7, 1280, 1),  # then pooling and FC
)

# Compound scaling (paper eq. 3): depth alpha^phi, width beta^phi, resolution gamma^phi.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
SE_RATIO = 0.25  # squeeze channels per block input channel

# The released models' coefficients: name, width, depth, resolution, dropout.
# They round the rule by hand (and grow faster than it from B4 on), so the zoo
# uses them, not compound_coefficients(phi).
EFFICIENTNET = (
    ("efficientnet_b0", 1.0, 1.0, 224, 0.2),
    ("efficientnet_b1", 1.0, 1.1, 240, 0.2),
    ("efficientnet_b2", 1.1, 1.2, 260, 0.3),
    ("efficientnet_b3", 1.2, 1.4, 300, 0.3),
    ("efficientnet_b4", 1.4, 1.8, 380, 0.4),
    ("efficientnet_b5", 1.6, 2.2, 456, 0.4),
    ("efficientnet_b6", 1.8, 2.6, 528, 0.5),
    ("efficientnet_b7", 2.0, 3.1, 600, 0.5),
)
EFFICIENTNET_LITE = (
    ("efficientnet_lite0", 1.0, 1.0, 224, 0.2),
    ("efficientnet_lite1", 1.0, 1.1, 240, 0.2),
    ("efficientnet_lite2", 1.1, 1.2, 260, 0.3),
    ("efficientnet_lite3", 1.2, 1.4, 280, 0.3),
    ("efficientnet_lite4", 1.4, 1.8, 300, 0.3),
)
# What makes a network Lite; its inputs are scaled (x - 127) / 128 like Inception's.
LITE_OPTIONS = {"act_layer": nn.ReLU6, "se_ratio": None, "fix_head_stem": True}
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3


def compound_coefficients(phi: float) -> tuple[float, float, int]:
    """The paper's rule for coefficient phi: (width, depth, resolution) for a custom-scaled model."""
    return BETA**phi, ALPHA**phi, round(B0_TABLE[0][2] * GAMMA**phi)


def scaled_table(width: float, depth: float, *, fix_head_stem: bool = False) -> list[tuple]:
    """B0_TABLE scaled: rows of (operator, kernel, stride, channels, layers).

    Channels become make_divisible(c * width, 8) and layers ceil(n * depth).
    `fix_head_stem` (Lite) keeps the stem and head channels and the first and
    last MBConv stages' layers as in B0.
    """
    rows = []
    last = len(B0_TABLE) - 1
    for i, (op, kernel, res, chs, layers) in enumerate(B0_TABLE):
        stride = res // B0_TABLE[i + 1][2] if i < last else 1
        conv = op == "Conv"  # stem and head: a single convolution, never deepened
        if not (conv and fix_head_stem):
            chs = make_divisible(chs * width, 8)
        if not (conv or fix_head_stem and i in (1, last - 1)):
            layers = math.ceil(layers * depth)
        rows.append((op, kernel, stride, chs, layers))
    return rows


class EfficientNet(nn.Module):
    """Conv stem -> MBConv stages -> 1x1 conv head -> global average pool -> dropout -> FC."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        width: float = 1.0,
        depth: float = 1.0,
        dropout: float = 0.2,
        act_layer: ActLayer = nn.SiLU,
        se_ratio: float | None = SE_RATIO,
        fix_head_stem: bool = False,
    ):
        super().__init__()
        table = scaled_table(width, depth, fix_head_stem=fix_head_stem)
        (_, k, s, stem_chs, _), *stages, (_, _, _, head_chs, _) = table
        self.stem = ConvBNAct(in_chans, stem_chs, k, s, act_layer=act_layer)
        in_chs = stem_chs
        blocks = []
        for op, kernel, stride, chs, layers in stages:
            expand = int(op.removeprefix("MBConv"))
            stage = []
            for i in range(layers):
                se = None
                if se_ratio is not None:
                    squeeze = max(1, int(in_chs * se_ratio))
                    se = partial(SqueezeExcite, squeeze_chs=squeeze, act_layer=act_layer)
                stage.append(
                    InvertedResidual(
                        in_chs,
                        chs,
                        stride=stride if i == 0 else 1,
                        expanded_chs=in_chs * expand,
                        kernel_size=kernel,
                        act_layer=act_layer,
                        se_layer=se,
                    )
                )
                in_chs = chs
            blocks.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*blocks)
        self.head = ConvBNAct(in_chs, head_chs, 1, act_layer=act_layer)
        self.num_features = head_chs
        self.classifier = ClassifierHead(head_chs, num_classes, dropout=dropout)
        _init_weights(self)
        damp_inverted_residuals(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return self.classifier(x.mean((2, 3)))


def _init_weights(model: nn.Module) -> None:
    """The reference (TF) initialisation: convs N(0, 2 / fan_out), fan_out per group; FC U(+-1/sqrt(out))."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def _builder(width: float, depth: float, default_dropout: float, lite: bool):
    options = LITE_OPTIONS if lite else {}

    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None, dropout: float = default_dropout):
        return EfficientNet(
            num_classes=num_classes, in_chans=in_chans, width=width, depth=depth, dropout=dropout, **options
        )

    return build


def _card(name: str, width: float, depth: float, res: int, dropout: float, lite: bool) -> ModelCard:
    """The official TF evaluation crops size / (size + 32) of the resized image, resized bicubic."""
    variant = name.removeprefix("efficientnet_").capitalize()
    return ModelCard(
        name=name,
        family="efficientnet_lite" if lite else "efficientnet",
        paper=LITE_PAPER if lite else PAPER,
        paper_url=LITE_URL if lite else PAPER_URL,
        input_size=(3, res, res),
        crop_pct=res / (res + 32),
        interpolation="bicubic",
        mean=LITE_MEAN if lite else IMAGENET_MEAN,
        std=LITE_STD if lite else IMAGENET_STD,
        description=f"EfficientNet-{variant}: width {width}, depth {depth}, {res}x{res}",
        config={"width": width, "depth": depth, "dropout": dropout},
    )


for _lite, _variants in ((False, EFFICIENTNET), (True, EFFICIENTNET_LITE)):
    for _name, _width, _depth, _res, _dropout in _variants:
        _build = _builder(_width, _depth, _dropout, _lite)
        register_model(_card(_name, _width, _depth, _res, _dropout, _lite))(_build)
