"""FNet: Mixing Tokens with Fourier Transforms (Lee-Thorp et al., NAACL 2022), as an image classifier.

FNet replaces self-attention with the real part of a 2-D discrete Fourier
transform over (tokens, channels): a mixing with no parameters. The paper is
about text; the image model follows the Keras example "Image classification
with modern MLP models" (keras.io/examples/vision/mlp_image_classification,
the architecture the seed notes walk through): 8x8 patches of a 64x64 image
(CIFAR-100 upsampled), a Dense embedding of width 256 plus a learned
positional embedding, 4 post-norm FNet blocks (x = LN(x + Re(FFT2(x)));
x = LN(x + FFN(x)), FFN 256 -> GELU -> 256, LayerNorm eps 1e-6), global average
pooling and a linear classifier over 100 classes.

The DFT is written as real matrix products: Re(F_N X F_D) = C_N X C_D - S_N X S_D
with C[k, m] = cos(2 pi k m / n) and S[k, m] = sin(2 pi k m / n), so converters
see four constant matmuls instead of a complex FFT that no mobile target has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import ClassifierHead, PatchEmbed, check_input_size, init_keras_defaults
from .card import ModelCard
from .registry import register_model

PAPER = "FNet: Mixing Tokens with Fourier Transforms (Lee-Thorp et al., NAACL 2022)"
PAPER_URL = "https://arxiv.org/abs/2105.03824"
KERAS_EXAMPLE = "https://keras.io/examples/vision/mlp_image_classification/"

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class FNetConfig:
    dim: int = 256
    depth: int = 4
    ffn_dim: int = 256
    patch_size: int = 8


def dft_matrices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, S), each [n, n]: the real and minus the imaginary part of the DFT matrix exp(-2 pi i k m / n).

    k * m is reduced modulo n in integers before the float64 trigonometry, so
    large indices lose no precision; both matrices are symmetric.
    """
    k = torch.arange(n, dtype=torch.int64)
    angle = (torch.outer(k, k) % n).double() * (2 * math.pi / n)
    return angle.cos().float(), angle.sin().float()


class FourierMixing(nn.Module):
    """Re(FFT2(x)) over the last two axes of [B, N, D] (tokens, channels), as real matmuls with constant matrices."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        for name, n in (("tokens", num_tokens), ("channels", dim)):
            cos, sin = dft_matrices(n)
            self.register_buffer(f"cos_{name}", cos, persistent=False)
            self.register_buffer(f"sin_{name}", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xt = x.transpose(1, 2)  # [B, D, N]: the token DFT is a matmul on the last axis (C, S are symmetric)
        cos_x = (xt @ self.cos_tokens).transpose(1, 2)  # C_N X
        sin_x = (xt @ self.sin_tokens).transpose(1, 2)  # S_N X
        return cos_x @ self.cos_channels - sin_x @ self.sin_channels


class FNetBlock(nn.Module):
    """Post-norm, as the paper and the Keras example: x = LN(x + Re(FFT2(x))); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, ffn_dim: int, num_tokens: int):
        super().__init__()
        self.mixing = FourierMixing(num_tokens, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.mixing(x))
        return self.norm2(x + self.ffn(x))


class FNet(nn.Module):
    def __init__(
        self,
        cfg: FNetConfig,
        *,
        img_size: tuple[int, int] = (64, 64),
        num_classes: int = 100,
        in_chans: int = 3,
    ):
        super().__init__()
        self.img_size = tuple(img_size)
        self.patch_embed = PatchEmbed(in_chans, cfg.dim, cfg.patch_size, self.img_size)
        tokens = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, cfg.dim))
        self.blocks = nn.Sequential(*[FNetBlock(cfg.dim, cfg.ffn_dim, tokens) for _ in range(cfg.depth)])
        self.head = ClassifierHead(cfg.dim, num_classes, dropout=0.2)
        init_keras_defaults(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size("FNet", self.img_size, x)
        x = self.blocks(self.patch_embed(x) + self.pos_embed)
        return self.head(x.mean(dim=1))


@register_model(
    ModelCard(
        name="fnet_p8_64",
        family="fnet",
        paper=PAPER,
        paper_url=PAPER_URL,
        input_size=(3, 64, 64),
        num_classes=100,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        crop_pct=1.0,
        labels=None,
        description=(
            "FNet for images, configured as the Keras example (" + KERAS_EXAMPLE + "): 64x64 input, 8x8 patches, "
            "width 256, 4 post-norm Fourier blocks, 100 classes (CIFAR-100); the 2-D DFT is cos / sin matmuls"
        ),
        config={"dim": 256, "depth": 4, "patch_size": 8},
    )
)
def fnet_p8_64(*, num_classes: int = 100, in_chans: int = 3, img_size=None) -> FNet:
    return FNet(FNetConfig(), img_size=img_size or (64, 64), num_classes=num_classes, in_chans=in_chans)
