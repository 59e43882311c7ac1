"""EANet: external attention (Guo et al., "Beyond Self-attention: External Attention using Two Linear Layers
for Visual Tasks", 2021) in a small ViT-style image classifier.

External attention replaces the query-key product with two small learned
memories shared by all inputs: M_k scores every token against S memory units,
and M_v reads the result back, so the cost is linear in the number of tokens.
The scores are normalised twice (the paper's double normalisation): a softmax
over the tokens, then an L1 normalisation over the memory units, which keeps
the attention map from being dominated by tokens with large features.

The classifier is the Keras example "Image classification with EANet"
(keras.io/examples/vision/eanet, the architecture the seed notes follow),
which its paper does not define: 32x32 CIFAR-100 images, 2x2 patches (256
tokens), a Dense embedding of width 64 plus a learned positional embedding,
8 pre-norm blocks (external attention with 4 x 4 = 16 heads of width 16 and
S = 16 memory units shared by the heads, MLP 64 -> GELU -> 64), global average
pooling and a linear classifier (the example's final softmax is left out:
the model returns logits like every model in the zoo).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import ClassifierHead, Mlp, PatchEmbed, check_input_size, init_keras_defaults
from .card import ModelCard
from .registry import register_model

PAPER = ("Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks "
         "(Guo et al., TPAMI 2022)")
PAPER_URL = "https://arxiv.org/abs/2105.02358"
KERAS_EXAMPLE = "https://keras.io/examples/vision/eanet/"

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class EANetConfig:
    """The Keras example's hyper-parameters, under its names."""

    embedding_dim: int = 64
    mlp_dim: int = 64
    dim_coefficient: int = 4
    num_heads: int = 4
    num_blocks: int = 8
    patch_size: int = 2


class ExternalAttention(nn.Module):
    """Linear to dim * coef, split into heads, M_k -> softmax over tokens -> L1 over memory units -> M_v -> merge -> Linear.

    With the example's numbers: 64 -> 256 channels, 16 heads of 16 channels,
    S = 16 memory units; M_k and M_v (with biases) are shared by all heads.
    """

    def __init__(self, dim: int, num_heads: int, dim_coefficient: int, *, eps: float = 1e-9):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding_dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads * dim_coefficient
        inner = dim * dim_coefficient
        self.head_dim = inner // self.num_heads
        self.eps = eps
        self.trans_dims = nn.Linear(dim, inner)
        self.memory_k = nn.Linear(self.head_dim, dim // dim_coefficient)
        self.memory_v = nn.Linear(dim // dim_coefficient, self.head_dim)
        self.proj = nn.Linear(inner, dim)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """[B, heads, N, head_dim] -> [B, heads, N, S]: the doubly normalised attention map."""
        attn = self.memory_k(x).softmax(dim=2)  # over the N tokens
        return attn / (self.eps + attn.sum(dim=-1, keepdim=True))  # L1 over the S memory units (all positive)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.trans_dims(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        x = self.memory_v(self.attention(x))
        return self.proj(x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class EABlock(nn.Module):
    """x + EA(LN(x)); x + MLP(LN(x)), LayerNorm eps 1e-5 as the example."""

    def __init__(self, cfg: EANetConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embedding_dim, eps=1e-5)
        self.attn = ExternalAttention(cfg.embedding_dim, cfg.num_heads, cfg.dim_coefficient)
        self.norm2 = nn.LayerNorm(cfg.embedding_dim, eps=1e-5)
        self.mlp = Mlp(cfg.embedding_dim, cfg.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EANet(nn.Module):
    def __init__(
        self,
        cfg: EANetConfig,
        *,
        img_size: tuple[int, int] = (32, 32),
        num_classes: int = 100,
        in_chans: int = 3,
    ):
        super().__init__()
        self.img_size = tuple(img_size)
        self.patch_embed = PatchEmbed(in_chans, cfg.embedding_dim, cfg.patch_size, self.img_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, cfg.embedding_dim))
        self.blocks = nn.Sequential(*[EABlock(cfg) for _ in range(cfg.num_blocks)])
        self.head = ClassifierHead(cfg.embedding_dim, num_classes)
        init_keras_defaults(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size("EANet", self.img_size, x)
        x = self.blocks(self.patch_embed(x) + self.pos_embed)
        return self.head(x.mean(dim=1))


@register_model(
    ModelCard(
        name="eanet_p2_32",
        family="eanet",
        paper=PAPER,
        paper_url=PAPER_URL,
        input_size=(3, 32, 32),
        num_classes=100,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        crop_pct=1.0,
        labels=None,
        description=(
            "External-attention transformer as the Keras example defines it (" + KERAS_EXAMPLE + "; the paper has "
            "no image classifier of this size): 32x32 CIFAR-100, 2x2 patches, width 64, 8 blocks, 16 heads, "
            "16 memory units, softmax over tokens then L1 over memory units"
        ),
        config={"embedding_dim": 64, "num_blocks": 8, "patch_size": 2},
    )
)
def eanet_p2_32(*, num_classes: int = 100, in_chans: int = 3, img_size=None) -> EANet:
    return EANet(EANetConfig(), img_size=img_size or (32, 32), num_classes=num_classes, in_chans=in_chans)
