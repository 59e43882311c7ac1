"""MLP-Mixer: An all-MLP Architecture for Vision (Tolstikhin et al., NeurIPS 2021).

No attention and no convolution beyond the patch embedding: each block mixes
information across patches with an MLP applied to every channel (token mixing,
on the transposed [D, S] table), then across channels with an MLP applied to
every patch (channel mixing), both pre-norm with residuals. Because the token
MLP has one weight per patch position, a model is built for one input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import ClassifierHead, Mlp, PatchEmbed, check_input_size
from .card import ModelCard
from .registry import register_model

PAPER = "MLP-Mixer: An all-MLP Architecture for Vision (Tolstikhin et al., NeurIPS 2021)"
PAPER_URL = "https://arxiv.org/abs/2105.01601"


@dataclass(frozen=True)
class MixerConfig:
    dim: int  # hidden size C
    depth: int
    tokens_mlp_dim: int  # D_S
    channels_mlp_dim: int  # D_C
    patch_size: int = 16


# Paper, Table 1 (specifications of the Mixer architectures)
VARIANTS = {
    "s16": MixerConfig(dim=512, depth=8, tokens_mlp_dim=256, channels_mlp_dim=2048),
    "b16": MixerConfig(dim=768, depth=12, tokens_mlp_dim=384, channels_mlp_dim=3072),
}


class MixerBlock(nn.Module):
    """x + TokenMLP(LN(x)^T)^T; x + ChannelMLP(LN(x)). x is [B, S, C]."""

    def __init__(self, dim: int, num_tokens: int, tokens_mlp_dim: int, channels_mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = Mlp(num_tokens, tokens_mlp_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, channels_mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(nn.Module):
    def __init__(
        self,
        cfg: MixerConfig,
        *,
        img_size: tuple[int, int] = (224, 224),
        num_classes: int = 1000,
        in_chans: int = 3,
    ):
        super().__init__()
        self.img_size = tuple(img_size)
        self.stem = PatchEmbed(in_chans, cfg.dim, cfg.patch_size, self.img_size)
        tokens = self.stem.num_patches
        self.blocks = nn.Sequential(
            *[MixerBlock(cfg.dim, tokens, cfg.tokens_mlp_dim, cfg.channels_mlp_dim) for _ in range(cfg.depth)]
        )
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = ClassifierHead(cfg.dim, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size("MLP-Mixer", self.img_size, x)
        x = self.norm(self.blocks(self.stem(x)))
        return self.head(x.mean(dim=1))


def _init_weights(model: nn.Module) -> None:
    """Xavier-uniform linears with small normal biases (the reference's), unit LayerNorms, LeCun-normal stem."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.normal_(m.bias, std=1e-6)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            nn.init.trunc_normal_(m.weight, std=fan_in**-0.5)
            nn.init.zeros_(m.bias)


def _builder(cfg: MixerConfig):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> MlpMixer:
        return MlpMixer(cfg, img_size=img_size or (224, 224), num_classes=num_classes, in_chans=in_chans)

    return build


for _name, _cfg in VARIANTS.items():
    register_model(
        ModelCard(
            name=f"mixer_{_name}_224",
            family="mlp_mixer",
            paper=PAPER,
            paper_url=PAPER_URL,
            input_size=(3, 224, 224),
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            interpolation="bicubic",
            description=(
                f"Mixer-{_name[0].upper()}/16, 224x224: {_cfg.depth} blocks, C={_cfg.dim}, "
                f"token MLP {_cfg.tokens_mlp_dim}, channel MLP {_cfg.channels_mlp_dim}"
            ),
            config={"dim": _cfg.dim, "depth": _cfg.depth},
        )
    )(_builder(_cfg))
