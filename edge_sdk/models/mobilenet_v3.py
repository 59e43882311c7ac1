"""MobileNetV3: Searching for MobileNetV3 (Howard et al., 2019), Large and Small, full and "minimalistic".

The block tables are Tables 1 (Large) and 2 (Small) of the paper. Where the tables
leave a choice open, this follows the reference implementation (TF-slim
`mobilenet_v3.py` and Keras `MobileNetV3*`, whose checkpoints the paper's numbers describe):

- Width multiplier: block outputs and the last 1x1 conv scale by `make_divisible(c * width)`;
  a block expands its actual (scaled) input by the table's ratio `exp / in`; the 1x1 conv
  after the pool stays 1280 / 1024 below width 1.0.
- Small's last 1x1 conv has no squeeze-excite although Table 2 ticks SE there: the reference
  has none and the paper's 2.5 M parameters count none.
- The minimalistic variants (TF-slim `V3_*_MINIMALISTIC`) are the same tables with 3x3
  depthwise kernels, no squeeze-excite and ReLU everywhere.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import (
    ClassifierHead,
    ConvBNAct,
    InvertedResidual,
    SqueezeExcite,
    damp_inverted_residuals,
    init_mobilenet_weights,
    make_divisible,
)
from .card import ModelCard
from .registry import register_model

PAPER = "Searching for MobileNetV3 (Howard et al., ICCV 2019)"
PAPER_URL = "https://arxiv.org/abs/1905.02244"

# One row per bneck, in the papers' column order: k = depthwise kernel, exp = expansion size,
# out = output channels, se = squeeze-excite, nl = non-linearity (RE = ReLU, HS = hard-swish), s = stride.
LARGE = (  # Table 1
    # k, exp, out, se,   nl,  s
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)

SMALL = (  # Table 2
    # k, exp, out, se,   nl,  s
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)

# The rows around the bnecks, each with HS: conv2d 3x3/s2 (stem), conv2d 1x1 before the pool,
# conv2d 1x1 NBN after it. Columns: bneck rows, stem, pre-pool and post-pool channels.
ARCHS = {
    "large": (LARGE, 16, 960, 1280),
    "small": (SMALL, 16, 576, 1024),
}

ACTS = {"RE": nn.ReLU, "HS": nn.Hardswish}


def _squeeze_excite(channels: int) -> SqueezeExcite:
    """Section 5.3: squeeze to a quarter of the expansion, ReLU inside, hard-sigmoid gate."""
    return SqueezeExcite(channels, make_divisible(channels / 4), gate_layer=nn.Hardsigmoid)


def _minimalistic(blocks):
    """The TF-slim minimalistic definition of a table: 3x3 kernels, no SE, ReLU."""
    return tuple((3, exp, out, False, "RE", s) for _, exp, out, _, _, s in blocks)


class MobileNetV3(nn.Module):
    def __init__(
        self,
        *,
        arch: str = "large",
        num_classes: int = 1000,
        in_chans: int = 3,
        width_mult: float = 1.0,
        minimal: bool = False,
        dropout: float = 0.2,
    ):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        blocks, stem_chs, last_chs, pooled_chs = ARCHS[arch]
        if minimal:
            blocks = _minimalistic(blocks)
        act = nn.ReLU if minimal else nn.Hardswish  # stem, last conv and pooled conv

        stem = make_divisible(stem_chs * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_chans, stem, 3, 2, act_layer=act)]
        in_chs, table_in = stem, stem_chs
        for k, exp, out, se, nl, s in blocks:
            out_chs = make_divisible(out * width_mult)
            layers.append(
                InvertedResidual(
                    in_chs,
                    out_chs,
                    stride=s,
                    expanded_chs=make_divisible(in_chs * exp / table_in),
                    kernel_size=k,
                    act_layer=ACTS[nl],
                    se_layer=_squeeze_excite if se else None,
                )
            )
            in_chs, table_in = out_chs, out
        last = make_divisible(last_chs * width_mult)
        layers.append(ConvBNAct(in_chs, last, 1, act_layer=act))
        self.features = nn.Sequential(*layers)

        self.num_features = make_divisible(pooled_chs * max(1.0, width_mult))
        # The 1x1 conv without BatchNorm after the pool acts on a 1x1 map: a Linear, as in torchvision.
        self.head = nn.Linear(last, self.num_features)
        self.head_act = act()
        self.classifier = ClassifierHead(self.num_features, num_classes, dropout=dropout)
        init_mobilenet_weights(self)
        damp_inverted_residuals(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.head_act(self.head(x.mean((2, 3))))
        return self.classifier(x)


def _builder(arch: str, width: float, minimal: bool):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None, dropout: float = 0.2) -> MobileNetV3:
        return MobileNetV3(
            arch=arch, num_classes=num_classes, in_chans=in_chans, width_mult=width, minimal=minimal, dropout=dropout
        )

    return build


# name suffix, width multiplier, minimalistic
VARIANTS = (
    ("", 1.0, False),
    ("_075", 0.75, False),
    ("_minimal", 1.0, True),
)

for _arch in ARCHS:
    for _suffix, _width, _minimal in VARIANTS:
        register_model(
            ModelCard(
                name=f"mobilenet_v3_{_arch}{_suffix}",
                family="mobilenet_v3",
                paper=PAPER,
                paper_url=PAPER_URL,
                description=f"MobileNetV3-{_arch.capitalize()}"
                + (" minimalistic (no SE, ReLU, 3x3 kernels)" if _minimal else f", width multiplier {_width}"),
                config={"arch": _arch, "width_mult": _width, "minimal": _minimal},
            )
        )(_builder(_arch, _width, _minimal))
