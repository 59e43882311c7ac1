"""Benchmark: latency of an artifact through the runtime API, timed here (never in a backend).

Inputs are prepared in the artifact's native dtype and layout once, so the
timing covers the interpreter call only; the report says so.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..runtime import Session, load
from ..runtime.session import to_native
from .host import describe_host


@dataclass
class BenchReport:
    artifact: str
    backend: str
    runtime_version: str
    threads: int | None
    warmup: int
    runs: int
    latency_ms: dict[str, float]
    throughput_per_s: float
    size_bytes: int
    load_seconds: float
    peak_rss_mb: float
    device: dict = field(default_factory=describe_host)
    input_shapes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "artifact": self.artifact,
            "backend": self.backend,
            "runtime_version": self.runtime_version,
            "threads": self.threads,
            "warmup": self.warmup,
            "runs": self.runs,
            "latency_ms": {k: round(v, 4) for k, v in self.latency_ms.items()},
            "throughput_per_s": round(self.throughput_per_s, 2),
            "size_bytes": self.size_bytes,
            "load_seconds": round(self.load_seconds, 4),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "device": self.device,
            "input_shapes": self.input_shapes,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def table(self):
        from rich.table import Table

        lat = self.latency_ms
        t = Table(
            title=f"Benchmark: {Path(self.artifact).name} ({self.backend} {self.runtime_version}, threads={self.threads or 'default'})",
            caption=f"{self.device['cpu']} · {self.device['arch']} · {self.runs} runs after {self.warmup} warm-up",
        )
        for col in ("min", "p50", "p90", "p99", "mean", "std", "inf/s", "size", "peak RSS"):
            t.add_column(col, justify="right")
        t.add_row(
            *(f"{lat[k]:.3f} ms" for k in ("min", "p50", "p90", "p99", "mean")),
            f"{lat['std']:.3f}",
            f"{self.throughput_per_s:.1f}",
            f"{self.size_bytes / 1e6:.2f} MB",
            f"{self.peak_rss_mb:.0f} MB",
        )
        return t


def benchmark(
    artifact,
    *,
    runs: int = 100,
    warmup: int = 10,
    threads: int | None = None,
    backend: str | None = None,
    seed: int = 0,
) -> BenchReport:
    """Time `runs` inferences after `warmup` on deterministic inputs; report percentiles."""
    if runs < 1 or warmup < 0:
        raise InputError(f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    t0 = time.perf_counter()
    session = artifact if isinstance(artifact, Session) else load(getattr(artifact, "path", artifact), backend=backend, threads=threads)
    load_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    natives = []
    for spec in session.inputs:
        shape = tuple(1 if d is None else d for d in spec.nchw_shape())
        natives.append(to_native(spec, rng.standard_normal(shape).astype(np.float32)))
    for _ in range(warmup):
        session.run_raw(natives)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        session.run_raw(natives)
        times[i] = (time.perf_counter_ns() - start) / 1e6
    size = _size(session.path)
    return BenchReport(
        artifact=str(session.path),
        backend=session.backend,
        runtime_version=session.runtime_version,
        threads=threads,
        warmup=warmup,
        runs=runs,
        latency_ms={
            "min": float(times.min()),
            "p50": float(np.percentile(times, 50)),
            "p90": float(np.percentile(times, 90)),
            "p99": float(np.percentile(times, 99)),
            "mean": float(times.mean()),
            "std": float(times.std()),
        },
        throughput_per_s=1000.0 / float(times.mean()),
        size_bytes=size,
        load_seconds=load_seconds,
        peak_rss_mb=_peak_rss_mb(),
        input_shapes=[list(x.shape) for x in natives],
    )


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
