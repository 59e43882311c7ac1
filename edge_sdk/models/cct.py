"""CCT: Compact Convolutional Transformers (Hassani et al., "Escaping the Big Data Paradigm with Compact Transformers").

Variants and configs as in the reference repository (SHI-Labs/Compact-Transformers,
`src/cct.py`). A name reads CCT-L/kxn: L transformer layers, a tokenizer of n
kxk convolutions (each conv -> ReLU -> 3x3/2 max pool), learnable positional
embedding, no class token, sequence pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import IMAGENET_MEAN, IMAGENET_STD
from .blocks import ClassifierHead, TransformerBlock
from .card import ModelCard
from .registry import register_model

PAPER = "Escaping the Big Data Paradigm with Compact Transformers (Hassani et al., 2021)"
PAPER_URL = "https://arxiv.org/abs/2104.05704"

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# The reference's cct_2 ... cct_14, by number of transformer layers L
# L: heads, mlp_ratio, embedding dim
SIZES = {
    2: (2, 1.0, 128),
    4: (2, 1.0, 128),
    6: (4, 2.0, 256),
    7: (4, 2.0, 256),
    14: (6, 3.0, 384),
}

# Registered names (the reference's learnable-embedding variants)
# L, k, n, resolution, classes
VARIANTS = (
    (2, 3, 2, 32, 10),
    (4, 3, 2, 32, 10),
    (6, 3, 1, 32, 10),
    (6, 3, 2, 32, 10),
    (7, 3, 1, 32, 10),
    (7, 3, 2, 32, 10),
    (7, 7, 2, 224, 1000),
    (14, 7, 2, 224, 1000),
    (14, 7, 2, 384, 1000),
)


class ConvTokenizer(nn.Module):
    """n x (conv kxk -> ReLU -> max pool 3x3/2), flattened to tokens: overlapping convs instead of ViT's patches.

    Stride and padding follow the reference (`_cct`): stride max(1, k // 2 - 1), padding max(1, k // 2);
    the inner convolutions have 64 channels.
    """

    def __init__(self, in_chans: int, dim: int, *, kernel_size: int, num_convs: int, hidden_chs: int = 64):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = max(1, kernel_size // 2 - 1)
        self.padding = max(1, kernel_size // 2)
        chs = [in_chans] + [hidden_chs] * (num_convs - 1) + [dim]
        self.layers = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(chs[i], chs[i + 1], kernel_size, self.stride, self.padding, bias=False),
                    nn.ReLU(),
                    nn.MaxPool2d(3, 2, 1),
                )
                for i in range(num_convs)
            ]
        )

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """The token grid for an input of `size` (H, W), by arithmetic: no forward pass, so it works on meta."""
        sides = list(size)
        for _ in self.layers:
            sides = [(s + 2 * self.padding - self.kernel_size) // self.stride + 1 for s in sides]
            sides = [(s + 2 - 3) // 2 + 1 for s in sides]
        return sides[0], sides[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(2).transpose(1, 2)


class CCTBlock(TransformerBlock):
    """TransformerBlock wired as the reference's encoder layer: x = LN(x + MHSA(LN(x))); x + MLP(x).

    The MLP and its residual start from the normalised stream, unlike plain
    pre-norm. The authors call it the result of a bad merge
    (SHI-Labs/Compact-Transformers#25), but every version of the reference code,
    and so its checkpoints, has it: kept so that their weights give their outputs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm2(x + self.attn(self.norm1(x)))
        return x + self.mlp(x)


class SeqPool(nn.Module):
    """Sequence pooling: softmax(Linear(x)) over the tokens, then the weighted sum (replaces the class token)."""

    def __init__(self, dim: int):
        super().__init__()
        self.attention = nn.Linear(dim, 1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, N, 1], summing to 1 over the N tokens."""
        return self.attention(x).softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weights(x).transpose(1, 2) @ x).flatten(1)


class CCT(nn.Module):
    def __init__(
        self,
        *,
        layers: int,
        kernel_size: int,
        num_convs: int,
        img_size: tuple[int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        num_heads, mlp_ratio, dim = SIZES[layers]
        self.img_size = tuple(img_size)
        self.tokenizer = ConvTokenizer(in_chans, dim, kernel_size=kernel_size, num_convs=num_convs)
        gh, gw = self.tokenizer.grid(self.img_size)
        self.pos_embed = nn.Parameter(torch.empty(1, gh * gw, dim))
        self.blocks = nn.Sequential(
            *[CCTBlock(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=False) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(dim)
        self.pool = SeqPool(dim)
        self.head = ClassifierHead(dim, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.shape[-2], x.shape[-1]) != self.img_size:
            raise ValueError(
                f"this CCT was built for {self.img_size[0]}x{self.img_size[1]} inputs (its positional embedding "
                f"has one entry per token), got {x.shape[-2]}x{x.shape[-1]}; build it with "
                f"img_size=({x.shape[-2]}, {x.shape[-1]})"
            )
        x = self.blocks(self.tokenizer(x) + self.pos_embed)
        return self.head(self.pool(self.norm(x)))


def _init_weights(model: CCT) -> None:
    """The reference's initialisation: Kaiming convs, truncated-normal linears (std 0.02) and embedding (std 0.2)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.trunc_normal_(model.pos_embed, std=0.2)


def _builder(layers: int, kernel_size: int, num_convs: int, resolution: int, classes: int):
    def build(*, num_classes: int = classes, in_chans: int = 3, img_size=None) -> CCT:
        return CCT(
            layers=layers,
            kernel_size=kernel_size,
            num_convs=num_convs,
            img_size=img_size or (resolution, resolution),
            num_classes=num_classes,
            in_chans=in_chans,
        )

    return build


for _layers, _k, _n, _res, _classes in VARIANTS:
    _small = _res == 32
    register_model(
        ModelCard(
            name=f"cct_{_layers}_{_k}x{_n}_{_res}",
            family="cct",
            paper=PAPER,
            paper_url=PAPER_URL,
            input_size=(3, _res, _res),
            num_classes=_classes,
            mean=CIFAR10_MEAN if _small else IMAGENET_MEAN,
            std=CIFAR10_STD if _small else IMAGENET_STD,
            crop_pct=1.0 if _small else 0.9,
            interpolation="bicubic",
            labels=None if _small else "imagenet",
            description=f"CCT-{_layers}/{_k}x{_n}, {_res}x{_res}" + (" (CIFAR-10 sized)" if _small else ""),
            config={"layers": _layers, "kernel_size": _k, "num_convs": _n},
        )
    )(_builder(_layers, _k, _n, _res, _classes))
