"""Devices: run the same benchmark and parity check on a Raspberry Pi (ssh), a phone (adb) or here (local).

    from edge_sdk.devices import connect
    runner = connect("ssh://pi@raspberrypi.local")
    print(runner.describe()["board"])                   # 'Raspberry Pi 4 Model B Rev 1.4'
    report, = runner.bench(["mobilenet_v2_int8.tflite"], runs=50, threads=4)
    parity = runner.verify("mobilenet_v2_int8.tflite", "mobilenet_v2")

A target is `local`, `ssh://[user@]host[:port]` or `adb://SERIAL`, with optional
query options: `python=PATH` (the device's interpreter) and `tmp=DIR` (where the
work folder is made), e.g. `ssh://pi@pi4?python=~/venv/bin/python`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from .android import AdbRunner, parse_benchmark_model
from .runner import AgentRunner, LocalRunner, RemoteSession, Runner
from .transport import (
    DeviceError,
    DeviceLoginError,
    DeviceSetupError,
    DeviceTimeoutError,
    DeviceUnreachableError,
    SSHTransport,
)

TARGET_FORMS = "local, ssh://[user@]host[:port], adb://SERIAL (options: ?python=PATH&tmp=DIR)"
_OPTIONS = {"python", "tmp"}


@dataclass(frozen=True)
class Target:
    kind: str  # local | ssh | adb
    host: str | None = None
    user: str | None = None
    port: int | None = None
    serial: str | None = None
    options: dict = field(default_factory=dict)


def parse_target(text: str) -> Target:
    """`local`, `ssh://user@host:port?python=...`, `adb://SERIAL` -> Target; a clear error otherwise."""
    if text == "local":
        return Target("local")
    parts = urlsplit(text)
    options = dict(parse_qsl(parts.query))
    unknown = set(options) - _OPTIONS
    if unknown:
        raise DeviceError(f"unknown target option(s) {', '.join(sorted(unknown))} in {text!r}", f"targets: {TARGET_FORMS}")
    if parts.scheme == "ssh":
        try:
            port = parts.port
        except ValueError:
            raise DeviceError(f"bad port in {text!r}", "write ssh://user@host:22") from None
        if not parts.hostname:
            raise DeviceError(f"no host in {text!r}", "write ssh://user@host[:port]")
        return Target("ssh", host=parts.hostname, user=unquote(parts.username) if parts.username else None, port=port,
                      options=options)
    if parts.scheme == "adb":
        serial = unquote(parts.netloc + parts.path).strip("/")
        if not serial:
            raise DeviceError(f"no serial in {text!r}", "write adb://SERIAL (see `adb devices`)")
        return Target("adb", serial=serial, options=options)
    raise DeviceError(f"unknown device target {text!r}", f"targets: {TARGET_FORMS}")


def connect(target: str, *, timeout_s: float = 600.0, ssh_config: str | Path | None = None,
            benchmark_binary: str | Path | None = None, use_xnnpack: bool = True) -> Runner:
    """The Runner for `target`. `timeout_s` limits each command on the device; `ssh_config` is ssh's -F;
    `benchmark_binary` / `use_xnnpack` apply to adb targets (TFLite's benchmark_model)."""
    t = parse_target(target)
    if t.kind == "local":
        return LocalRunner()
    if t.kind == "ssh":
        transport = SSHTransport(t.user, t.host, t.port, ssh_config=ssh_config)
        return AgentRunner(transport, python=t.options.get("python", "python3"), tmp=t.options.get("tmp"), timeout_s=timeout_s)
    return AdbRunner(t.serial, python=t.options.get("python"), tmp=t.options.get("tmp"), timeout_s=timeout_s,
                     benchmark_binary=benchmark_binary, use_xnnpack=use_xnnpack)


__all__ = [
    "AdbRunner",
    "AgentRunner",
    "DeviceError",
    "DeviceLoginError",
    "DeviceSetupError",
    "DeviceTimeoutError",
    "DeviceUnreachableError",
    "LocalRunner",
    "RemoteSession",
    "Runner",
    "Target",
    "connect",
    "parse_target",
    "parse_benchmark_model",
]
