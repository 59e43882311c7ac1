"""MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer (Mehta & Rastegari, 2022).

Channels per the paper's architecture table (Appendix A) and ml-cvnets
`cvnets/models/classification/config/mobilevit.py`. Every variant has the same
five stages after a stride-2 3x3 stem; stages 3-5 are a stride-2 MobileNetV2
block followed by a MobileViT block of width d with L transformer blocks
(4 heads, FFN 2d, SiLU), over 2x2 patches.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ClassifierHead, ConvBNAct, InvertedResidual, TransformerBlock, make_divisible
from .card import ModelCard
from .registry import register_model

PAPER = (
    "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer "
    "(Mehta & Rastegari, ICLR 2022)"
)
PAPER_URL = "https://arxiv.org/abs/2110.02178"

# n = MobileNetV2 blocks, s = stride of the first, L = transformer blocks (0: no MobileViT block)
# n, s, L
STAGES = (
    (1, 1, 0),
    (3, 2, 0),
    (1, 2, 2),
    (1, 2, 4),
    (1, 2, 3),
)

# MobileNetV2 expansion, channels (stem, stages 1-5, final 1x1), transformer width d (stages 3-5)
VARIANTS = {
    "xxs": (2, (16, 16, 24, 48, 64, 80, 320), (64, 80, 96)),
    "xs": (4, (16, 32, 48, 64, 80, 96, 384), (96, 120, 144)),
    "s": (4, (16, 32, 64, 96, 128, 160, 640), (144, 192, 240)),
}

PATCH_SIZE = 2
NUM_HEADS = 4
MLP_RATIO = 2.0


def unfold(x: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """[B, C, H, W] -> [B * P, N, C]: for each of the P pixel positions inside a patch, the sequence of N patches.

    Reshapes and permutes of rank <= 4 only (as ml-cvnets), so every target's
    transpose can express it; a feature map the patches do not tile is an error.
    """
    b, c, h, w = x.shape
    ph, pw = patch
    if h % ph or w % pw:
        raise ValueError(f"cannot split a {h}x{w} feature map into {ph}x{pw} patches: both sides must be divisible")
    nh, nw = h // ph, w // pw
    x = x.reshape(b * c * nh, ph, nw, pw).permute(0, 2, 1, 3)  # [B*C*nh, nw, ph, pw]
    x = x.reshape(b, c, nh * nw, ph * pw).permute(0, 3, 2, 1)  # [B, P, N, C]
    return x.reshape(b * ph * pw, nh * nw, c)


def fold(patches: torch.Tensor, size: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """The inverse of `unfold`: [B * P, N, C] -> [B, C, H, W] for a feature map of `size` (H, W)."""
    h, w = size
    ph, pw = patch
    nh, nw = h // ph, w // pw
    c = patches.shape[-1]
    x = patches.reshape(-1, ph * pw, nh * nw, c).permute(0, 3, 2, 1)  # [B, C, N, P]
    x = x.reshape(-1, nw, ph, pw).permute(0, 2, 1, 3)  # [B*C*nh, ph, nw, pw]
    return x.reshape(-1, c, h, w)


class MobileViTBlock(nn.Module):
    """Local 3x3 conv + 1x1 to d -> unfold -> L transformers -> fold -> 1x1 back to C -> concat input -> 3x3 fusion.

    Unfolding into patches lets each transformer see every patch at one pixel
    position, so the block models global context while the convs keep locality.
    """

    def __init__(self, chs: int, dim: int, depth: int, *, act_layer=nn.SiLU):
        super().__init__()
        self.patch = (PATCH_SIZE, PATCH_SIZE)
        self.conv_kxk = ConvBNAct(chs, chs, 3, act_layer=act_layer)
        self.conv_1x1 = nn.Conv2d(chs, dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *[TransformerBlock(dim, NUM_HEADS, mlp_ratio=MLP_RATIO, act_layer=act_layer) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = ConvBNAct(dim, chs, 1, act_layer=act_layer)
        self.conv_fusion = ConvBNAct(2 * chs, chs, 3, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_1x1(self.conv_kxk(x))
        size = (y.shape[-2], y.shape[-1])
        y = fold(self.norm(self.transformer(unfold(y, self.patch))), size, self.patch)
        return self.conv_fusion(torch.cat((x, self.conv_proj(y)), dim=1))


class MobileViT(nn.Module):
    def __init__(
        self,
        *,
        variant: str,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: tuple[int, int] | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown MobileViT variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        expansion, channels, dims = VARIANTS[variant]
        if img_size is not None:
            _check_input_size(tuple(img_size))
        act = nn.SiLU
        layers: list[nn.Module] = [ConvBNAct(in_chans, channels[0], 3, 2, act_layer=act)]
        in_chs = channels[0]
        vit_dims = iter(dims)
        for (n, s, depth), out_chs in zip(STAGES, channels[1:-1]):
            stage: list[nn.Module] = []
            for i in range(n):
                stage.append(
                    InvertedResidual(
                        in_chs,
                        out_chs,
                        stride=s if i == 0 else 1,
                        expanded_chs=make_divisible(in_chs * expansion),
                        act_layer=act,
                    )
                )
                in_chs = out_chs
            if depth:
                stage.append(MobileViTBlock(out_chs, next(vit_dims), depth, act_layer=act))
            layers.append(nn.Sequential(*stage))
        self.num_features = channels[-1]
        layers.append(ConvBNAct(in_chs, self.num_features, 1, act_layer=act))
        self.features = nn.Sequential(*layers)
        self.classifier = ClassifierHead(self.num_features, num_classes, dropout=dropout)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input_size((x.shape[-2], x.shape[-1]))
        return self.classifier(self.features(x).mean((2, 3)))


def _check_input_size(size: tuple[int, int]) -> None:
    """Fail early, naming the input size, when a MobileViT block's features would not tile into patches.

    The stem and stride-2 blocks are 3x3 convs with padding 1, so each halves a
    side rounding up; the reference interpolates odd sizes, which we refuse.
    """
    sides = [-(-side // 2) for side in size]  # the stem
    for stage, (_, stride, depth) in enumerate(STAGES, start=1):
        sides = [-(-side // stride) for side in sides]
        if depth and any(side % PATCH_SIZE for side in sides):
            raise ValueError(
                f"MobileViT cannot take a {size[0]}x{size[1]} input: stage {stage} sees {sides[0]}x{sides[1]} "
                f"features, which {PATCH_SIZE}x{PATCH_SIZE} patches do not tile; "
                f"use sides that are multiples of 64, e.g. img_size=(256, 256) or (128, 128)"
            )


def _init_weights(model: nn.Module) -> None:
    """ml-cvnets' initialisation: Kaiming fan-out convs, truncated-normal (std 0.02) linears, unit norms."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)


def _builder(variant: str):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None, **kw) -> MobileViT:
        return MobileViT(variant=variant, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kw)

    return build


for _variant in VARIANTS:
    register_model(
        ModelCard(
            name=f"mobilevit_{_variant}",
            family="mobilevit",
            paper=PAPER,
            paper_url=PAPER_URL,
            input_size=(3, 256, 256),
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            crop_pct=0.9,
            description=f"MobileViT-{_variant.upper()}: MobileNetV2 blocks + MobileViT blocks (2x2 patches), 256x256",
            config={"variant": _variant},
        )
    )(_builder(_variant))
