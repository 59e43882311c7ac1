"""Android over adb: TFLite's own `benchmark_model` for latency, a device-side Python (if any) for parity.

Phones rarely have Python, so latency comes from the tool Android developers
already trust: the user gives the path of a `benchmark_model` binary built for
the phone (`--benchmark-binary`; nothing is downloaded), it is pushed next to
the model, and its log is parsed into the same BenchReport as everywhere else.
When the adb shell user can run a Python with numpy and an interpreter
(`adb://SERIAL?python=PATH`), the edge-sdk agent runs there as on a Raspberry Pi
and parity is checked; without one the reports say that parity was not run.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..verify.bench import BenchReport, drift_pct, governor_notes, throttle_warnings
from .runner import AgentRunner, Workspace, _size, _tail
from .transport import ADBTransport, DeviceError, DeviceSetupError

PARITY_NOT_RUN = ("parity was not run: no Python on the device for the adb shell user "
                  "(give one with adb://SERIAL?python=PATH, e.g. a Python with numpy and ai-edge-litert)")

# getprop keys -> description fields (Android 12+ has ro.soc.*; older phones ro.board.platform / ro.hardware)
_PROPS = {
    "manufacturer": "ro.product.manufacturer",
    "model": "ro.product.model",
    "soc_maker": "ro.soc.manufacturer",
    "soc": "ro.soc.model",
    "platform": "ro.board.platform",
    "release": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
}

_STATE_SCRIPT = r"""
cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null | sort -u | tr '\n' ' '; echo
cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null | tr '\n' ' '; echo
cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq 2>/dev/null | tr '\n' ' '; echo
cat /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq 2>/dev/null | tr '\n' ' '; echo
"""

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def parse_benchmark_model(text: str) -> dict:
    """The numbers in a `benchmark_model` log (microseconds and MB as printed, converted to ms / s / MB).

    Format, from TFLite's tensorflow/lite/tools/benchmark/benchmark_model.cc and
    the Stat printer in tensorflow/core/util/stats_calculator.h: each run phase
    ends with `count=N first=.. curr=.. min=.. max=.. avg=.. std=..` (newer builds
    append `p5=.. median=.. p95=..`), the warm-up phase first and the timed phase
    last; then `Inference timings in us: Init: .., First inference: .., Warmup
    (avg): .., Inference (avg): ..`, and with memory support `Memory footprint delta
    from the start of the tool (MB): init=.. overall=..` (older builds: `Peak memory
    footprint (MB): ...`) and, with --report_peak_memory_footprint, `Overall peak
    memory footprint (MB) via periodic monitoring: ..`. Lines may carry a log
    prefix (`INFO: `, or logcat's `I tflite  : `); numbers may be in e-notation.
    """
    timings = re.search(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                        rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}", text)
    if timings is None:
        raise ValueError("no 'Inference timings in us' line: benchmark_model did not finish")
    stats = [dict((k, float(v)) for k, v in re.findall(rf"\b(\w+)={_NUM}", line))
             for line in text.splitlines() if re.search(r"\bcount=\d+ first=", line)]
    if not stats:
        raise ValueError("no 'count=... avg=...' line for the timed runs")
    timed = stats[-1]
    init_us, first_us, _, avg_us = (float(v) for v in timings.groups())
    ms = {k: (timed[key] / 1000.0 if key in timed else None)
          for k, key in (("min", "min"), ("p5", "p5"), ("p50", "median"), ("p95", "p95"), ("max", "max"), ("std", "std"))}
    ms |= {"mean": avg_us / 1000.0, "p90": None, "p99": None}
    peak = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}", text)
    footprint = re.search(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                          rf"init={_NUM} overall={_NUM}", text)
    return {
        "runs": int(timed["count"]),
        "latency_ms": ms,
        "init_s": init_us / 1e6,
        "first_run_ms": first_us / 1000.0,
        "peak_mb": float(peak.group(1)) if peak else (float(footprint.group(2)) if footprint else None),
        "xnnpack": bool(re.search(r"Use xnnpack: \[1\]|XNNPACK delegate", text)),
    }


def state_from_sysfs(text: str) -> dict:
    """A device_state()-shaped dict from _STATE_SCRIPT's four lines (governors, temps, cur / max kHz)."""
    lines = (text.splitlines() + ["", "", "", ""])[:4]

    def numbers(line: str) -> list[float]:
        return [float(v) for v in line.split() if re.fullmatch(r"-?\d+", v)]

    temps = [t / 1000.0 for t in numbers(lines[1]) if 0 < t / 1000.0 < 150]  # millidegrees; skip bogus zones
    return {
        "governor": ",".join(lines[0].split()) or None,
        "temperature_c": max(temps) if temps else None,
        "freq_mhz": [f / 1000.0 for f in numbers(lines[2])],
        "max_freq_mhz": [f / 1000.0 for f in numbers(lines[3])],
        "throttle_events": None,
        "pi_throttled": None,
    }


class AdbRunner(AgentRunner):
    """An Android device by serial. `benchmark_binary`: TFLite's benchmark_model for the phone's ABI."""

    def __init__(self, serial: str, *, python: str | None = None, tmp: str | None = None, timeout_s: float = 600.0,
                 benchmark_binary: str | Path | None = None, use_xnnpack: bool = True, adb: str = "adb"):
        super().__init__(ADBTransport(serial, adb), python=python or "", tmp=tmp or "/data/local/tmp", timeout_s=timeout_s)
        self.has_python = python is not None
        self.benchmark_binary = Path(benchmark_binary) if benchmark_binary else None
        self.use_xnnpack = use_xnnpack
        if self.benchmark_binary is not None and not self.benchmark_binary.is_file():
            raise DeviceSetupError(f"benchmark binary {self.benchmark_binary} does not exist",
                                   "build TFLite's //tensorflow/lite/tools/benchmark:benchmark_model for android_arm64 "
                                   "(or take the prebuilt one from TFLite's docs) and give its path")

    # -- work folder without Python ------------------------------------------------------------
    def _probe(self) -> Workspace:
        if self.has_python:
            return super()._probe()
        res = self.transport.run(["mktemp", "-d", f"{self.tmp}/edge-sdk.XXXXXX"], 60)
        if res.returncode != 0 or not res.stdout.strip():
            raise DeviceSetupError(f"{self.target}: cannot make a work folder in {self.tmp}: {_tail(res.stderr + res.stdout)}",
                                   "give a writable folder with ?tmp=DIR in the target")
        folder = res.stdout.strip().splitlines()[-1]
        df = self.transport.run(["df", "-k", folder], 60)
        try:
            free = int(df.stdout.strip().splitlines()[-1].split()[3]) * 1024
        except (IndexError, ValueError):
            free = None  # an unknown df format: let the push itself report a full disk
        return Workspace(folder, {"free_bytes": free})

    def _check(self, probe: dict, files: Sequence[Path]) -> None:
        if self.has_python:
            return super()._check(probe, files)
        need = sum(_size(Path(f)) for f in files)
        if probe["free_bytes"] is not None and probe["free_bytes"] < need:
            raise DeviceSetupError(f"{self.target}: only {probe['free_bytes'] / 1e6:.1f} MB free in {self.tmp}, "
                                   f"{need / 1e6:.1f} MB needed", "free some space, or choose another folder with ?tmp=DIR")

    def _identity(self) -> dict:
        """Board, SoC, cores, ABI and Android version: getprop's answers (one shell command)."""
        script = "; ".join(f"echo {key}=$(getprop {prop})" for key, prop in _PROPS.items())
        script += "; echo arch=$(uname -m); echo cores=$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
        res = self.transport.run(["sh", "-c", script], 60)
        props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        soc = " ".join(p for p in (props.get("soc_maker"), props.get("soc")) if p) or props.get("platform")
        return {
            "board": " ".join(p for p in (props.get("manufacturer"), props.get("model")) if p) or None,
            "cpu": soc or None,
            "cores": int(props["cores"]) if props.get("cores", "").isdigit() else None,
            "arch": props.get("arch") or props.get("abi"),
            "os": f"Android {props.get('release', '?')} (API {props.get('sdk', '?')})",
        }

    # -- Runner API ----------------------------------------------------------------------------
    def describe(self) -> dict:
        state = state_from_sysfs(self.transport.run(["sh", "-c", _STATE_SCRIPT], 60).stdout)
        description = self._identity() | {
            "python": None,
            "runtimes": {},
            "governor": state["governor"],
            "temperature_c": state["temperature_c"],
            "state": state,
            "target": self.target,
        }
        if self.has_python:
            agent = super().describe()
            description |= {"python": agent["python"], "runtimes": agent["runtimes"]}
        return description

    def bench(self, files, **options) -> list[BenchReport]:
        files = [Path(f) for f in files]
        if self.benchmark_binary is None:
            if not self.has_python:
                raise DeviceSetupError(f"{self.target}: nothing to benchmark with",
                                       "give TFLite's benchmark_model with --benchmark-binary PATH, "
                                       "or a device-side Python with adb://SERIAL?python=PATH")
            reports = super().bench(files, **options)
            phone = self._identity()  # the agent sees Linux under Android; the board and OS are getprop's
            for r in reports:
                r.device = r.device | {key: phone[key] for key in ("board", "cpu", "os") if phone[key]}
        else:
            reports = self._bench_with_tool(files, **options)
        if not self.has_python:
            for r in reports:
                r.notes.append(PARITY_NOT_RUN)
        return reports

    def session(self, file, threads=None):
        if not self.has_python:
            raise DeviceSetupError(f"{self.target}: {PARITY_NOT_RUN}")
        return super().session(file, threads)

    # -- benchmark_model ---------------------------------------------------------------------------
    def _bench_with_tool(self, files: list[Path], *, runs: int | None = None, warmup: int = 10, threads: int | None = None,
                         duration_s: float | None = None, cooldown_c: float | None = None, cooldown_timeout_s: float = 300.0,
                         sustained_s: float | None = None, **unused) -> list[BenchReport]:
        not_tflite = [f.name for f in files if f.suffix.lower() != ".tflite"]
        if not_tflite:
            raise DeviceSetupError(f"benchmark_model runs .tflite files only, not {', '.join(not_tflite)}",
                                   "benchmark those through a device-side Python (adb://SERIAL?python=PATH)")
        given = sorted(k for k, v in unused.items() if v is not None and k != "window_s")
        if given:
            raise DeviceSetupError(f"{', '.join(given)} need per-run times, which benchmark_model does not print",
                                   "use a device-side Python (adb://SERIAL?python=PATH) for these options")
        if sustained_s is not None and sustained_s <= 0:
            raise InputError(f"sustained_s must be > 0 (got {sustained_s})")
        window_s = unused.get("window_s") or (max(sustained_s / 10.0, 1.0) if sustained_s else None)
        device = self.describe()
        reports = []
        with self.workspace([self.benchmark_binary, *files]) as ws:
            tool = f"{ws.dir}/{self.benchmark_binary.name}"
            self._shell(["chmod", "755", tool])
            for f in files:
                warnings, notes = [], []
                cooled = self._cool_down(cooldown_c, cooldown_timeout_s, warnings, notes) if cooldown_c is not None else 0.0
                before = self._state()
                argv = [tool, f"--graph={ws.dir}/{f.name}", "--warmup_min_secs=0",
                        f"--use_xnnpack={str(self.use_xnnpack).lower()}", "--report_peak_memory_footprint=true"]
                if threads is not None:
                    argv.append(f"--num_threads={threads}")
                start = time.monotonic()
                if sustained_s is None:
                    if duration_s is not None:
                        argv += [f"--num_runs={runs or 1}", f"--min_secs={duration_s}", f"--max_secs={duration_s}"]
                    else:
                        argv += [f"--num_runs={runs or 100}", "--min_secs=0", f"--max_secs={self.timeout_s:.0f}"]
                    parsed, timeline = self._run_tool(argv + [f"--warmup_runs={warmup}"], f), []
                else:
                    parsed, timeline = self._sustained(argv, f, warmup, sustained_s, window_s, notes)
                seconds = time.monotonic() - start
                after = self._state()
                drift = drift_pct(timeline, warnings)
                notes.append("timed by TFLite's benchmark_model, which prints no per-run times: "
                             "p90 / p99 and the median's confidence interval are not available")
                reports.append(BenchReport(
                    artifact=str(f), backend="tflite", runtime_version="benchmark_model", threads=threads,
                    warmup=warmup, runs=parsed["runs"], latency_ms=parsed["latency_ms"],
                    throughput_per_s=1000.0 / parsed["latency_ms"]["mean"], size_bytes=_size(f),
                    load_seconds=parsed["init_s"], peak_rss_mb=parsed["peak_mb"], device=device,
                    first_run_ms=parsed["first_run_ms"], state_before=before, state_after=after,
                    cooldown_seconds=cooled, seconds=seconds, warnings=warnings + throttle_warnings(before, after),
                    notes=notes + governor_notes(before) + ["XNNPACK delegate on" if parsed["xnnpack"] else "XNNPACK off"],
                    tool="benchmark_model", target=self.target, timeline=timeline, drift_pct=drift,
                ))
        return reports

    def _run_tool(self, argv: list[str], f: Path) -> dict:
        res = self.transport.run(["sh", "-c", f"{shlex.join(argv)} 2>&1"], self.timeout_s + 30)
        try:
            return parse_benchmark_model(res.stdout)
        except ValueError as exc:
            raise DeviceError(f"{self.target}: benchmark_model failed on {f.name} (exit {res.returncode}): {exc}",
                              f"its last lines: {_tail(res.stdout, 4)}") from None

    def _sustained(self, argv: list[str], f: Path, warmup: int, sustained_s: float, window_s: float, notes: list[str]):
        """Sustained mode: one benchmark_model call per time window (warm-up only before the first),
        each window's median, temperature between windows. Whole-run numbers are the windows' combined."""
        timeline, windows, begin = [], [], time.monotonic()
        while not windows or time.monotonic() - begin < sustained_s:
            at = time.monotonic() - begin
            parsed = self._run_tool(argv + [f"--warmup_runs={warmup if not windows else 0}", "--num_runs=1",
                                           f"--min_secs={window_s}", f"--max_secs={window_s}"], f)
            windows.append(parsed)
            ms = parsed["latency_ms"]
            timeline.append({"start_s": round(at, 3), "runs": parsed["runs"], "p50": ms["p50"] or ms["mean"],
                             "mean": ms["mean"], "temperature_c": self._state()["temperature_c"]})
        runs = sum(w["runs"] for w in windows)
        first = windows[0]
        combined = {k: None for k in first["latency_ms"]}
        combined |= {"min": min(w["latency_ms"]["min"] for w in windows), "max": max(w["latency_ms"]["max"] for w in windows),
                     "mean": sum(w["latency_ms"]["mean"] * w["runs"] for w in windows) / runs,
                     "p50": float(np.median([t["p50"] for t in timeline]))}
        notes.append(f"sustained: {len(windows)} benchmark_model calls of {window_s:.0f} s; p50 is the median of the "
                     "windows' medians, min / max / mean over all runs")
        return first | {"runs": runs, "latency_ms": combined, "peak_mb": max((w["peak_mb"] or 0) for w in windows) or None}, timeline

    def _shell(self, argv: list[str]) -> None:
        res = self.transport.run(argv, 60)
        if res.returncode != 0:
            raise DeviceError(f"{self.target}: `{shlex.join(argv)}` failed: {_tail(res.stderr + res.stdout)}")

    def _state(self) -> dict:
        return state_from_sysfs(self.transport.run(["sh", "-c", _STATE_SCRIPT], 60).stdout)

    def _cool_down(self, threshold_c: float, timeout_s: float, warnings: list[str], notes: list[str]) -> float:
        start = time.monotonic()
        temp = self._state()["temperature_c"]
        if temp is None:
            notes.append("no readable temperature sensor on this device: cool-down skipped")
            return 0.0
        while temp > threshold_c:
            if time.monotonic() - start >= timeout_s:
                warnings.append(f"still {temp:.1f} °C after {timeout_s:.0f} s of cool-down (wanted <= {threshold_c:.1f} °C)")
                break
            time.sleep(2.0)
            temp = self._state()["temperature_c"]
        return time.monotonic() - start
