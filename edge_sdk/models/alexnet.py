"""AlexNet: ImageNet Classification with Deep Convolutional Neural Networks (Krizhevsky et al., NeurIPS 2012).

The network of the paper (Sec. 3.5, Figure 2), not the later single-GPU variant:
five convolutions (96, 256, 384, 384, 256 kernels) and three FC layers. Conv 2, 4
and 5 are split in two groups: the paper's two GPUs, each seeing only its half of
the previous layer's maps (5x5x48, 3x3x192 kernels). ReLU after every layer, local
response normalisation after conv 1 and 2, 3x3/2 overlapping max pools after
both normalisations and conv 5, dropout before FC 6 and 7.

Input is 224x224 as the paper says; conv 1 pads by 2 so that its 55x55 map (and so
every later size) is the paper's. As in VGG, the FC layers are written as the
equivalent convolutions (6x6 over the last 6x6 map, then 1x1): the same function
and parameters, and no transpose before a flatten in a deployed NHWC graph.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .card import ModelCard
from .registry import register_model
from .vgg import check_img_size

PAPER = "ImageNet Classification with Deep Convolutional Neural Networks (Krizhevsky, Sutskever & Hinton, NeurIPS 2012)"
PAPER_URL = "https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html"  # not on arXiv

# out channels, kernel, stride, padding, groups (GPUs), then LRN and max pool?
CONVS = (
    (96, 11, 4, 2, 1, True),
    (256, 5, 1, 2, 2, True),
    (384, 3, 1, 1, 1, False),
    (384, 3, 1, 1, 2, False),
    (256, 3, 1, 1, 2, False),
)
POOL_AFTER = (0, 1, 4)  # overlapping 3x3 / 2 max pools follow these convolutions
FC_WIDTH = 4096
FC_KERNEL = 6  # the last map at 224x224


class LocalResponseNorm(nn.Module):
    """b_c = a_c / (k + alpha * sum of a_j^2 over the n channels around c)^beta (paper Sec. 3.3).

    The paper's k = 2, n = 5, alpha = 1e-4, beta = 0.75, with alpha applied to the
    sum (torch's nn.LocalResponseNorm divides it by n). Written as one channel pad
    and a sum of n channel slices, which every target expresses directly.
    """

    def __init__(self, size: int = 5, *, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75):
        super().__init__()
        self.size, self.k, self.alpha, self.beta = size, k, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        squares = F.pad(x * x, (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))
        window = squares[:, :channels]
        for i in range(1, self.size):
            window = window + squares[:, i : i + channels]
        return x / (self.k + self.alpha * window) ** self.beta


class AlexNet(nn.Module):
    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        chs = in_chans
        for i, (out_chs, kernel, stride, padding, groups, lrn) in enumerate(CONVS):
            layers += [nn.Conv2d(chs, out_chs, kernel, stride, padding, groups=groups), nn.ReLU()]
            if lrn:
                layers.append(LocalResponseNorm())
            if i in POOL_AFTER:
                layers.append(nn.MaxPool2d(3, 2))
            chs = out_chs
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Conv2d(chs, FC_WIDTH, FC_KERNEL),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(FC_WIDTH, FC_WIDTH, 1),
            nn.ReLU(),
            nn.Conv2d(FC_WIDTH, num_classes, 1),
        )
        for m in self.modules():  # Kaiming: a random AlexNet stays well scaled (the paper's N(0, 0.01) does not)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).mean((2, 3))


@register_model(
    ModelCard(
        name="alexnet",
        family="alexnet",
        paper=PAPER,
        paper_url=PAPER_URL,
        description="AlexNet as in the paper: two-GPU grouped convolutions, local response normalisation",
    )
)
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, img_size=None, dropout: float = 0.5) -> AlexNet:
    check_img_size(img_size, 224, "AlexNet's first FC layer is a 6x6 convolution over its last 6x6 map")
    return AlexNet(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
