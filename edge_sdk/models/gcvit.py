"""GC ViT: Global Context Vision Transformers (Hatamizadeh et al., ICML 2023; arXiv 2022).

A four-stage pyramid (strides 4, 8, 16, 32) whose blocks alternate local
window attention (Swin's, without shifting) with global-context attention:
the keys and values still come from each window, but the queries are the
same for every window, a "global query" made once per stage by downsampling
the whole feature map to one window's size with Fused-MBConv-like blocks
(depthwise 3x3 -> GELU -> squeeze-excite -> 1x1, residual, 3x3/2 max pool).
So every window sees image-wide context without masks or shifts. Convolutional
downsampling between stages (and in the stem) gives the inductive bias of a CNN.

Configuration per the reference (NVlabs/GCVit `models/gc_vit.py`): base width
64, mlp ratio 3, windows (7, 7, 14, 7), heads (2, 4, 8, 16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import ClassifierHead, Mlp
from .card import ModelCard
from .registry import register_model
from .swin import WindowAttention, relative_position_index, window_partition, window_reverse

PAPER = "Global Context Vision Transformers (Hatamizadeh et al., ICML 2023)"
PAPER_URL = "https://arxiv.org/abs/2206.09959"


@dataclass(frozen=True)
class GCViTConfig:
    depths: tuple[int, ...]
    dim: int = 64
    num_heads: tuple[int, ...] = (2, 4, 8, 16)
    windows: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 3.0


# Paper, Table 1 / the reference's gc_vit_xxtiny, gc_vit_xtiny, gc_vit_tiny
VARIANTS = {
    "xxtiny": ("XXT", GCViTConfig(depths=(2, 2, 6, 2))),
    "xtiny": ("XT", GCViTConfig(depths=(3, 4, 6, 5))),
    "tiny": ("T", GCViTConfig(depths=(3, 4, 19, 5))),
}


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class SqueezeExcite(nn.Module):
    """Global mean -> Linear (1/4, no bias) -> GELU -> Linear (no bias) -> sigmoid -> scale; on NCHW."""

    def __init__(self, dim: int, expansion: float = 0.25):
        super().__init__()
        hidden = int(dim * expansion)
        self.fc = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


def _mbconv(dim: int) -> nn.Sequential:
    """Depthwise 3x3 -> GELU -> squeeze-excite -> 1x1: the residual branch of the reference's Fused-MBConv."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False),
        nn.GELU(),
        SqueezeExcite(dim),
        nn.Conv2d(dim, dim, 1, bias=False),
    )


class ReduceSize(nn.Module):
    """LN -> x + MBConv(x) -> 3x3/2 conv (to 2C, or C with keep_dim) -> LN; [B, H, W, C] in and out."""

    def __init__(self, dim: int, *, keep_dim: bool = False):
        super().__init__()
        out = dim if keep_dim else 2 * dim
        self.norm1 = nn.LayerNorm(dim)
        self.conv = _mbconv(dim)
        self.reduction = nn.Conv2d(dim, out, 3, 2, 1, bias=False)
        self.norm2 = nn.LayerNorm(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _nchw(self.norm1(x))
        x = x + self.conv(x)
        return self.norm2(_nhwc(self.reduction(x)))


class FeatExtract(nn.Module):
    """x + MBConv(x), then a 3x3/2 max pool unless `keep_dim`; on NCHW."""

    def __init__(self, dim: int, *, keep_dim: bool):
        super().__init__()
        self.conv = _mbconv(dim)
        self.pool = nn.Identity() if keep_dim else nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x + self.conv(x))


class GlobalQueryGen(nn.Module):
    """The stage's feature map, downsampled by FeatExtracts to one window: [B, H, W, C] -> [B, window^2, C]."""

    def __init__(self, dim: int, size: int, window: int):
        super().__init__()
        steps = math.log2(size / window)
        if steps != int(steps):
            raise ValueError(f"GC ViT needs each stage's side to be a power-of-two multiple of its window: "
                             f"{size} and {window} are not; use img_size=(224, 224)")
        steps = int(steps)
        self.to_q_global = nn.Sequential(
            *([FeatExtract(dim, keep_dim=False) for _ in range(steps)] or [FeatExtract(dim, keep_dim=True)])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _nhwc(self.to_q_global(_nchw(x))).flatten(1, 2)


class GlobalWindowAttention(nn.Module):
    """Window attention whose queries are the stage's global query (shared by every window), keys / values local.

    The global query is split into heads as it is; only keys and values are
    projected (one Linear to 2C), plus the relative position bias of the window.
    """

    def __init__(self, dim: int, num_heads: int, window: int, *, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window = window
        self.qkv = nn.Linear(dim, 2 * dim, bias=qkv_bias)  # the reference's name for the key / value projection
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    relative_position_bias = WindowAttention.relative_position_bias

    def forward(self, x: torch.Tensor, q_global: torch.Tensor) -> torch.Tensor:
        bw, n, c = x.shape  # B * nW windows
        b = q_global.shape[0]
        kv = self.qkv(x).reshape(bw, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        # the same query for each of the image's windows: broadcast, then split into heads
        q = q_global.reshape(b, 1, n * c).expand(b, bw // b, n * c)
        q = q.reshape(bw, n, self.num_heads, self.head_dim).transpose(1, 2)
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias()
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class GCViTBlock(nn.Module):
    """x + Attention(LN(x)) over windows (local or global-query); x + MLP(LN(x)). x is [B, H, W, C]."""

    def __init__(self, dim: int, num_heads: int, size: int, *, window: int, mlp_ratio: float, global_query: bool):
        super().__init__()
        self.size, self.window, self.global_query = (size, size), window, global_query
        self.norm1 = nn.LayerNorm(dim)
        self.attn = (GlobalWindowAttention if global_query else WindowAttention)(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, q_global: torch.Tensor) -> torch.Tensor:
        windows = window_partition(self.norm1(x), self.window)
        y = self.attn(windows, q_global) if self.global_query else self.attn(windows)
        x = x + window_reverse(y, self.window, self.size)
        return x + self.mlp(self.norm2(x))


class GCViTStage(nn.Module):
    """Global query from the stage input; blocks alternating local (even) and global (odd); then ReduceSize."""

    def __init__(self, dim: int, depth: int, num_heads: int, size: int, *, window: int, mlp_ratio: float,
                 downsample: bool):
        super().__init__()
        if size % window:
            raise ValueError(f"a {size}x{size} GC ViT stage does not tile into {window}x{window} windows; "
                             f"use img_size=(224, 224)")
        self.q_global_gen = GlobalQueryGen(dim, size, window)
        self.blocks = nn.ModuleList(
            GCViTBlock(dim, num_heads, size, window=window, mlp_ratio=mlp_ratio, global_query=i % 2 == 1)
            for i in range(depth)
        )
        self.downsample = ReduceSize(dim) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q_global = self.q_global_gen(x)
        for block in self.blocks:
            x = block(x, q_global)
        return self.downsample(x)


class GCViT(nn.Module):
    def __init__(
        self,
        cfg: GCViTConfig,
        *,
        img_size: tuple[int, int] = (224, 224),
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        if img_size[0] != img_size[1]:
            raise ValueError(f"GC ViT takes square inputs (its global queries are one square window), got {img_size}")
        self.img_size = tuple(img_size)
        self.stem = nn.Conv2d(in_chans, cfg.dim, 3, 2, 1)
        self.stem_reduce = ReduceSize(cfg.dim, keep_dim=True)
        size, dim = img_size[0] // 4, cfg.dim
        stages = []
        for i, (depth, heads, window) in enumerate(zip(cfg.depths, cfg.num_heads, cfg.windows)):
            last = i == len(cfg.depths) - 1
            stages.append(GCViTStage(dim, depth, heads, size, window=window, mlp_ratio=cfg.mlp_ratio,
                                     downsample=not last))
            if not last:
                dim, size = 2 * dim, size // 2
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = ClassifierHead(dim, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.shape[-2], x.shape[-1]) != self.img_size:
            raise ValueError(f"this GC ViT was built for {self.img_size[0]}x{self.img_size[1]} inputs, got "
                             f"{x.shape[-2]}x{x.shape[-1]}; build it with that img_size")
        x = self.stem_reduce(_nhwc(self.stem(x)))
        x = self.norm(self.stages(x))
        return self.head(x.mean(dim=(1, 2)))


def _init_weights(model: nn.Module) -> None:
    """The reference's: truncated-normal (std 0.02) linears and bias tables, unit LayerNorms, PyTorch's default convs."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (WindowAttention, GlobalWindowAttention)):
            nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)


def _builder(cfg: GCViTConfig):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> GCViT:
        return GCViT(cfg, img_size=img_size or (224, 224), num_classes=num_classes, in_chans=in_chans)

    return build


for _name, (_short, _cfg) in VARIANTS.items():
    register_model(
        ModelCard(
            name=f"gcvit_{_name}",
            family="gcvit",
            paper=PAPER,
            paper_url=PAPER_URL,
            input_size=(3, 224, 224),
            interpolation="bicubic",
            description=(
                f"GC ViT-{_short}, 224x224: depths {'-'.join(map(str, _cfg.depths))}, width 64, local and "
                f"global-query window attention alternating"
            ),
            config={"depths": list(_cfg.depths)},
        )
    )(_builder(_cfg))
