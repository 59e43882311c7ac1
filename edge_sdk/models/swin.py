"""Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., ICCV 2021).

Self-attention runs inside non-overlapping 7x7 windows, so its cost is linear
in the image size; every second block shifts the windows by half a window so
that information crosses window borders, and 2x2 patch merging between the
four stages builds a pyramid (strides 4, 8, 16, 32) like a CNN's.

Written for deployment targets:
- the cyclic shift is slice + concat, not `torch.roll`, which some targets lack;
- windows are cut and put back with reshapes and transposes of rank 4;
- the relative position bias is gathered from its learned table with constant
  indices, and the shifted-window mask is a constant buffer: converters fold
  both into one constant per block, so no gather runs on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Attention, ClassifierHead, Mlp
from .card import ModelCard
from .registry import register_model

PAPER = "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., ICCV 2021)"
PAPER_URL = "https://arxiv.org/abs/2103.14030"

MASKED = -100.0  # the reference's value for attention between tokens of different regions (softmax -> ~0)


@dataclass(frozen=True)
class SwinConfig:
    dim: int  # C, the width of stage 1 (doubled by each patch merging)
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    patch_size: int = 4
    window_size: int = 7
    mlp_ratio: float = 4.0


# Paper, Section 3.3 (Architecture variants)
VARIANTS = {
    "tiny": SwinConfig(dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": SwinConfig(dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": SwinConfig(dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}


# ----- windows -----------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * nW, window * window, C], windows in row-major order, image by image.

    Rank-4 reshapes and one transpose (as MobileViT's unfold), so every target can express it.
    """
    b, h, w, c = x.shape
    nh, nw = h // window, w // window
    x = x.reshape(b * nh, window, nw, window * c).permute(0, 2, 1, 3)  # [B*nh, nw, window rows, window cols * C]
    return x.reshape(b * nh * nw, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, size: tuple[int, int]) -> torch.Tensor:
    """The inverse of `window_partition`: [B * nW, window * window, C] -> [B, H, W, C]."""
    h, w = size
    nw = w // window
    c = windows.shape[-1]
    x = windows.reshape(-1, nw, window, window * c).permute(0, 2, 1, 3)  # [B*nh, window rows, nw, window cols * C]
    return x.reshape(-1, h, w, c)


def cyclic_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """`torch.roll(x, (shift, shift), dims=(1, 2))` on [B, H, W, C], as two slices and a concat per axis."""
    for dim in (1, 2):
        size = x.shape[dim]
        s = shift % size
        if s:
            x = torch.cat((x.narrow(dim, size - s, s), x.narrow(dim, 0, size - s)), dim=dim)
    return x


def relative_position_index(window: int) -> torch.Tensor:
    """[N, N] indices into the (2w - 1)^2 table of relative offsets (dy, dx) between the N = w * w tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # [N, N, 2], each in [0, 2w-2]
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(size: tuple[int, int], window: int, shift: int) -> torch.Tensor:
    """[nW, N, N]: 0 where two tokens of a shifted window came from the same image region, MASKED elsewhere.

    After the cyclic shift the windows on the bottom and right edges hold pieces
    of the image that are not neighbours; labelling the 3 x 3 regions that the
    shift creates and comparing labels keeps attention inside each piece.
    """
    h, w = size
    labels = torch.zeros(1, h, w, 1)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(bands):
        for j, cols in enumerate(bands):
            labels[:, rows, cols, :] = 3 * i + j
    labels = window_partition(labels, window).squeeze(-1)  # [nW, N]
    differ = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, MASKED)


# ----- blocks -------------------------------------------------------------------------------


class WindowAttention(Attention):
    """Multi-head self-attention within each window, plus a learned bias per relative offset and head.

    `mask` ([nW, N, N], optional) is added per window: windows of one image are
    consecutive along the batch axis, so the scores are viewed as
    [B, nW * heads, N, N] and the bias and mask added as one constant of rank 4.
    """

    def __init__(self, dim: int, num_heads: int, window: int, *, qkv_bias: bool = True):
        super().__init__(dim, num_heads, qkv_bias=qkv_bias)
        self.window = window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """[heads, N, N]: a gather with constant indices from a parameter, so converters fold it."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B * nW, heads, N, N]
        bias = self.relative_position_bias()
        if mask is None:
            attn = attn + bias
        else:
            windows = mask.shape[0]
            bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).reshape(windows * self.num_heads, n, n)
            attn = (attn.reshape(-1, windows * self.num_heads, n, n) + bias).reshape(b, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.proj(out)


class SwinBlock(nn.Module):
    """x + W-MSA(LN(x)) (windows shifted by `shift` when it is non-zero); x + MLP(LN(x)). x is [B, H, W, C]."""

    def __init__(self, dim: int, num_heads: int, size: tuple[int, int], *, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        if min(size) <= window:  # the reference: a window covering the whole map is not shifted
            window, shift = min(size), 0
        if size[0] % window or size[1] % window:
            raise ValueError(f"a {size[0]}x{size[1]} Swin stage does not tile into {window}x{window} windows; "
                             f"use an input whose side / 32 is a multiple of {window}, e.g. 224")
        self.size, self.window, self.shift = size, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(size, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.shift:
            y = cyclic_shift(y, -self.shift)
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_reverse(y, self.window, self.size)
        if self.shift:
            y = cyclic_shift(y, self.shift)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (4C) -> LayerNorm -> Linear to 2C: halves the resolution, doubles the width."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the reference's order: (even row, even col), (odd, even), (even, odd), (odd, odd)
        x = torch.cat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]), dim=-1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    def __init__(
        self,
        cfg: SwinConfig,
        *,
        img_size: tuple[int, int] = (224, 224),
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        h, w = img_size
        stride = cfg.patch_size * 2 ** (len(cfg.depths) - 1)
        if h % stride or w % stride:
            raise ValueError(f"Swin needs input sides divisible by {stride}, got {h}x{w}; e.g. img_size=(224, 224)")
        self.img_size = (h, w)
        self.patch_embed = nn.Conv2d(in_chans, cfg.dim, cfg.patch_size, cfg.patch_size)
        self.patch_norm = nn.LayerNorm(cfg.dim)
        size = (h // cfg.patch_size, w // cfg.patch_size)
        dim = cfg.dim
        stages: list[nn.Module] = []
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            if i:
                stages.append(PatchMerging(dim))
                dim, size = 2 * dim, (size[0] // 2, size[1] // 2)
            for j in range(depth):
                shift = cfg.window_size // 2 if j % 2 else 0
                stages.append(SwinBlock(dim, heads, size, window=cfg.window_size, shift=shift, mlp_ratio=cfg.mlp_ratio))
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = ClassifierHead(dim, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.shape[-2], x.shape[-1]) != self.img_size:
            raise ValueError(f"this Swin was built for {self.img_size[0]}x{self.img_size[1]} inputs (its window "
                             f"masks are per size), got {x.shape[-2]}x{x.shape[-1]}; build it with that img_size")
        x = self.patch_norm(self.patch_embed(x).permute(0, 2, 3, 1))  # channels last: [B, H/4, W/4, C]
        x = self.norm(self.layers(x))
        return self.head(x.mean(dim=(1, 2)))


def _init_weights(model: nn.Module) -> None:
    """The reference's: truncated-normal (std 0.02) linears and bias tables, unit LayerNorms."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, WindowAttention):
            nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)


def _builder(cfg: SwinConfig):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> SwinTransformer:
        return SwinTransformer(cfg, img_size=img_size or (224, 224), num_classes=num_classes, in_chans=in_chans)

    return build


for _size, _cfg in VARIANTS.items():
    register_model(
        ModelCard(
            name=f"swin_{_size}_patch4_window7_224",
            family="swin",
            paper=PAPER,
            paper_url=PAPER_URL,
            input_size=(3, 224, 224),
            crop_pct=0.9,
            interpolation="bicubic",
            description=(
                f"Swin-{_size[0].upper()}: C={_cfg.dim}, depths {'-'.join(map(str, _cfg.depths))}, 4x4 patches, "
                f"7x7 windows shifted every second block, 224x224"
            ),
            config={"dim": _cfg.dim, "depths": list(_cfg.depths), "num_heads": list(_cfg.num_heads)},
        )
    )(_builder(_cfg))
