"""RedNet-26/50: Involution: Inverting the Inherence of Convolution for Visual Recognition (Li et al., CVPR 2021).

Involution inverts a convolution's two properties: its K x K kernel is specific to
each position (generated from that pixel's own features) and shared across the
channels of a group (16 channels per group). RedNet is a ResNet whose bottlenecks
use a 7x7 involution in place of the 3x3 conv, and whose stem is 3x3 conv /2 ->
3x3 involution -> 3x3 conv; configurations from the reference repository
(d-li14/involution, mmcls `rednet.py`): 26 = (1, 2, 4, 1) and 50 = (3, 4, 6, 3) bottlenecks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import ConvBNAct
from .card import ModelCard
from .registry import register_model
from .resnet import DEPTHS, ResNet

PAPER = "Involution: Inverting the Inherence of Convolution for Visual Recognition (Li et al., CVPR 2021)"
PAPER_URL = "https://arxiv.org/abs/2103.06255"

# depth: bottlenecks per stage (the reference's arch_settings)
VARIANTS = {
    26: (1, 2, 4, 1),
    50: DEPTHS[50][1],
}
KERNEL_SIZE = 7  # involution in the bottlenecks
GROUP_CHANNELS = 16  # channels sharing one kernel
REDUCTION = 4  # the kernel generator's bottleneck: C -> C / 4 -> K*K*G
DYNAMIC_SHARE = 0.05  # random init: std of the input-dependent kernel part over the static one (see init_involution_kernels)


class Involution(nn.Module):
    """Y[c, p] = sum over the K x K offsets d of H[g(c), d, p] * X[c, p + d], H = W1 relu(BN(W0 X[p])).

    The kernel H is generated per output position from the (average-pooled, when
    strided) input: a 1x1 conv C -> C/r with BN and ReLU, then a 1x1 conv `span` to
    K*K*G channels (channel g*K*K + d, as in the reference, so its weights load unchanged).

    No unfold: the input is padded once, its K*K shifted (strided) slices are stacked,
    multiplied by the kernels and summed over the offsets. It runs channels-last as
    4-D tensors [B*H, W, K*K*G, group channels], so a kernel value broadcasts over its
    group's channels without 5-D tensors and an NHWC target (TFLite) moves no data; the
    stack is offset-major, so `span` holds its output channels in the order d*G + g.
    Its state dict keeps the reference order g*K*K + d (reference weights load unchanged):
    reordering in `forward` instead left the conv weight computed in the graph, where
    int8 quantisation did not see a weighted layer.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, *, group_channels: int = GROUP_CHANNELS,
                 reduction: int = REDUCTION):
        super().__init__()
        if channels % group_channels:
            raise ValueError(f"channels ({channels}) must be a multiple of group_channels ({group_channels})")
        self.kernel_size, self.stride = kernel_size, stride
        self.groups, self.group_channels = channels // group_channels, group_channels
        self.pool = nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()
        self.reduce = ConvBNAct(channels, channels // reduction, 1, act_layer=nn.ReLU)
        self.span = nn.Conv2d(channels // reduction, kernel_size**2 * self.groups, 1)  # output channel d*G + g
        kk = kernel_size**2  # offset-major channel d*G + g holds reference channel g*K*K + d, and back:
        self._from_reference = [g * kk + d for d in range(kk) for g in range(self.groups)]
        self._to_reference = [d * self.groups + g for g in range(self.groups) for d in range(kk)]
        self.register_state_dict_post_hook(_span_in_reference_order)
        self.register_load_state_dict_pre_hook(_span_from_reference_order)

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """[B, G*K*K, H_out, W_out]: the generated kernels in the reference order, channel g*K*K + i*K + j."""
        offset_major = self.span(self.reduce(self.pool(x)))
        return offset_major[:, self._to_reference]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.shape
        k, s, g, gc = self.kernel_size, self.stride, self.groups, self.group_channels
        weight = self.span(self.reduce(self.pool(x)))  # channel (i*K + j)*G + g
        h, w = weight.shape[-2:]
        weight = weight.permute(0, 2, 3, 1).reshape(b * h, w, k * k * g, 1)
        padded = F.pad(x, (k // 2,) * 4).permute(0, 2, 3, 1)  # channels last, [B, H + K - 1, W + K - 1, C]
        patches = []
        for i in range(k):
            rows = padded[:, i : i + s * (h - 1) + 1 : s].reshape(b * h, -1, g, gc)
            patches += [rows[:, j : j + s * (w - 1) + 1 : s] for j in range(k)]  # [B*H, W, G, gc] each
        out = (torch.cat(patches, 2) * weight).reshape(b * h, w, k * k, c).sum(2)
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)


def _span_in_reference_order(module: Involution, state_dict, prefix, local_metadata) -> None:
    for name in ("span.weight", "span.bias"):
        offset_major = state_dict[prefix + name]
        state_dict[prefix + name] = offset_major[module._to_reference]


def _span_from_reference_order(module: Involution, state_dict, prefix, *_) -> None:
    for name in ("span.weight", "span.bias"):
        if prefix + name in state_dict:
            state_dict[prefix + name] = state_dict[prefix + name][module._from_reference]


def involution_bn_relu(channels: int, stride: int) -> nn.Module:
    """A RedNet bottleneck's spatial layer: 7x7 involution -> BN -> ReLU."""
    return nn.Sequential(Involution(channels, KERNEL_SIZE, stride), nn.BatchNorm2d(channels), nn.ReLU())


def rednet_stem(in_chans: int, channels: int = 64) -> nn.Sequential:
    """3x3 conv /2 (C/2) -> 3x3 involution -> BN -> ReLU -> 3x3 conv (C) -> 3x3 / 2 max pool."""
    return nn.Sequential(
        ConvBNAct(in_chans, channels // 2, 3, 2, act_layer=nn.ReLU),
        Involution(channels // 2, 3),
        nn.BatchNorm2d(channels // 2),
        nn.ReLU(),
        ConvBNAct(channels // 2, channels, 3, act_layer=nn.ReLU),
        nn.MaxPool2d(3, 2, 1),
    )


def init_involution_kernels(model: nn.Module, dynamic: float = DYNAMIC_SHARE) -> None:
    """Random kernels mostly static: `span` bias N(0, 1), its weights giving the input-dependent part ~`dynamic` of that.

    An involution multiplies its input by kernels generated from that same input: it
    is quadratic, so it doubles a relative perturbation. With Kaiming-random `span`
    weights (all of the kernel input-dependent) RedNet-50's 17 involutions amplify
    float32 rounding ~2^17 times: the random network disagrees with itself in float64
    by 6e-3, and no float target can show 1e-4 parity on it (RedNet-26: 2e-5). With a
    static part the amplification per involution is ~1 + `dynamic`; every path still
    shapes the output. A share of 0.3 was still too much off the photos' own scale: on
    the 64 augmented photos that int8 calibration reads, RedNet-26's largest output was
    3e8 (median 0.8) and RedNet-50 reached inf; at 0.05 they are within 5x of the median
    (RedNet-50: 10.5 vs 2.0). Trained weights replace all of this.
    """
    for m in model.modules():
        if isinstance(m, Involution):
            fan_in = m.span.in_channels
            # reduce's output is BN -> ReLU: E[a^2] ~ 1/2 per input channel
            nn.init.normal_(m.span.weight, 0.0, dynamic * (2.0 / fan_in) ** 0.5)
            nn.init.normal_(m.span.bias, 0.0, 1.0)


def _builder(repeats: tuple[int, ...]):
    def build(*, num_classes: int = 1000, in_chans: int = 3, img_size=None) -> ResNet:
        model = ResNet(block="bottleneck", repeats=repeats, num_classes=num_classes, in_chans=in_chans,
                       spatial_layer=involution_bn_relu, stem=rednet_stem(in_chans))
        init_involution_kernels(model)
        return model

    return build


for _depth, _repeats in VARIANTS.items():
    register_model(
        ModelCard(
            name=f"rednet{_depth}",
            family="rednet",
            paper=PAPER,
            paper_url=PAPER_URL,
            description=f"RedNet-{_depth}: ResNet bottlenecks {'-'.join(map(str, _repeats))} with 7x7 involutions",
            config={"repeats": _repeats, "kernel_size": KERNEL_SIZE, "group_channels": GROUP_CHANNELS},
        )
    )(_builder(_repeats))
