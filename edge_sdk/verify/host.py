"""Describe the machine a benchmark runs on, and its thermal state, with the standard library only.

This module runs on the device itself (a Raspberry Pi, a board over SSH, or this
machine), so it reads /proc and /sys directly and imports nothing beyond the
standard library: a device without numpy can still say what it is.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

# The Python distributions whose versions a benchmark report records (runtimes and numpy).
RUNTIME_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip().strip("\x00") or None
    except OSError:
        return None


def cpu_model() -> str:
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in info.splitlines():
            if line.lower().startswith(key.lower()) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def board_model() -> str | None:
    """The board name: the device tree's on ARM boards (e.g. 'Raspberry Pi 4 Model B Rev 1.4'), else DMI."""
    model = _read("/proc/device-tree/model") or _read("/sys/firmware/devicetree/base/model")
    if model:
        return model
    vendor, product = _read("/sys/class/dmi/id/sys_vendor"), _read("/sys/class/dmi/id/product_name")
    return " ".join(p for p in (vendor, product) if p) or None


def os_release() -> str:
    """PRETTY_NAME from /etc/os-release (e.g. 'Debian GNU/Linux 12 (bookworm)') plus the kernel."""
    pretty = None
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty} · {kernel}" if pretty else platform.platform()


def runtime_versions() -> dict[str, str | None]:
    """Installed versions of numpy and the interpreters, read from package metadata (nothing imported)."""
    versions = {}
    for name in RUNTIME_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def governors() -> list[str]:
    """The distinct CPU frequency governors of all cores (one entry on most boards)."""
    found = {_read(p) for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")}
    return sorted(g for g in found if g)


def temperature_c() -> float | None:
    """The hottest thermal zone in °C (the SoC sensor on a Raspberry Pi), or None without sensors."""
    temps = []
    for path in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        raw = _read(path)
        try:
            temps.append(int(raw) / 1000.0)
        except (TypeError, ValueError):
            continue
    return max(temps) if temps else None


def _freqs_mhz(name: str) -> list[float]:
    values = []
    for path in sorted(glob.glob(f"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/{name}")):
        try:
            values.append(int(_read(path)) / 1000.0)
        except (TypeError, ValueError):
            continue
    return values


def throttle_events() -> int | None:
    """Thermal throttle events so far: x86 per-core counters, or None where the kernel has none."""
    counts = []
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/*_throttle_count"):
        try:
            counts.append(int(_read(path)))
        except (TypeError, ValueError):
            continue
    return sum(counts) if counts else None


def pi_throttled() -> int | None:
    """Raspberry Pi firmware throttle flags (`vcgencmd get_throttled`), or None elsewhere.

    Bit 1 = ARM frequency capped, bit 2 = throttled now; bits 17/18 = the same has
    happened since boot (https://www.raspberrypi.com/documentation/computers/os.html#get_throttled).
    """
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        return int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def device_state() -> dict:
    """What can change during a benchmark: governor, temperature, clock, throttle counters."""
    return {
        "governor": ",".join(governors()) or None,
        "temperature_c": temperature_c(),
        "freq_mhz": _freqs_mhz("scaling_cur_freq"),  # per core, now
        "max_freq_mhz": _freqs_mhz("cpuinfo_max_freq"),  # per core (big.LITTLE cores differ)
        "throttle_events": throttle_events(),
        "pi_throttled": pi_throttled(),
    }


def describe_host() -> dict:
    """Board, CPU, cores, arch, OS, Python and runtime versions, governor and temperature of this machine."""
    return {
        "board": board_model(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": os_release(),
        "python": platform.python_version(),
        "runtimes": runtime_versions(),
        "governor": ",".join(governors()) or None,
        "temperature_c": temperature_c(),
    }
