"""Parameter and MAC counts, measured on the module itself.

MACs come from `torch.utils.flop_counter` (which counts 2 FLOPs per multiply-add in
matmuls and convolutions) divided by two, on meta tensors so no memory is used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Trainable and frozen parameters, each shared tensor counted once (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at `input_shape` (batch included)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(input_shape, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2
