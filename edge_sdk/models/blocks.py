"""Building blocks shared by the zoo's families.

Written so that every target can express them: attention is matmul + softmax
(no fused scaled-dot-product op), no in-place ops on shared tensors, no
data-dependent control flow.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

ActLayer = Callable[[], nn.Module]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor`, never dropping more than 10 % (MobileNet rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def init_mobilenet_weights(model: nn.Module) -> None:
    """The MobileNet reference initialisation: Kaiming fan-out convs, unit BatchNorm, N(0, 0.01) linears."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def damp_residual_branches(branch_norms: list[nn.BatchNorm2d]) -> None:
    """Start the last BatchNorm of each of d residual branches at 1/sqrt(d) instead of 1.

    With unit BatchNorms every branch adds as much as the shortcut carries, and a deep
    random network is chaotic: ResNet-152 turns one float32 rounding of its input into a
    9e-5 relative error at its logits, so PyTorch itself misses the fp32 parity threshold
    and no file of it can be judged. Scaled by 1/sqrt(d), the bound of SkipInit (De & Smith,
    NeurIPS 2020), all branches together add about as much as the input holds and the
    network computes stably (ResNet-152: 8.2e-7), while each branch still moves the output
    far beyond any parity threshold if a converter gets it wrong. Trained weights replace it.
    """
    for norm in branch_norms:
        nn.init.constant_(norm.weight, len(branch_norms) ** -0.5)


def init_keras_defaults(model: nn.Module) -> None:
    """What the Keras examples (EANet, FNet, Perceiver) train from: Glorot-uniform kernels, zero
    biases, unit LayerNorms, and a U(-0.05, 0.05) position embedding (`model.pos_embed`)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.uniform_(model.pos_embed, -0.05, 0.05)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm -> activation; `act_layer=None` for a linear projection."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        act_layer: ActLayer | None = nn.ReLU6,
        padding: int | None = None,
    ):
        padding = (kernel_size - 1) // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_chs),
        ]
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)
        self.out_channels = out_chs


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool -> reduce (1x1) -> act -> expand (1x1) -> gate -> scale."""

    def __init__(
        self,
        channels: int,
        squeeze_chs: int,
        *,
        act_layer: ActLayer = nn.ReLU,
        gate_layer: ActLayer = nn.Sigmoid,
    ):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_chs, 1)
        self.act = act_layer()
        self.expand = nn.Conv2d(squeeze_chs, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.expand(self.act(self.reduce(s))))
        return x * s


class InvertedResidual(nn.Module):
    """MobileNetV2 / V3 / EfficientNet MBConv: expand 1x1 -> depthwise kxk -> [SE] -> project 1x1.

    The residual is added when the block keeps shape (stride 1, in == out).
    `se_layer(expanded_chs)` builds the squeeze-excite module, or None for none.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        *,
        stride: int,
        expanded_chs: int,
        kernel_size: int = 3,
        act_layer: ActLayer = nn.ReLU6,
        se_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_residual = stride == 1 and in_chs == out_chs
        layers: list[nn.Module] = []
        if expanded_chs != in_chs:
            layers.append(ConvBNAct(in_chs, expanded_chs, 1, act_layer=act_layer))
        layers.append(ConvBNAct(expanded_chs, expanded_chs, kernel_size, stride, groups=expanded_chs, act_layer=act_layer))
        if se_layer is not None:
            layers.append(se_layer(expanded_chs))
        layers.append(ConvBNAct(expanded_chs, out_chs, 1, act_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_chs

    def branch_norm(self) -> nn.BatchNorm2d:
        """The projection's BatchNorm, last of the branch (see `damp_residual_branches`)."""
        return self.block[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


def damp_inverted_residuals(model: nn.Module) -> None:
    """`damp_residual_branches` over a model's shape-keeping MBConv blocks.

    Random MobileNetV3s and EfficientNets with unit BatchNorms are chaotic: EfficientNet-Lite4 moves
    under one float16 rounding of its input as far as the fp16 parity threshold (cosine 0.9983), so
    no float16 file of it can be judged, and MobileNetV3's int8 simulation moves to cosine 0.73 under
    1e-6 jitter. Damped, Lite4 holds 0.99999. MobileNetV2 and MobileViT are stable undamped (every
    cell of the matrix passes) and keep the reference initialisation.
    """
    damp_residual_branches([b.branch_norm() for b in model.modules() if isinstance(b, InvertedResidual) and b.use_residual])


class Attention(nn.Module):
    """Multi-head self-attention as explicit matmul + softmax (expressible by every target)."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, head_dim: int | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner = self.num_heads * self.head_dim
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.proj(out)


class Mlp(nn.Module):
    """Transformer feed-forward: Linear -> act -> Linear."""

    def __init__(self, dim: int, hidden: int, *, act_layer: ActLayer = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: x + MHSA(LN(x)); x + MLP(LN(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        act_layer: ActLayer = nn.GELU,
        norm_eps: float = 1e-5,
        head_dim: int | None = None,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, head_dim=head_dim)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassifierHead(nn.Module):
    """Dropout -> Linear; dropout vanishes at capture, kept so trained weights line up."""

    def __init__(self, in_features: int, num_classes: int, *, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> linear projection, as one stride-p convolution -> [B, N, D] tokens.

    A conv with kernel = stride = p is exactly "flatten each patch, then Linear", and
    every target has a fast convolution.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int, img_size: tuple[int, int]):
        super().__init__()
        h, w = img_size
        if h % patch_size or w % patch_size:
            raise ValueError(
                f"a {h}x{w} input does not split into {patch_size}x{patch_size} patches; "
                f"use img_size with both sides divisible by {patch_size}"
            )
        self.grid = (h // patch_size, w // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def check_input_size(model_name: str, built: tuple[int, int], x: torch.Tensor) -> None:
    """Fail early when a model with per-token weights (positional embeddings, token MLPs) gets another size."""
    got = (x.shape[-2], x.shape[-1])
    if got != tuple(built):
        raise ValueError(
            f"this {model_name} was built for {built[0]}x{built[1]} inputs (it has weights per token), "
            f"got {got[0]}x{got[1]}; build it with img_size=({got[0]}, {got[1]})"
        )
