"""Benchmark: latency of an artifact through the runtime API, timed here (never in a backend).

The protocol is built so that device numbers reproduce: optional cool-down until
the SoC is back under a temperature, warm-up runs, then N timed runs or a time
budget; governor, clock, temperature and throttle counters are read before and
after, and a throttled run says so. A sustained mode runs for minutes and
reports the drift between its first and last time windows. The median comes
with a distribution-free 95 % confidence interval (order statistics), so two
reports can be told apart from noise.

Inputs are prepared in the artifact's native dtype and layout once, so the
timing covers the interpreter call only. This module runs on devices too: it
imports numpy and the runtime, never torch.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from statistics import NormalDist

import numpy as np

from ..errors import InputError, require
from ..runtime import Session, load
from ..runtime.session import to_native
from .host import describe_host, device_state, temperature_c

DRIFT_WARNING_PCT = 10.0  # sustained runs whose last window is this much slower than the first get a warning
COOLDOWN_POLL_S = 2.0


@dataclass
class BenchReport:
    artifact: str
    backend: str
    runtime_version: str
    threads: int | None
    warmup: int
    runs: int
    latency_ms: dict[str, float | None]
    throughput_per_s: float
    size_bytes: int
    load_seconds: float
    peak_rss_mb: float | None
    device: dict = field(default_factory=describe_host)
    input_shapes: list = field(default_factory=list)
    median_ci_ms: list[float] | None = None  # 95 % confidence interval of p50 (order statistics)
    first_run_ms: float | None = None
    state_before: dict = field(default_factory=dict)
    state_after: dict = field(default_factory=dict)
    timeline: list[dict] = field(default_factory=list)  # sustained mode: one entry per time window
    drift_pct: float | None = None
    cooldown_seconds: float = 0.0
    seconds: float = 0.0  # wall time of the timed phase
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)
    tool: str = "edge-sdk"  # who timed it: edge-sdk (this module) or benchmark_model (TFLite's tool)
    target: str = "local"

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["latency_ms"] = {k: None if v is None else round(v, 4) for k, v in self.latency_ms.items()}
        d["median_ci_ms"] = None if self.median_ci_ms is None else [round(v, 4) for v in self.median_ci_ms]
        d["throughput_per_s"] = round(self.throughput_per_s, 2)
        d["load_seconds"] = round(self.load_seconds, 4)
        d["peak_rss_mb"] = None if self.peak_rss_mb is None else round(self.peak_rss_mb, 1)
        d["samples_ms"] = [round(v, 4) for v in self.samples_ms]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BenchReport":
        """Rebuild a report from `to_dict()` output (e.g. one a device wrote), ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @property
    def throttled(self) -> bool:
        return any(w.startswith("throttl") for w in self.warnings)

    def table(self):
        from rich.table import Table

        lat = self.latency_ms
        dev = self.device
        where = " · ".join(str(v) for v in (dev.get("board"), dev.get("cpu"), dev.get("arch")) if v)
        ci = f"; p50 95% CI {self.median_ci_ms[0]:.3f}-{self.median_ci_ms[1]:.3f} ms" if self.median_ci_ms else ""
        t = Table(
            title=f"Benchmark: {Path(self.artifact).name} ({self.backend} {self.runtime_version}, threads={self.threads or 'default'})",
            caption=f"{self.target}: {where} · {self.runs} runs after {self.warmup} warm-up ({self.tool}){ci}",
        )
        for col in ("min", "p50", "p90", "p99", "mean", "std", "inf/s", "size", "peak RSS"):
            t.add_column(col, justify="right")
        t.add_row(
            *(_ms(lat.get(k)) for k in ("min", "p50", "p90", "p99", "mean")),
            "-" if lat.get("std") is None else f"{lat['std']:.3f}",
            f"{self.throughput_per_s:.1f}",
            f"{self.size_bytes / 1e6:.2f} MB",
            "-" if self.peak_rss_mb is None else f"{self.peak_rss_mb:.0f} MB",
        )
        return t

    def summary_lines(self) -> list[str]:
        """Thermal state, drift and warnings as lines to print under the table."""
        lines = []
        before, after = self.state_before, self.state_after
        if before or after:
            lines.append(f"governor {before.get('governor') or 'unknown'} -> {after.get('governor') or 'unknown'}; "
                         f"temperature {_temp(before.get('temperature_c'))} -> {_temp(after.get('temperature_c'))}"
                         + (f"; cooled down {self.cooldown_seconds:.0f} s first" if self.cooldown_seconds else ""))
        if self.drift_pct is not None:
            lines.append(f"sustained {self.seconds:.0f} s in {len(self.timeline)} windows: p50 drift {self.drift_pct:+.1f} % "
                         f"(first {self.timeline[0]['p50']:.3f} ms, last {self.timeline[-1]['p50']:.3f} ms)")
        lines += [f"[yellow]warning:[/yellow] {w}" for w in self.warnings]
        lines += [f"[dim]note:[/dim] {n}" for n in self.notes]
        return lines


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f} ms"


def _temp(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.1f} °C"


def latency_stats(samples_ms) -> dict[str, float]:
    """min / p50 / p90 / p99 / mean / std / max of the timed runs, in ms."""
    times = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {
        "min": float(times.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(times.mean()),
        "std": float(times.std()),
        "max": float(times.max()),
    }


def median_ci(samples_ms, confidence: float = 0.95) -> list[float] | None:
    """A distribution-free confidence interval for the median: order statistics x(j) and x(n-j+1).

    The number of samples below the true median is Binomial(n, 1/2), so
    [x(j), x(n-j+1)] covers it with probability 1 - 2 P(B <= j-1); j is the largest
    rank keeping that >= `confidence` (exact binomial up to n = 1000, the normal
    approximation above). Latency distributions are skewed and multi-modal, so no
    normality is assumed. None when n is too small (n < 6 at 95 %).
    """
    x = np.sort(np.asarray(samples_ms, dtype=np.float64))
    n = len(x)
    tail = (1.0 - confidence) / 2.0
    if n <= 1000:
        total, cdf, pmf, j = 2**n, 0, 1, 0  # exact integers: pmf = C(n, i)
        for i in range(n):
            cdf += pmf
            if cdf / total > tail:
                break
            j = i + 1  # P(B <= i) <= tail, so x(i+1) may be the lower bound
            pmf = pmf * (n - i) // (i + 1)
    else:
        z = NormalDist().inv_cdf(1.0 - tail)
        j = int(math.floor(n / 2.0 - z * math.sqrt(n) / 2.0))
    if j < 1:
        return None
    return [float(x[j - 1]), float(x[n - j])]



def check_benchmarkable(artifact, backend: str | None = None) -> None:
    """Refuse what would time the wrong thing: off macOS a CoreML file runs in our reference
    interpreter, which proves its numbers but says nothing about its speed on Apple hardware."""
    if isinstance(artifact, Session):
        backend = artifact.backend
    elif backend is None and str(artifact).rstrip("/").endswith(".mlpackage"):
        backend = "coreml-reference" if sys.platform != "darwin" else "coreml"
    if backend in ("coreml-reference", "coreml") and sys.platform != "darwin":
        raise InputError(f"latency of {Path(str(getattr(artifact, 'path', artifact))).name} needs a Mac: CoreML runs only on "
                         "Apple's runtime, and off macOS edge-sdk has only its reference interpreter, which proves the "
                         "numbers, not the speed",
                         "run `edge-sdk bench` on a Mac (or an iPhone through Xcode); here, `edge-sdk verify` checks parity")


def benchmark(
    artifact,
    *,
    runs: int | None = None,
    warmup: int = 10,
    threads: int | None = None,
    backend: str | None = None,
    seed: int = 0,
    duration_s: float | None = None,
    cooldown_c: float | None = None,
    cooldown_timeout_s: float = 300.0,
    sustained_s: float | None = None,
    window_s: float | None = None,
) -> BenchReport:
    """Time inferences on deterministic inputs and report percentiles, the median's CI and the thermal state.

    `runs` timed runs (default 100), or as many as fit in `duration_s` (then `runs`,
    if also given, caps them). `cooldown_c` waits (up to `cooldown_timeout_s`) until
    the hottest sensor reads at most that many °C before warming up. `sustained_s`
    runs that long and reports per-window medians (`window_s`, default a tenth of it)
    and the drift from the first to the last window.
    """
    if sustained_s is not None:
        if sustained_s <= 0:
            raise InputError(f"sustained_s must be > 0 (got {sustained_s})")
        duration_s = sustained_s
        window_s = window_s or max(sustained_s / 10.0, 0.5)
    if duration_s is not None and duration_s <= 0:
        raise InputError(f"duration_s must be > 0 (got {duration_s})", "give a time budget in seconds, or runs=N")
    if runs is None and duration_s is None:
        runs = 100
    if (runs is not None and runs < 1) or warmup < 0:
        raise InputError(f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    check_benchmarkable(getattr(artifact, "path", artifact), backend)
    t0 = time.perf_counter()
    session = artifact if isinstance(artifact, Session) else load(getattr(artifact, "path", artifact), backend=backend, threads=threads)
    load_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    natives = []
    for spec in session.inputs:
        shape = tuple(1 if d is None else d for d in spec.nchw_shape())
        natives.append(to_native(spec, rng.standard_normal(shape).astype(np.float32)))

    warnings, notes = [], []
    cooled = _cool_down(cooldown_c, cooldown_timeout_s, warnings, notes) if cooldown_c is not None else 0.0
    before = device_state()
    first_run_ms = None
    for i in range(warmup):
        start = time.perf_counter_ns()
        session.run_raw(natives)
        if i == 0:
            first_run_ms = (time.perf_counter_ns() - start) / 1e6
    times, stamps, timeline = _timed_runs(session, natives, runs, duration_s, window_s)
    seconds = stamps[-1] if stamps else 0.0
    after = device_state()

    drift = drift_pct(timeline, warnings)
    warnings += throttle_warnings(before, after)
    notes += governor_notes(before)
    stats = latency_stats(times)
    return BenchReport(
        artifact=str(session.path),
        backend=session.backend,
        runtime_version=session.runtime_version,
        threads=threads,
        warmup=warmup,
        runs=len(times),
        latency_ms=stats,
        throughput_per_s=1000.0 / stats["mean"],
        size_bytes=_size(session.path),
        load_seconds=load_seconds,
        peak_rss_mb=_peak_rss_mb(),
        input_shapes=[list(x.shape) for x in natives],
        median_ci_ms=median_ci(times),
        first_run_ms=first_run_ms,
        state_before=before,
        state_after=after,
        timeline=timeline,
        drift_pct=drift,
        cooldown_seconds=cooled,
        seconds=seconds,
        warnings=warnings,
        notes=notes,
        samples_ms=[float(t) for t in times],
    )


def _timed_runs(session: Session, natives, runs: int | None, duration_s: float | None, window_s: float | None):
    """Run until `runs` or `duration_s` is reached; per-run latency (ms), end times (s) and windows."""
    times: list[float] = []
    stamps: list[float] = []
    timeline: list[dict] = []
    window_start, window_from = 0.0, 0
    begin = time.perf_counter()
    while True:
        start = time.perf_counter_ns()
        session.run_raw(natives)
        times.append((time.perf_counter_ns() - start) / 1e6)
        now = time.perf_counter() - begin
        stamps.append(now)
        if window_s is not None and now - window_start >= window_s:
            timeline.append(_window(window_start, times[window_from:]))
            window_start, window_from = now, len(times)
        if (runs is not None and len(times) >= runs) or (duration_s is not None and now >= duration_s):
            break
    if window_s is not None and window_from < len(times) and (not timeline or len(times) - window_from >= 3):
        timeline.append(_window(window_start, times[window_from:]))
    return times, stamps, timeline


def _window(start_s: float, times: list[float]) -> dict:
    return {"start_s": round(start_s, 3), "runs": len(times), "p50": float(np.median(times)),
            "mean": float(np.mean(times)), "temperature_c": temperature_c()}


def _cool_down(threshold_c: float, timeout_s: float, warnings: list[str], notes: list[str]) -> float:
    """Wait until the hottest sensor is at or under `threshold_c`; the seconds waited."""
    start = time.monotonic()
    temp = temperature_c()
    if temp is None:
        notes.append("no temperature sensor on this device: cool-down skipped")
        return 0.0
    while temp > threshold_c:
        if time.monotonic() - start >= timeout_s:
            warnings.append(f"still {temp:.1f} °C after {timeout_s:.0f} s of cool-down (wanted <= {threshold_c:.1f} °C)")
            break
        time.sleep(COOLDOWN_POLL_S)
        temp = temperature_c()
    return time.monotonic() - start


def drift_pct(timeline: list[dict], warnings: list[str]) -> float | None:
    """Last window's p50 against the first's, in percent (None under two windows); warns past DRIFT_WARNING_PCT."""
    if len(timeline) < 2:
        return None
    drift = (timeline[-1]["p50"] / timeline[0]["p50"] - 1.0) * 100.0
    if drift > DRIFT_WARNING_PCT:
        warnings.append(f"slowed down during the run: the last window's p50 is {drift:.0f} % above the first's")
    return drift


def throttle_warnings(before: dict, after: dict) -> list[str]:
    """Evidence that the CPU was throttled between two `device_state()` snapshots."""
    found = []
    b, a = before.get("throttle_events"), after.get("throttle_events")
    if b is not None and a is not None and a > b:
        found.append(f"throttled: the kernel counted {a - b} thermal throttle events during the run")
    flags = after.get("pi_throttled")
    if flags is not None:
        old = before.get("pi_throttled") or 0
        if flags & 0b110 or (flags & ~old) & (0b110 << 16):
            found.append(f"throttled: the Raspberry Pi firmware reports throttling (get_throttled=0x{flags:x}): "
                         "check cooling and the power supply")
    slow = [(cur, top) for cur, top in zip(after.get("freq_mhz") or [], after.get("max_freq_mhz") or []) if cur < 0.9 * top]
    if after.get("governor") == "performance" and slow:
        found.append(f"throttled: with the performance governor a core ran at {slow[0][0]:.0f} of {slow[0][1]:.0f} MHz after the run")
    return found


def governor_notes(state: dict) -> list[str]:
    gov = state.get("governor")
    if gov and gov != "performance":
        return [f"CPU governor is '{gov}': the clock follows the load, so short runs vary; "
                "for stable numbers set 'performance' (e.g. `sudo cpupower frequency-set -g performance`)"]
    return []


def compare_table(reports: list[BenchReport]):
    """One rich Table for several reports (formats, precisions, devices), fastest p50 first."""
    from rich.table import Table

    t = Table(title=f"Benchmark comparison ({len(reports)} files)")
    for col in ("file", "backend", "device", "p50", "95% CI", "p90", "p99", "mean", "size", "vs fastest"):
        t.add_column(col, justify="left" if col in ("file", "backend", "device") else "right")
    best = min(r.latency_ms["p50"] for r in reports)
    for r in sorted(reports, key=lambda r: r.latency_ms["p50"]):
        lat = r.latency_ms
        ci = f"{r.median_ci_ms[0]:.3f}-{r.median_ci_ms[1]:.3f}" if r.median_ci_ms else "-"
        flag = " [yellow](throttled)[/yellow]" if r.throttled else ""
        t.add_row(Path(r.artifact).name + flag, f"{r.backend} {r.runtime_version}", f"{r.target} ({r.device.get('arch')})",
                  _ms(lat["p50"]), ci, _ms(lat.get("p90")), _ms(lat.get("p99")), _ms(lat.get("mean")),
                  f"{r.size_bytes / 1e6:.2f} MB", f"{lat['p50'] / best:.2f}x")
    return t


def plot_comparison(reports: list[BenchReport], path: str | Path) -> Path:
    """A PNG: per file the p50 with its 95 % CI, and a line from min to p99 (max when p99 is unknown)."""
    require("matplotlib", extra="plot", purpose="Plotting a benchmark comparison")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(reports, key=lambda r: r.latency_ms["p50"], reverse=True)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(ordered) + 1.6))
    for y, r in enumerate(ordered):
        lat = r.latency_ms
        top = lat.get("p99") if lat.get("p99") is not None else lat.get("max")
        ax.plot([lat["min"], top], [y, y], color="0.7", linewidth=2, zorder=1)
        lo, hi = r.median_ci_ms or (lat["p50"], lat["p50"])
        ax.errorbar(lat["p50"], y, xerr=[[lat["p50"] - lo], [hi - lat["p50"]]], fmt="o", color="C0", capsize=4, zorder=2)
    ax.set_yticks(range(len(ordered)), [f"{Path(r.artifact).name}\n{r.backend}, {r.target}" for r in ordered], fontsize=8)
    ax.set_xlabel("latency (ms): p50 with 95 % CI; grey line min to p99")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
