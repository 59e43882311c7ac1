"""ResNet-18/34/50/101/152: Deep Residual Learning for Image Recognition (He et al., CVPR 2016).

Table 1 of the paper: a 7x7/2 conv and a 3x3/2 max pool, four stages of residual
blocks (conv2_x ... conv5_x) that halve the resolution and double the width, then
global average pooling and one FC layer. The shallow nets stack basic blocks
(two 3x3 convs), the deep ones bottlenecks (1x1 reduce -> 3x3 -> 1x1 expand x4).
A shortcut is the identity, or a 1x1 projection + BN where the shape changes
(the paper's option B). A downsampling bottleneck strides in its 3x3 conv, as the
widely used reference weights do ("ResNet v1.5"; the paper's Caffe models stride
in the first 1x1): same parameters, slightly better accuracy.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .blocks import ConvBNAct, damp_residual_branches
from .card import ModelCard
from .registry import register_model

PAPER = "Deep Residual Learning for Image Recognition (He et al., CVPR 2016)"
PAPER_URL = "https://arxiv.org/abs/1512.03385"

AttnLayer = Callable[[int], nn.Module]  # channels -> module applied to a residual branch (SENet's squeeze-excite)
SpatialLayer = Callable[[int, int], nn.Module]  # (channels, stride) -> a bottleneck's spatial layer (RedNet's involution)

# Table 1: depth -> block, blocks per stage (conv2_x, conv3_x, conv4_x, conv5_x)
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # 3x3 conv width per stage; a bottleneck outputs 4x this


class BasicBlock(nn.Module):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN [-> attn], plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_chs: int, width: int, stride: int = 1, *, attn_layer: AttnLayer | None = None, spatial_layer=None):
        super().__init__()
        if spatial_layer is not None:
            raise ValueError("spatial_layer replaces a bottleneck's 3x3 conv; basic blocks (ResNet-18/34) have none")
        out_chs = width * self.expansion
        self.conv1 = ConvBNAct(in_chs, width, 3, stride, act_layer=nn.ReLU)
        self.conv2 = ConvBNAct(width, out_chs, 3, act_layer=None)
        self.attn = attn_layer(out_chs) if attn_layer else nn.Identity()
        self.shortcut = _shortcut(in_chs, out_chs, stride)
        self.act = nn.ReLU()
        self.out_channels = out_chs

    def branch_norm(self) -> nn.BatchNorm2d:
        """The residual branch's last BatchNorm (see `damp_residual_branches`)."""
        return self.conv2[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.attn(self.conv2(self.conv1(x))) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand x4 [-> attn], plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        width: int,
        stride: int = 1,
        *,
        attn_layer: AttnLayer | None = None,
        spatial_layer: SpatialLayer | None = None,
    ):
        super().__init__()
        out_chs = width * self.expansion
        self.conv1 = ConvBNAct(in_chs, width, 1, act_layer=nn.ReLU)
        self.conv2 = spatial_layer(width, stride) if spatial_layer else ConvBNAct(width, width, 3, stride, act_layer=nn.ReLU)
        self.conv3 = ConvBNAct(width, out_chs, 1, act_layer=None)
        self.attn = attn_layer(out_chs) if attn_layer else nn.Identity()
        self.shortcut = _shortcut(in_chs, out_chs, stride)
        self.act = nn.ReLU()
        self.out_channels = out_chs

    def branch_norm(self) -> nn.BatchNorm2d:
        """The residual branch's last BatchNorm (see `damp_residual_branches`)."""
        return self.conv3[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.attn(self.conv3(self.conv2(self.conv1(x)))) + self.shortcut(x))


def _shortcut(in_chs: int, out_chs: int, stride: int) -> nn.Module:
    """Identity when the shape is kept, else a 1x1 projection + BN (option B)."""
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    return ConvBNAct(in_chs, out_chs, 1, stride, act_layer=None)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Stem -> four residual stages -> global average pool -> FC (none when `num_classes=0`)."""

    def __init__(
        self,
        *,
        block: str = "bottleneck",
        repeats: tuple[int, ...] = DEPTHS[50][1],
        num_classes: int = 1000,
        in_chans: int = 3,
        attn_layer: AttnLayer | None = None,
        spatial_layer: SpatialLayer | None = None,
        stem: nn.Module | None = None,
    ):
        """`block`: "basic" or "bottleneck"; `repeats`: blocks per stage; `stem` (-> 64 channels, 1/4 size) replaces the 7x7 one."""
        super().__init__()
        if block not in BLOCKS or len(repeats) != len(STAGE_WIDTHS):
            raise ValueError(f"block must be one of {sorted(BLOCKS)} and repeats have {len(STAGE_WIDTHS)} entries, "
                             f"got {block!r}, {repeats}; see DEPTHS for the paper's")
        block_cls = BLOCKS[block]
        self.stem = stem or nn.Sequential(ConvBNAct(in_chans, 64, 7, 2, act_layer=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        in_chs = 64
        stages = []
        for i, (width, n) in enumerate(zip(STAGE_WIDTHS, repeats)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1  # conv2_x is already downsampled by the max pool
                blocks.append(block_cls(in_chs, width, stride, attn_layer=attn_layer, spatial_layer=spatial_layer))
                in_chs = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        self.fc = nn.Linear(in_chs, num_classes) if num_classes else nn.Identity()
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation [B, num_features] (what SimCLR calls h)."""
        return self.stages(self.stem(x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def init_resnet_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) convolutions, unit BatchNorm but for each residual branch's last
    (`damp_residual_branches`); linears keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    damp_residual_branches([m.branch_norm() for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))])


def _builder(depth: int):
    kind, repeats = DEPTHS[depth]

    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> ResNet:
        return ResNet(block=kind, repeats=repeats, num_classes=num_classes, in_chans=in_chans)

    return build


for _depth, (_kind, _repeats) in DEPTHS.items():
    register_model(
        ModelCard(
            name=f"resnet{_depth}",
            family="resnet",
            paper=PAPER,
            paper_url=PAPER_URL,
            description=f"ResNet-{_depth}: {_kind} blocks {'-'.join(map(str, _repeats))}",
            config={"depth": _depth},
        )
    )(_builder(_depth))
