"""Observers: calibration statistics of one tensor -> the float range int8 will cover.

All three observers see the same statistics (min/max and a histogram over that
span, from one pass), so switching observer never needs another pass over the data. Every range
includes zero, so zero is exactly representable (padding, ReLU) as TFLite requires.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import DataError
from ..graph import module_path
from .batched import fast_input

BINS = 2048
HIST_SAMPLES = 1 << 20
UPDATE_BATCH = 16  # samples whose outputs are gathered before one statistics update
PERCENTILE = 99.99
_MSE_STEPS = 100


class TensorStats:
    """Running range and a histogram over it, gathered in one pass over the calibration data.

    When a batch reaches past the range seen so far, the histogram is re-binned onto the
    wider range (counts move with their bin centres), as PyTorch's HistogramObserver does.
    Histograms are taken over at most HIST_SAMPLES evenly strided elements per batch:
    plenty for choosing a range, and the min/max stay exact.
    """

    def __init__(self, histogram: bool = True):
        self.lo = 0.0
        self.hi = 0.0
        self.hist: np.ndarray | None = np.zeros(BINS) if histogram else None

    def update(self, x: torch.Tensor) -> None:
        x = flat(x.detach().float())
        x_min, x_max = (float(v) for v in torch.aminmax(x))
        if not (math.isfinite(x_min) and math.isfinite(x_max)):
            raise FloatingPointError(f"values from {x_min} to {x_max}")
        lo, hi = min(self.lo, x_min), max(self.hi, x_max)
        if self.hist is not None and hi > lo:
            if (lo, hi) != (self.lo, self.hi) and self.hist.any():
                self.hist = _rebin(self.hist, self.lo, self.hi, lo, hi)
            step = max(1, x.numel() // HIST_SAMPLES)
            self.hist += torch.histc(x[::step], BINS, lo, hi).double().numpy() * step
        self.lo, self.hi = lo, hi

    def choose(self, observer: str) -> tuple[float, float]:
        """The (lo, hi) range the named observer picks; always lo <= 0 <= hi."""
        if observer == "minmax" or self.hist is None or self.hist.sum() == 0:
            return self.lo, self.hi
        edges = np.linspace(self.lo, self.hi, BINS + 1)
        if observer == "percentile":
            return _percentile_range(self.hist, edges)
        return _mse_range(self.hist, edges)


def flat(x: torch.Tensor) -> torch.Tensor:
    """Every element as one 1-D tensor in memory order: a view, not a copy, for NCHW and channels-last tensors."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        x = x.permute(0, 2, 3, 1)
    return x.reshape(-1)


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


def _rebin(hist: np.ndarray, old_lo: float, old_hi: float, lo: float, hi: float) -> np.ndarray:
    centres = old_lo + (np.arange(BINS) + 0.5) * (old_hi - old_lo) / BINS
    index = np.clip(((centres - lo) / (hi - lo) * BINS).astype(np.int64), 0, BINS - 1)
    return np.bincount(index, weights=hist, minlength=BINS).astype(np.float64)


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
    """Run the float graph once over `samples` and gather statistics for the named tensors."""
    stats = {name: TensorStats(histogram) for name in names}
    recorder = _Recorder(gm, stats, batch_size)
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            recorder.run(fast_input(gm, torch.from_numpy(samples[i : i + batch_size])))
    recorder.flush()
    return stats


class _Recorder(torch.fx.Interpreter):
    """Interpreter that hands each watched node's output to its TensorStats.

    Outputs of small batches are gathered until UPDATE_BATCH samples (one update per tensor,
    not one per sample, for graphs fixed at batch 1); a large batch updates at once, so
    only one layer's output is held beyond what the forward pass itself keeps.
    """

    def __init__(self, gm, stats, batch_size: int):
        super().__init__(gm)
        self.stats = stats
        self.batch_size = batch_size
        self.nodes = {n.name: n for n in gm.graph.nodes if n.name in stats}
        self.pending: dict[str, list[torch.Tensor]] = {}

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.stats:
            parts = self.pending.setdefault(n.name, [])
            parts.append(flat(out.detach()))
            if len(parts) * self.batch_size >= UPDATE_BATCH:
                self._update(n.name)
        return out

    def flush(self) -> None:
        """Update every tensor with the outputs still gathered."""
        for name in list(self.pending):
            self._update(name)

    def _update(self, name: str) -> None:
        parts = self.pending.pop(name)
        try:
            self.stats[name].update(parts[0] if len(parts) == 1 else torch.cat(parts))
        except FloatingPointError as exc:
            module = module_path(self.nodes[name])
            raise DataError(
                f"calibration: tensor {name!r}{f' (module {module!r})' if module else ''} is not finite on the calibration "
                f"samples ({exc}): the float model overflows float32 on this data, so no int8 range can cover it",
                "check that the calibration images are preprocessed as the model expects (its mean / std) and that the "
                "weights are the trained ones; a model with random weights can be numerically unstable") from None
