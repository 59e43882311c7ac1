"""gMLP: Pay Attention to MLPs (Liu et al., NeurIPS 2021), the image models.

Each block is a channel MLP whose hidden activations are gated by a spatial
gating unit: the hidden units are split in two halves, one half is normalised
and mixed across tokens by a learned [n, n] projection (initialised near zero
with bias 1, so each block starts as a plain MLP), and multiplies the other
half. That token projection is all the spatial interaction the model has.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import ClassifierHead, PatchEmbed, check_input_size
from .card import ModelCard
from .registry import register_model

PAPER = "Pay Attention to MLPs (Liu et al., NeurIPS 2021)"
PAPER_URL = "https://arxiv.org/abs/2105.08050"


@dataclass(frozen=True)
class GMLPConfig:
    dim: int  # d_model
    ffn_dim: int  # d_ffn (split in two halves by the gating unit)
    depth: int = 30
    patch_size: int = 16


# Paper, Table 1 (gMLP-Ti / S / B for ImageNet, 16x16 patches)
VARIANTS = {
    "ti16": GMLPConfig(dim=128, ffn_dim=768),
    "s16": GMLPConfig(dim=256, ffn_dim=1536),
    "b16": GMLPConfig(dim=512, ffn_dim=3072),
}


class SpatialGatingUnit(nn.Module):
    """s(Z) = Z1 * (W LN(Z2) + b), W mixing the n tokens; [B, n, d_ffn] -> [B, n, d_ffn / 2]."""

    def __init__(self, ffn_dim: int, num_tokens: int):
        super().__init__()
        self.half = ffn_dim // 2
        self.norm = nn.LayerNorm(self.half, eps=1e-6)
        self.proj = nn.Linear(num_tokens, num_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x[..., : self.half], x[..., self.half :]  # slices, not chunk: a plain strided slice on every target
        v = self.proj(self.norm(v).transpose(1, 2)).transpose(1, 2)
        return u * v


class GMLPBlock(nn.Module):
    """x + Linear(SGU(GELU(Linear(LN(x)))))."""

    def __init__(self, dim: int, ffn_dim: int, num_tokens: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU()
        self.sgu = SpatialGatingUnit(ffn_dim, num_tokens)
        self.proj_out = nn.Linear(ffn_dim // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_out(self.sgu(self.act(self.proj_in(self.norm(x)))))


class GMLP(nn.Module):
    def __init__(
        self,
        cfg: GMLPConfig,
        *,
        img_size: tuple[int, int] = (224, 224),
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        self.img_size = tuple(img_size)
        self.stem = PatchEmbed(in_chans, cfg.dim, cfg.patch_size, self.img_size)
        tokens = self.stem.num_patches
        self.blocks = nn.Sequential(*[GMLPBlock(cfg.dim, cfg.ffn_dim, tokens) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = ClassifierHead(cfg.dim, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size("gMLP", self.img_size, x)
        x = self.norm(self.blocks(self.stem(x)))
        return self.head(x.mean(dim=1))


def _init_weights(model: nn.Module) -> None:
    """Truncated-normal (std 0.02) linears; the spatial projections near zero with bias 1 (paper, Section 2.1)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, SpatialGatingUnit):
            nn.init.normal_(m.proj.weight, std=1e-6)
            nn.init.ones_(m.proj.bias)


def _builder(cfg: GMLPConfig):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> GMLP:
        return GMLP(cfg, img_size=img_size or (224, 224), num_classes=num_classes, in_chans=in_chans)

    return build


for _name, _cfg in VARIANTS.items():
    register_model(
        ModelCard(
            name=f"gmlp_{_name}_224",
            family="gmlp",
            paper=PAPER,
            paper_url=PAPER_URL,
            input_size=(3, 224, 224),
            interpolation="bicubic",
            description=(
                f"gMLP-{_name[:-2].capitalize()}/16, 224x224: {_cfg.depth} blocks, d_model {_cfg.dim}, "
                f"d_ffn {_cfg.ffn_dim}, spatial gating over 196 tokens"
            ),
            config={"dim": _cfg.dim, "ffn_dim": _cfg.ffn_dim, "depth": _cfg.depth},
        )
    )(_builder(_cfg))
