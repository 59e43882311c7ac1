"""Numerical comparison of a reference output with an artifact's output (numpy only).

Kept free of torch so the same comparison runs for results pulled from a device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError
from .thresholds import Thresholds


@dataclass
class OutputParity:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    max_rel: float
    min_cosine: float
    sqnr_db: float
    top1_agreement: float | None
    top5_agreement: float | None
    top1_decided: int
    samples: int
    passed: bool = False
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def _tolerated_error(ref: np.ndarray, limits: Thresholds) -> np.ndarray:
    """Per sample, the largest output error the thresholds accept.

    A sample whose top-1 / top-2 margin is below twice this could flip within
    tolerance, so its top-1 is not "decided" and not held against the artifact.
    """
    n = ref.shape[0]
    if limits.max_rel_error is not None:
        return np.full(n, limits.max_rel_error * (float(np.abs(ref).max()) or 1.0))
    rms = np.sqrt(np.mean(ref.reshape(n, -1) ** 2, axis=1))
    return rms * 10 ** (-(limits.min_sqnr_db or 0.0) / 20)


def compare(name: str, ref: np.ndarray, out: np.ndarray, limits: Thresholds, *, classification: bool = True) -> OutputParity:
    """Metrics for one output over a batch (first axis = samples), judged against `limits`.

    Top-1 / top-5 agreement are measured for class scores only: with `classification=False`
    (an embedding), the argmax of a vector means nothing and only the error metrics judge it.
    """
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    if ref.shape != out.shape:
        raise InputError(
            f"output {name!r}: reference shape {ref.shape} != artifact shape {out.shape}",
            "the artifact was converted from another model or configuration (check --model, --num-classes)",
        )
    n = ref.shape[0]
    diff = np.abs(ref - out)
    scale = float(np.abs(ref).max()) or 1.0
    flat_r, flat_o = ref.reshape(n, -1), out.reshape(n, -1)
    norm_r, norm_o = np.linalg.norm(flat_r, axis=1), np.linalg.norm(flat_o, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # an inf / nan output is named among the failures below
        # two zero vectors agree; a zero output against a non-zero one (a collapsed int8 range) does not
        cos = np.where(norm_r * norm_o > 0, np.sum(flat_r * flat_o, axis=1) / np.maximum(norm_r * norm_o, 1e-300),
                       (norm_r == norm_o).astype(np.float64))
        noise = float(np.sum((ref - out) ** 2))
        sqnr = float("inf") if noise == 0 else 10 * np.log10(max(float(np.sum(ref**2)), 1e-300) / noise)
    top1 = top5 = None
    decided = 0
    if classification and ref.ndim == 2 and ref.shape[1] >= 2:
        r1, o1 = ref.argmax(1), out.argmax(1)
        part = np.sort(ref, axis=1)
        margin = part[:, -1] - part[:, -2]
        is_decided = margin > 2 * _tolerated_error(ref, limits)
        decided = int(is_decided.sum())
        top1 = float(np.mean(r1 == o1))
        if ref.shape[1] >= 5:
            o5 = np.argsort(out, axis=1)[:, -5:]
            top5 = float(np.mean([r in row for r, row in zip(r1, o5)]))
        top1_on_decided = float(np.mean((r1 == o1)[is_decided])) if decided else 1.0
    result = OutputParity(
        name=name,
        shape=tuple(ref.shape),
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        max_rel=float(diff.max()) / scale,
        min_cosine=float(cos.min()),
        sqnr_db=sqnr,
        top1_agreement=top1,
        top5_agreement=top5,
        top1_decided=decided,
        samples=n,
    )
    not_finite = int((~np.isfinite(flat_o).all(axis=1)).sum())
    if not_finite:
        result.failures.append(f"not finite (inf or nan) on {not_finite} of {n} samples")
    if result.min_cosine < limits.min_cosine:
        result.failures.append(f"cosine {result.min_cosine:.6f} < {limits.min_cosine}")
    if limits.max_rel_error is not None and result.max_rel > limits.max_rel_error:
        result.failures.append(f"relative error {result.max_rel:.2e} > {limits.max_rel_error:.0e}")
    if limits.min_sqnr_db is not None and result.sqnr_db < limits.min_sqnr_db:
        result.failures.append(f"SQNR {result.sqnr_db:.1f} dB < {limits.min_sqnr_db} dB")
    if top1 is not None and top1_on_decided < limits.min_top1_agreement:
        result.failures.append(f"top-1 agreement {top1_on_decided:.1%} on decided samples < {limits.min_top1_agreement:.0%}")
    result.passed = not result.failures
    return result
