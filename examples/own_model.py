"""Bring your own nn.Module: convert it, check it against PyTorch, and run it with the runtime API.

    python examples/own_model.py [OUT_DIR]
"""

import sys

import numpy as np
import torch
from torch import nn

import edge_sdk


class TinyClassifier(nn.Module):
    """A user's model: conv-BN-ReLU blocks, a squeeze-excite gate, a linear head."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 32, 1), nn.Sigmoid())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.body(x)
        x = x * self.gate(x)
        return self.head(x.mean((2, 3)))


def main(out_dir: str = "edge-sdk-out") -> None:
    torch.manual_seed(0)
    model = TinyClassifier().eval()
    artifact = edge_sdk.convert(model, target="onnx", example_input=torch.randn(1, 3, 128, 128), out=out_dir)
    report = edge_sdk.check_parity(model, artifact)  # real photos, resized to 128x128
    print(f"{artifact.path}: parity {'passed' if report.passed else 'FAILED'}, "
          f"cosine {report.outputs[0].min_cosine:.7f}, max abs {report.outputs[0].max_abs:.2e}")
    session = edge_sdk.runtime.load(artifact.path)
    probs = session.run(np.zeros((1, 3, 128, 128), np.float32))[0]
    print("outputs for a black image:", np.round(probs, 4).tolist())
    if not report.passed:
        sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:])
