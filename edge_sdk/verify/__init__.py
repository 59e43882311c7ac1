"""Proof that an artifact is right and fast: parity against PyTorch, latency benchmarks.

Importing this package does not import torch (only the reference run in
`check_parity` does), so benchmarks run on a device with the light install.
"""

from .bench import BenchReport, benchmark
from .host import describe_host
from .metrics import OutputParity, compare
from .parity import ParityReport, check_parity
from .thresholds import THRESHOLDS, Thresholds, thresholds_for

__all__ = [
    "THRESHOLDS",
    "BenchReport",
    "OutputParity",
    "ParityReport",
    "Thresholds",
    "benchmark",
    "check_parity",
    "compare",
    "describe_host",
    "thresholds_for",
]
