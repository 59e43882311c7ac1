"""ViT: An Image is Worth 16x16 Words (Dosovitskiy et al., ICLR 2021), with DeiT's Ti / S widths.

The image is cut into 16x16 patches, each linearly embedded; a learnable class
token and positional embedding are added and a stack of pre-norm transformer
blocks (LayerNorm eps 1e-6, GELU MLP of 4d) runs over the 197 tokens. The
class token's final state, after a LayerNorm, feeds the linear classifier.
ViT-B is the paper's; Ti and S are the widths DeiT introduced (Touvron et al., 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import ClassifierHead, PatchEmbed, TransformerBlock, check_input_size
from .card import ModelCard
from .registry import register_model

PAPER = "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale (Dosovitskiy et al., ICLR 2021)"
PAPER_URL = "https://arxiv.org/abs/2010.11929"
DEIT_URL = "https://arxiv.org/abs/2012.12877"


@dataclass(frozen=True)
class ViTConfig:
    dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    mlp_ratio: float = 4.0
    global_pool: bool = False  # mean of the patch tokens + LayerNorm (MAE fine-tuning) instead of the class token


DISPLAY = {"tiny": "ViT-Ti", "small": "ViT-S", "base": "ViT-B"}

# name: config   (Ti / S: DeiT Table 1; B: ViT Table 1)
VARIANTS = {
    "tiny": ViTConfig(dim=192, depth=12, num_heads=3),
    "small": ViTConfig(dim=384, depth=12, num_heads=6),
    "base": ViTConfig(dim=768, depth=12, num_heads=12),
}


class VisionTransformer(nn.Module):
    def __init__(
        self,
        cfg: ViTConfig,
        *,
        img_size: tuple[int, int] = (224, 224),
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        self.cfg = cfg
        self.img_size = tuple(img_size)
        self.patch_embed = PatchEmbed(in_chans, cfg.dim, cfg.patch_size, self.img_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, cfg.dim))
        self.blocks = nn.Sequential(
            *[TransformerBlock(cfg.dim, cfg.num_heads, mlp_ratio=cfg.mlp_ratio, norm_eps=1e-6) for _ in range(cfg.depth)]
        )
        # Exactly one of the two norms exists, so the parameter count is the same either way.
        self.norm = nn.Identity() if cfg.global_pool else nn.LayerNorm(cfg.dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(cfg.dim, eps=1e-6) if cfg.global_pool else nn.Identity()
        self.head = ClassifierHead(cfg.dim, num_classes)
        init_vit_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, 1 + N, D]: the class token then the patch tokens, after the last block."""
        check_input_size("ViT", self.img_size, x)
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        return self.norm(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        pooled = x[:, 1:].mean(dim=1) if self.cfg.global_pool else x[:, 0]
        return self.head(self.fc_norm(pooled))


def init_vit_weights(model: VisionTransformer) -> None:
    """The reference initialisation: truncated-normal (std 0.02) linears and embeddings, unit LayerNorms."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.trunc_normal_(model.pos_embed, std=0.02)
    nn.init.trunc_normal_(model.cls_token, std=0.02)


def _builder(cfg: ViTConfig):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> VisionTransformer:
        return VisionTransformer(cfg, img_size=img_size or (224, 224), num_classes=num_classes, in_chans=in_chans)

    return build


for _size, _cfg in VARIANTS.items():
    register_model(
        ModelCard(
            name=f"vit_{_size}_patch16_224",
            family="vit",
            paper=PAPER,
            paper_url=PAPER_URL if _size == "base" else DEIT_URL,
            input_size=(3, 224, 224),
            mean=(0.5, 0.5, 0.5) if _size == "base" else (0.485, 0.456, 0.406),
            std=(0.5, 0.5, 0.5) if _size == "base" else (0.229, 0.224, 0.225),
            crop_pct=0.9,
            interpolation="bicubic",
            description=(
                f"{DISPLAY[_size]}/16, 224x224: "
                f"{_cfg.depth} blocks of width {_cfg.dim}, {_cfg.num_heads} heads, class token"
                + ("" if _size == "base" else " (DeiT's width, Touvron et al. 2021)")
            ),
            config={"dim": _cfg.dim, "depth": _cfg.depth, "num_heads": _cfg.num_heads},
        )
    )(_builder(_cfg))
