"""LeNet-5: Gradient-Based Learning Applied to Document Recognition (LeCun et al., Proc. IEEE 1998).

The network of Sec. II-B, layer by layer: C1 conv 5x5 (6 maps) -> S2 subsampling ->
C3 conv 5x5 (16 maps, each reading only the S2 maps of Table I) -> S4 subsampling ->
C5 conv 5x5 (120 maps, 1x1 on a 32x32 input) -> F6 (84 units) -> Euclidean RBF
output (one unit per class). Every unit up to F6 is squashed by f(a) = A tanh(S a),
A = 1.7159, S = 2/3. A subsampling unit adds its 2x2 inputs, multiplies the sum by
a trainable coefficient and adds a trainable bias (one pair per map).
That is the paper's 60,000 trainable parameters: the sparse C3 table keeps C3 at
1,516 (a full C3 would have 2,416), and the RBF prototypes are fixed, not trained.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .card import ModelCard
from .registry import register_model

PAPER = "Gradient-Based Learning Applied to Document Recognition (LeCun, Bottou, Bengio & Haffner, Proc. IEEE 1998)"
PAPER_URL = "https://doi.org/10.1109/5.726791"  # 1998: not on arXiv

# The paper scales pixels so the white background is -0.1 and black ink 1.175 (mean ~0, variance ~1):
# x' = 1.275 x - 0.1 for x in [0, 1] (ink = 1), i.e. mean 0.1 / 1.275, std 1 / 1.275.
MEAN = (0.1 / 1.275,)
STD = (1 / 1.275,)

# Table I: the S2 maps each of the 16 C3 maps reads
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
F6_UNITS = 84  # the size of the 7x12 bitmaps the RBF prototypes were drawn on


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A): f(1) = 1, f(-1) = -1, steepest at 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2 / 3))


class Subsampling(nn.Module):
    """act(coefficient * (sum of 2x2 inputs) + bias), one trainable coefficient and bias per map."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.act = ScaledTanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sums = F.avg_pool2d(x, 2) * 4
        return self.act(sums * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1))


class SparseConv(nn.Module):
    """A convolution whose output map o reads only input maps `table[o]` (LeNet-5's C3).

    Consecutive outputs with the same fan-in run as one grouped convolution over the
    maps they read, gathered by channel slices: the parameters are exactly the table's.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int):
        super().__init__()
        self.table = table
        self.runs: list[tuple[int, int]] = []  # [start, end) of output maps with one fan-in
        for o, maps in enumerate(table):
            if self.runs and len(table[self.runs[-1][0]]) == len(maps):
                self.runs[-1] = (self.runs[-1][0], o + 1)
            else:
                self.runs.append((o, o + 1))
        self.convs = nn.ModuleList(
            nn.Conv2d(len(table[a]) * (b - a), b - a, kernel_size, groups=b - a) for a, b in self.runs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for (a, b), conv in zip(self.runs, self.convs):
            maps = [c for o in range(a, b) for c in self.table[o]]
            outs.append(conv(torch.cat(_channel_slices(x, maps), 1)))
        return torch.cat(outs, 1)


def _channel_slices(x: torch.Tensor, maps: list[int]) -> list[torch.Tensor]:
    """x[:, maps] as few slices as possible (one per run of consecutive maps)."""
    slices, start = [], 0
    for i in range(1, len(maps) + 1):
        if i == len(maps) or maps[i] != maps[i - 1] + 1:
            slices.append(x[:, maps[start] : maps[i - 1] + 1])
            start = i
    return slices


class EuclideanRBF(nn.Module):
    """y_i = sum_j (x_j - w_ij)^2 with fixed +-1 prototypes w_i (a buffer, not trained).

    The paper's prototypes were drawn by hand as 7x12 bitmaps of the characters; these
    are random +-1 codes of the same size. `forward` returns -y (a logit: the
    prediction is the argmax, the closest prototype) so parity and top-1 read it as
    any classifier's.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.register_buffer("prototypes", torch.randint(0, 2, (num_classes, in_features)).float() * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.unsqueeze(1) - self.prototypes
        return -(d * d).sum(-1)


class LeNet5(nn.Module):
    def __init__(self, *, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(in_chans, 6, 5), ScaledTanh())
        self.s2 = Subsampling(6)
        self.c3 = nn.Sequential(SparseConv(C3_TABLE, 5), ScaledTanh())
        self.s4 = Subsampling(16)
        self.c5 = nn.Sequential(nn.Conv2d(16, 120, 5), ScaledTanh())
        self.f6 = nn.Sequential(nn.Linear(120, F6_UNITS), ScaledTanh())
        self.output = EuclideanRBF(F6_UNITS, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c5(self.s4(self.c3(self.s2(self.c1(x)))))
        return self.output(self.f6(x.flatten(1)))


def _init_weights(model: nn.Module) -> None:
    """Appendix C: weights and biases uniform in +-2.4 / F, F the fan-in of the unit they feed."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
        elif isinstance(m, Subsampling):
            fan_in = 4
        else:
            continue
        bound = 2.4 / fan_in
        nn.init.uniform_(m.weight, -bound, bound)
        nn.init.uniform_(m.bias, -bound, bound)


@register_model(
    ModelCard(
        name="lenet5",
        family="lenet",
        paper=PAPER,
        paper_url=PAPER_URL,
        input_size=(1, 32, 32),
        num_classes=10,
        mean=MEAN,
        std=STD,
        crop_pct=1.0,
        labels=None,
        description="LeNet-5 as in the paper: sparse C3, trainable subsampling, scaled tanh, RBF output",
    )
)
def lenet5(*, num_classes: int = 10, in_chans: int = 1, img_size=None) -> LeNet5:
    if img_size is not None and tuple(img_size) != (32, 32):
        raise ValueError(f"LeNet-5 takes 32x32 inputs (C5 is then 1x1, and F6 reads its 120 maps), got {tuple(img_size)}; "
                         "resize the images to 32x32 instead")
    return LeNet5(num_classes=num_classes, in_chans=in_chans)
