"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations (Chen et al., ICML 2020).

An encoder f (ResNet-50 without its FC layer: h = f(x), 2048-d after global
pooling) and a projection head g (an MLP with one hidden layer, z = W2 relu(W1 h),
2048 -> 2048 -> 128; Sec. 2.1 and 4.2), trained so that two augmented views of an
image get similar z (NT-Xent loss on the cosine similarity of z).

The registered model is the deployable embedding model x -> z: its card says
`task="embedding"`, `num_classes` is the embedding size and there are no labels, so
parity compares the vectors (cosine, error) without reading them as class scores.
The paper's recommended features for downstream tasks are h:
`create_model("simclr_resnet50").encoder` (its `forward_features`) converts as
any other module. Inputs are RGB in [0, 1], not mean/std normalised (the reference code's).
"""

from __future__ import annotations

import torch
from torch import nn

from .card import ModelCard
from .registry import register_model
from .resnet import DEPTHS, ResNet

PAPER = "A Simple Framework for Contrastive Learning of Visual Representations (Chen et al., ICML 2020)"
PAPER_URL = "https://arxiv.org/abs/2002.05709"

PROJECTION_DIM = 128  # the paper's default output of g (Figure 8 finds the size hardly matters)


class ProjectionHead(nn.Sequential):
    """g(h) = W2 relu(W1 h): the paper writes it without biases."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__(nn.Linear(in_features, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, out_features, bias=False))


class SimCLR(nn.Module):
    """x -> z = g(f(x)): encoder `encoder` (h via `encoder.forward_features`), projection head `head`."""

    def __init__(self, *, depth: int = 50, projection_dim: int = PROJECTION_DIM, in_chans: int = 3):
        super().__init__()
        kind, repeats = DEPTHS[depth]
        self.encoder = ResNet(block=kind, repeats=repeats, num_classes=0, in_chans=in_chans)
        width = self.encoder.num_features
        self.head = ProjectionHead(width, width, projection_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@register_model(
    ModelCard(
        name="simclr_resnet50",
        family="simclr",
        paper=PAPER,
        paper_url=PAPER_URL,
        num_classes=PROJECTION_DIM,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        labels=None,
        task="embedding",
        description=f"SimCLR embedding model: ResNet-50 encoder + projection head 2048-2048-{PROJECTION_DIM}",
        config={"depth": 50, "projection_dim": PROJECTION_DIM},
    )
)
def simclr_resnet50(*, num_classes: int = PROJECTION_DIM, in_chans: int = 3, img_size=None) -> SimCLR:
    """`num_classes` is the embedding size (the projection head's output)."""
    return SimCLR(depth=50, projection_dim=num_classes, in_chans=in_chans)
