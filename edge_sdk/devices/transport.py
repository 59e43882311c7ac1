"""Transports: run a command on a device, push files to it, pull files from it.

SSH goes through the system `ssh` / `scp` binaries, so the user's own
~/.ssh/config, keys and agent apply exactly as on their command line (no
Python SSH library re-implements them differently); BatchMode makes a missing
key fail at once instead of waiting for a password prompt nobody sees. adb goes
through the `adb` client. Each failure becomes a DeviceError that says whether
the device was unreachable, refused the login, or did not answer in time.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import EdgeSDKError


class DeviceError(EdgeSDKError):
    """A device could not be used: the message names the device and the reason."""


class DeviceUnreachableError(DeviceError):
    """No connection: wrong host or port, the device is off, or no route to it."""


class DeviceLoginError(DeviceError):
    """Connected, but the login was refused (key, user, host key, adb authorisation)."""


class DeviceTimeoutError(DeviceError):
    """A command on the device did not finish within its time limit."""


class DeviceSetupError(DeviceError):
    """The device lacks something a run needs (Python, numpy, a runtime, disk space)."""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Transport:
    """Run / push / pull on one device. `name` is the target string, used in every message."""

    name: str

    def run(self, command: Sequence[str], timeout: float) -> Result:
        """Run `command` (argv, quoted here) on the device; transport failures raise DeviceError."""
        raise NotImplementedError

    def push(self, local: Sequence[Path], remote_dir: str, timeout: float) -> None:
        raise NotImplementedError

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        raise NotImplementedError


def _run_local(argv: list[str], timeout: float, name: str, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeviceTimeoutError(f"{what} on {name} did not finish within {timeout:.0f} s",
                                 "the device may be hung or very slow: raise --timeout, or use fewer runs") from None
    except FileNotFoundError:
        raise DeviceSetupError(f"{argv[0]} is not installed on this machine", _INSTALL_HINT.get(argv[0], None)) from None


_INSTALL_HINT = {
    "ssh": "install the OpenSSH client (e.g. `sudo apt install openssh-client`)",
    "scp": "install the OpenSSH client (e.g. `sudo apt install openssh-client`)",
    "adb": "install Android platform-tools (e.g. `sudo apt install adb`) or put adb on PATH",
}

# stderr fragments of ssh/scp, most specific first: (fragment, error class, hint)
_SSH_FAILURES = (
    ("Host key verification failed", DeviceLoginError,
     "the host key is unknown or changed: connect once with `ssh` to check and accept it"),
    ("Permission denied", DeviceLoginError,
     "login refused: check that `ssh {dest}` works without a password prompt (ssh-copy-id, or ssh-add your key)"),
    ("Too many authentication failures", DeviceLoginError,
     "ssh offered too many keys: set IdentityFile and IdentitiesOnly for this host in ~/.ssh/config"),
    ("No space left on device", DeviceSetupError, "free some space on the device, or choose another folder with ?tmp=DIR"),
    ("Could not resolve hostname", DeviceUnreachableError, "check the host name (or use its IP address)"),
    ("Connection refused", DeviceUnreachableError, "nothing listens on that port: is sshd running, is the port right?"),
    ("timed out", DeviceUnreachableError, "the host does not answer: is it on, and on this network?"),
    ("No route to host", DeviceUnreachableError, "the host is not reachable from here"),
    ("Network is unreachable", DeviceUnreachableError, "the host is not reachable from here"),
    ("Connection closed", DeviceUnreachableError, "the connection dropped: the device or its sshd went away"),
    ("closed by remote host", DeviceUnreachableError, "the connection dropped: the device or its sshd went away"),
    ("Connection reset", DeviceUnreachableError, "the connection dropped: the device or its sshd went away"),
    ("Broken pipe", DeviceUnreachableError, "the connection dropped: the device or its sshd went away"),
)


class SSHTransport(Transport):
    """`ssh` and `scp` with the user's configuration; `ssh_config` is passed as `-F` when given."""

    def __init__(self, user: str | None, host: str, port: int | None = None, *, ssh_config: str | Path | None = None,
                 connect_timeout: int = 10):
        self.user, self.host, self.port = user, host, port
        self.dest = f"{user}@{host}" if user else host
        self.name = f"ssh://{self.dest}" + (f":{port}" if port else "")
        self.options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}",
                        # notice a dead peer in ~15 s rather than waiting for the command timeout
                        "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if ssh_config is not None:
            self.options = ["-F", str(ssh_config)] + self.options

    def run(self, command: Sequence[str], timeout: float) -> Result:
        argv = ["ssh", *self.options] + (["-p", str(self.port)] if self.port else []) + [self.dest, "--", shlex.join(command)]
        proc = _run_local(argv, timeout, self.name, f"`{shlex.join(command)[:80]}`")
        if proc.returncode == 255:  # ssh's own failure: before the command started, or the connection died under it
            self._raise(proc.stderr, f"running `{shlex.join(command)[:60]}`")
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def push(self, local: Sequence[Path], remote_dir: str, timeout: float) -> None:
        self._scp([str(p) for p in local], f"{self._scp_host()}:{remote_dir}/", timeout, "copying files to the device")

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        self._scp([f"{self._scp_host()}:{remote}"], str(local), timeout, "copying results from the device")

    def _scp_host(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" if self.user else host

    def _scp(self, sources: list[str], dest: str, timeout: float, what: str) -> None:
        argv = ["scp", "-q", "-r", *self.options] + (["-P", str(self.port)] if self.port else []) + sources + [dest]
        proc = _run_local(argv, timeout, self.name, what)
        if proc.returncode != 0:
            self._raise(proc.stderr, what)

    def _raise(self, stderr: str, what: str):
        text = stderr.strip()
        for fragment, cls, hint in _SSH_FAILURES:
            if fragment.lower() in text.lower():
                raise cls(f"{self.name}: {what} failed: {_last_line(text)}", hint.format(dest=self.dest))
        raise DeviceUnreachableError(f"{self.name}: {what} failed: {_last_line(text) or 'ssh exited with 255'}",
                                     f"try `ssh {self.dest}` by hand to see why")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


_ADB_FAILURES = (
    ("unauthorized", DeviceLoginError, "unlock the phone and accept the 'Allow USB debugging' prompt, then retry"),
    ("not found", DeviceUnreachableError, "`adb devices` lists the serials of connected devices"),
    ("no devices", DeviceUnreachableError, "connect the phone with USB debugging on; `adb devices` should list it"),
    ("offline", DeviceUnreachableError, "reconnect the device (replug USB, or `adb reconnect`)"),
    ("No space left on device", DeviceSetupError, "free some space on the device, or choose another folder with ?tmp=DIR"),
)
_RC_MARK = "__edge_sdk_rc="


class ADBTransport(Transport):
    """`adb -s SERIAL shell|push|pull`, with the adb server that the environment names (ANDROID_ADB_SERVER_PORT or
    ADB_SERVER_SOCKET, read by adb itself). The exit code is echoed by the shell: without shell protocol v2
    (phones before Android 7) `adb shell` always exits 0, and with it adb 29 also exits 0 when the connection
    drops mid-command; a missing echo is how both show."""

    def __init__(self, serial: str, adb: str = "adb"):
        self.serial, self.adb = serial, adb
        self.name = f"adb://{serial}"
        if shutil.which(adb) is None:
            raise DeviceSetupError(f"{adb} is not installed on this machine", _INSTALL_HINT["adb"])

    def run(self, command: Sequence[str], timeout: float) -> Result:
        shown = _shorten(shlex.join(command))
        argv = [self.adb, "-s", self.serial, "shell", f"{shlex.join(command)}; echo {_RC_MARK}$?"]
        proc = _run_local(argv, timeout, self.name, f"`{shown}`")
        out = proc.stdout.replace("\r\n", "\n")  # a pty's line ends (before Android 7); text mode usually did it already
        head, mark, tail = out.rpartition(_RC_MARK)
        if not mark:
            if proc.returncode != 0:
                self._raise(proc.stderr + out, f"running `{shown}`")
            raise DeviceUnreachableError(f"{self.name}: the connection ended while running `{shown}`: no exit status came back"
                                         + (f" (last output: {_last_line(out)})" if out.strip() else ""),
                                         "the device was unplugged, rebooted or its adbd restarted: check `adb devices`")
        return Result(int(tail.strip() or 1), head, proc.stderr)

    def push(self, local: Sequence[Path], remote_dir: str, timeout: float) -> None:
        for path in local:
            self._adb(["push", str(path), f"{remote_dir}/"], timeout, f"pushing {Path(path).name}")

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        self._adb(["pull", remote, str(local)], timeout, "pulling results")

    def _adb(self, args: list[str], timeout: float, what: str) -> None:
        proc = _run_local([self.adb, "-s", self.serial, *args], timeout, self.name, what)
        if proc.returncode != 0:
            self._raise(proc.stderr + proc.stdout, what)  # adb 29 prints push / pull errors on stdout

    def _raise(self, text: str, what: str):
        """The line that says why (adb follows it with advice lines and push / pull with a summary), classified."""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        for fragment, cls, hint in _ADB_FAILURES:
            found = [line for line in lines if fragment.lower() in line.lower()]
            if found:
                if fragment == "not found" and ":" in self.serial:
                    hint += f"; a device over TCP needs `adb connect {self.serial}` first"
                raise cls(f"{self.name}: {what} failed: {found[0]}", hint)
        reason = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "adb gave no output")
        raise DeviceError(f"{self.name}: {what} failed: {reason}", f"try `adb -s {self.serial} shell true` by hand")


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
