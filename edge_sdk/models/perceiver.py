"""Perceiver: General Perception with Iterative Attention (Jaegle et al., ICML 2021), a small image classifier.

A fixed-size latent array (N x D, learned) reads the input through
cross-attention (queries from the latents, keys and values from the M input
elements), so the cost is O(M N) instead of O(M^2); a transformer then works on
the latents alone. Cross-attention and latent transformer are applied
iteratively, sharing weights, and the averaged latents feed the classifier.

The configuration is the Keras example "Image classification with Perceiver"
(keras.io/examples/vision/perceiver_image_classification, which the seed notes
follow): 64x64 images (CIFAR-100 upsampled), 2x2 patches -> M = 1024 elements
with a Dense embedding of 256 and a learned positional embedding, N = 256
latents of D = 256, single-head cross-attention scaled by a learned scalar
(Keras `Attention(use_scale=True)`), a 4-block latent transformer with 8 heads,
FFNs 256 -> GELU -> 256, LayerNorm eps 1e-6, 2 iterations, and a classifier
head 256 -> GELU -> 100. One deliberate change for edge deployment: the latent
heads split the 256 channels (8 x 32), as in the Perceiver paper, where Keras'
`MultiHeadAttention(key_dim=256)` gives every head all 256 channels (4x the
parameters and 6.7 GMACs instead of 1.8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Mlp, PatchEmbed, TransformerBlock, check_input_size, init_keras_defaults
from .card import ModelCard
from .registry import register_model

PAPER = "Perceiver: General Perception with Iterative Attention (Jaegle et al., ICML 2021)"
PAPER_URL = "https://arxiv.org/abs/2103.03206"
KERAS_EXAMPLE = "https://keras.io/examples/vision/perceiver_image_classification/"

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class PerceiverConfig:
    num_latents: int = 256  # N
    dim: int = 256  # D, also the width of the data array's embedding
    num_heads: int = 8  # latent self-attention
    num_blocks: int = 4  # latent transformer depth
    num_iterations: int = 2  # cross-attend + latent transformer, weights shared
    patch_size: int = 2


class CrossAttention(nn.Module):
    """Latents attend to the data: LN both, single-head attention scaled by a learned scalar, residual on the
    normalised latents, LN, FFN with residual (the Keras example's wiring)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm_latents = nn.LayerNorm(dim, eps=1e-6)
        self.norm_data = nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.scale = nn.Parameter(torch.ones(()))  # Keras Attention(use_scale=True): a scalar, initialised to 1
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = Mlp(dim, dim)

    def forward(self, latents: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        latents = self.norm_latents(latents).expand(data.shape[0], -1, -1)  # [1, N, D] on the first iteration
        data = self.norm_data(data)
        scores = (self.q(latents) @ self.k(data).transpose(1, 2)) * self.scale  # [B, N, M]
        x = self.norm(scores.softmax(dim=-1) @ self.v(data) + latents)
        return x + self.ffn(x)


class Perceiver(nn.Module):
    def __init__(
        self,
        cfg: PerceiverConfig,
        *,
        img_size: tuple[int, int] = (64, 64),
        num_classes: int = 100,
        in_chans: int = 3,
    ):
        super().__init__()
        self.cfg = cfg
        self.img_size = tuple(img_size)
        self.latents = nn.Parameter(torch.zeros(1, cfg.num_latents, cfg.dim))
        self.patch_embed = PatchEmbed(in_chans, cfg.dim, cfg.patch_size, self.img_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, cfg.dim))
        self.cross_attention = CrossAttention(cfg.dim)
        self.transformer = nn.Sequential(
            *[TransformerBlock(cfg.dim, cfg.num_heads, mlp_ratio=1.0, norm_eps=1e-6) for _ in range(cfg.num_blocks)]
        )
        self.head = Mlp(cfg.dim, cfg.dim)
        self.head.fc2 = nn.Linear(cfg.dim, num_classes)  # the example's classifier: Dense(256, gelu) -> Dense(classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size("Perceiver", self.img_size, x)
        data = self.patch_embed(x) + self.pos_embed
        latents = self.latents  # the learned array itself; cross-attention broadcasts it over the batch
        for _ in range(self.cfg.num_iterations):  # the same modules each time: weights shared across iterations
            latents = self.transformer(self.cross_attention(latents, data))
        return self.head(latents.mean(dim=1))


def _init_weights(model: Perceiver) -> None:
    """Keras defaults, as the example trains with, and N(0, 0.05) latents (`random_normal`)."""
    init_keras_defaults(model)
    nn.init.normal_(model.latents, std=0.05)


@register_model(
    ModelCard(
        name="perceiver_p2_64",
        family="perceiver",
        paper=PAPER,
        paper_url=PAPER_URL,
        input_size=(3, 64, 64),
        num_classes=100,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        crop_pct=1.0,
        labels=None,
        description=(
            "Perceiver configured as the Keras example (" + KERAS_EXAMPLE + "): 64x64 input, 2x2 patches "
            "(1024 elements), 256 latents of width 256, 2 iterations of cross-attention + a 4-block latent "
            "transformer (shared weights), 100 classes; latent heads of width 32 (paper) instead of Keras' 256"
        ),
        config={"num_latents": 256, "dim": 256, "num_blocks": 4, "num_iterations": 2},
    )
)
def perceiver_p2_64(*, num_classes: int = 100, in_chans: int = 3, img_size=None) -> Perceiver:
    return Perceiver(PerceiverConfig(), img_size=img_size or (64, 64), num_classes=num_classes, in_chans=in_chans)
