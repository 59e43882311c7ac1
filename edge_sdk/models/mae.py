"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al., CVPR 2022): the deployable encoder.

MAE pre-trains a ViT encoder by masking 75 % of the patches and reconstructing
them with a light decoder. Masking and the decoder are training-only: what is
deployed is the plain ViT encoder over all patches. This module registers it
with MAE's fine-tuning head (`models_vit.py` of facebookresearch/mae): the
patch tokens are averaged (global pooling, the class token is kept but unused)
and normalised by `fc_norm`, which replaces the encoder's final LayerNorm.
The positional embedding starts as MAE's fixed 2-D sin-cos table; in the
fine-tuned model it is an ordinary parameter.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .card import ModelCard
from .registry import register_model
from .vit import VARIANTS, VisionTransformer

PAPER = "Masked Autoencoders Are Scalable Vision Learners (He et al., CVPR 2022)"
PAPER_URL = "https://arxiv.org/abs/2111.06377"


def sincos_pos_embed(dim: int, grid: tuple[int, int], *, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos positional embedding, [1 (+1), H * W, dim]; half the channels per axis.

    Per axis, dim / 4 frequencies omega_k = 1 / 10000^(k / (dim / 4)); a position p gets
    (sin(p omega), cos(p omega)). The first half of the channels encodes the column, the
    second the row (the reference's meshgrid order); the class token's entry is zero.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")

    def axis(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat((angles.sin(), angles.cos()), dim=1)

    table = torch.cat((axis(cols), axis(rows)), dim=1)
    if cls_token:
        table = torch.cat((torch.zeros(1, dim, dtype=torch.float64), table), dim=0)
    return table.float().unsqueeze(0)


def _mae_vit(size: str, *, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> VisionTransformer:
    cfg = replace(VARIANTS[size], global_pool=True)
    model = VisionTransformer(cfg, img_size=img_size or (224, 224), num_classes=num_classes, in_chans=in_chans)
    if model.pos_embed.device.type != "meta":
        with torch.no_grad():
            model.pos_embed.copy_(sincos_pos_embed(cfg.dim, model.patch_embed.grid))
    return model


@register_model(
    ModelCard(
        name="mae_vit_base_patch16_224",
        family="mae",
        paper=PAPER,
        paper_url=PAPER_URL,
        input_size=(3, 224, 224),
        crop_pct=224 / 256,
        interpolation="bicubic",
        description=(
            "ViT-B/16 encoder as MAE pre-trains it (masking is training-only, so all 196 patches are encoded), "
            "with MAE's fine-tuning head: mean of the patch tokens -> LayerNorm -> linear"
        ),
        config={"dim": 768, "depth": 12, "num_heads": 12, "global_pool": True},
    )
)
def mae_vit_base_patch16_224(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> VisionTransformer:
    return _mae_vit("base", num_classes=num_classes, in_chans=in_chans, img_size=img_size)

