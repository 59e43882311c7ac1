"""Observers: calibration statistics of one tensor -> the float range int8 will cover.

All three observers see the same statistics (min/max, then a histogram over that
span), so switching observer never needs another pass over the data. Every range
includes zero, so zero is exactly representable (padding, ReLU) as TFLite requires.
"""

from __future__ import annotations

import numpy as np
import torch

BINS = 2048
PERCENTILE = 99.99
_MSE_STEPS = 100


class TensorStats:
    """Running min/max (first pass) and a histogram over [min, max] (second pass)."""

    def __init__(self):
        self.lo = 0.0
        self.hi = 0.0
        self.hist: np.ndarray | None = None

    def update_range(self, x: torch.Tensor) -> None:
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def update_hist(self, x: torch.Tensor) -> None:
        if self.hi <= self.lo:
            return
        counts = torch.histc(x.detach().float().flatten(), BINS, self.lo, self.hi).double().numpy()
        self.hist = counts if self.hist is None else self.hist + counts

    def choose(self, observer: str) -> tuple[float, float]:
        """The (lo, hi) range the named observer picks; always lo <= 0 <= hi."""
        if observer == "minmax" or self.hist is None or self.hist.sum() == 0:
            return self.lo, self.hi
        edges = np.linspace(self.lo, self.hi, BINS + 1)
        if observer == "percentile":
            return _percentile_range(self.hist, edges)
        return _mse_range(self.hist, edges)


def _percentile_range(hist: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    cdf = np.cumsum(hist) / hist.sum()
    tail = (100.0 - PERCENTILE) / 100.0
    lo = edges[np.searchsorted(cdf, tail)]
    hi = edges[min(np.searchsorted(cdf, 1.0 - tail) + 1, BINS)]
    return min(float(lo), 0.0), max(float(hi), 0.0)


def _mse_range(hist: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """Shrink [lo, hi] towards zero in steps; keep the range with the least expected squared error."""
    centres = (edges[:-1] + edges[1:]) / 2
    lo, hi = edges[0], edges[-1]
    fractions = np.linspace(1.0, 0.2, _MSE_STEPS)[:, None]
    c_lo, c_hi = lo * fractions, hi * fractions
    scale = (c_hi - c_lo) / 255.0
    clipped = np.clip(centres[None, :], c_lo, c_hi)
    error = np.where(clipped == centres[None, :], scale**2 / 12.0, (centres[None, :] - clipped) ** 2)
    best = int(np.argmin((error * hist[None, :]).sum(axis=1)))
    return float(c_lo[best, 0]), float(c_hi[best, 0])


def weight_scales(weight: torch.Tensor, per_channel: bool) -> np.ndarray:
    """Symmetric int8 scales in [-127, 127] along dim 0 (per channel) or one for the tensor."""
    w = weight.detach().double()
    amax = w.abs().flatten(1).amax(dim=1) if per_channel else w.abs().max().expand(w.shape[0])
    scales = (amax / 127.0).numpy().astype(np.float32)
    scales[scales == 0] = 1.0
    return scales


def affine_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) covering [lo, hi] (widened to include zero)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = float(np.float32((hi - lo) / 255.0)) if hi > lo else 1.0
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zero_point


def collect_stats(gm: torch.fx.GraphModule, names, samples: np.ndarray, histogram: bool, batch_size: int) -> dict[str, TensorStats]:
    """Run the float graph over `samples` and gather statistics for the named tensors."""
    stats = {name: TensorStats() for name in names}
    passes = (TensorStats.update_range, TensorStats.update_hist) if histogram else (TensorStats.update_range,)
    for update in passes:
        recorder = _Recorder(gm, stats, update)
        with torch.no_grad():
            for i in range(0, len(samples), batch_size):
                recorder.run(torch.from_numpy(samples[i : i + batch_size]))
    return stats


class _Recorder(torch.fx.Interpreter):
    """Interpreter that hands each watched node's output to a TensorStats update."""

    def __init__(self, gm, stats, update):
        super().__init__(gm)
        self.stats, self.update = stats, update

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.stats:
            self.update(self.stats[n.name], out)
        return out
