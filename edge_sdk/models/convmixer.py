"""ConvMixer: Patches Are All You Need? (Trockman & Kolter, TMLR 2023).

A patch embedding (a p x p conv with stride p) and then d identical layers at one
resolution: a depthwise k x k conv mixes space (with a residual), a pointwise conv
mixes channels, each followed by the activation and then BatchNorm. Only standard
convolutions, so every target runs it; a name reads ConvMixer-h/d (width h, depth d).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ActLayer
from .card import ModelCard
from .registry import register_model

PAPER = "Patches Are All You Need? (Trockman & Kolter, TMLR 2023)"
PAPER_URL = "https://arxiv.org/abs/2201.09792"

# Table 1 (ImageNet models): width h, depth d, kernel k, patch p, activation
VARIANTS = {
    "convmixer_768_32": (768, 32, 7, 7, nn.ReLU),
    "convmixer_1536_20": (1536, 20, 9, 7, nn.GELU),
}


class ActBN(nn.Sequential):
    """conv -> activation -> BatchNorm: the paper's order (BN after the non-linearity)."""

    def __init__(self, conv: nn.Conv2d, act_layer: ActLayer):
        super().__init__(conv, act_layer(), nn.BatchNorm2d(conv.out_channels))


class ConvMixerLayer(nn.Module):
    """x + BN(act(depthwise(x))), then BN(act(pointwise(.)))."""

    def __init__(self, dim: int, kernel_size: int, act_layer: ActLayer):
        super().__init__()
        self.spatial = ActBN(nn.Conv2d(dim, dim, kernel_size, groups=dim, padding=kernel_size // 2), act_layer)
        self.channel = ActBN(nn.Conv2d(dim, dim, 1), act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel(x + self.spatial(x))


class ConvMixer(nn.Module):
    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        kernel_size: int,
        patch_size: int,
        act_layer: ActLayer = nn.GELU,
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (the depthwise conv keeps the size), got {kernel_size}")
        self.stem = ActBN(nn.Conv2d(in_chans, dim, patch_size, stride=patch_size), act_layer)
        self.layers = nn.Sequential(*[ConvMixerLayer(dim, kernel_size, act_layer) for _ in range(depth)])
        self.num_features = dim
        self.fc = nn.Linear(dim, num_classes)
        self._shift_preactivations()

    def _shift_preactivations(self) -> None:
        """Start each mixing conv's bias one standard deviation of its output above zero.

        With BatchNorm after the activation, a random ConvMixer is chaotic: each BatchNorm
        rescales the activation's output back to unit variance, which for any non-linear
        activation amplifies small input changes (by ~1.47 a layer for ReLU), so over 32
        layers one float32 rounding of the input moves ConvMixer-768/32's logits by 1.4e-3
        and PyTorch itself misses the fp32 parity threshold. Shifted by one standard deviation,
        five in six pre-activations sit on the activation's near-linear side and the network
        computes stably (7e-6 against float64), while the sixth still clips, so a converter that
        dropped or misplaced the activation is caught. Trained weights replace it.
        """
        for layer in self.layers:
            # PyTorch's default conv init has weight variance 1/(3 fan_in): the pre-activation's
            # variance is a third of its input's, which is 1 (a BatchNorm) or 2 (plus the shortcut).
            nn.init.constant_(layer.spatial[0].bias, (1 / 3) ** 0.5)
            nn.init.constant_(layer.channel[0].bias, (2 / 3) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def _builder(dim: int, depth: int, kernel_size: int, patch_size: int, act_layer: ActLayer):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> ConvMixer:
        return ConvMixer(dim=dim, depth=depth, kernel_size=kernel_size, patch_size=patch_size, act_layer=act_layer,
                         num_classes=num_classes, in_chans=in_chans)

    return build


for _name, (_dim, _depth, _k, _p, _act) in VARIANTS.items():
    register_model(
        ModelCard(
            name=_name,
            family="convmixer",
            paper=PAPER,
            paper_url=PAPER_URL,
            crop_pct=0.96,
            interpolation="bicubic",
            description=f"ConvMixer-{_dim}/{_depth}: kernel {_k}, patch {_p}, {_act.__name__}",
            config={"dim": _dim, "depth": _depth, "kernel_size": _k, "patch_size": _p},
        )
    )(_builder(_dim, _depth, _k, _p, _act))
