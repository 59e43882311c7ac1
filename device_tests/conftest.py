"""The device target for device_tests: EDGE_SDK_DEVICE if set, else an emulated Raspberry Pi built here.

The emulated Pi is an arm64 Debian root in which every command, Python included,
runs as aarch64 code under qemu-user via binfmt_misc. Each test runs against it twice:
through a real OpenSSH server on 127.0.0.1 (tests/local_sshd.py) whose sessions are
chrooted into it (sshd's ChrootDirectory), and through Debian's adb client and server
talking to tests/local_adbd.py, whose shell is chrooted into it (a phone with a Python).
The root is built once by make_pi_root.sh and reused (EDGE_SDK_PI_ROOT, default
/var/cache/edge-sdk/rpi-arm64).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # local_sshd

PI_ROOT = Path(os.environ.get("EDGE_SDK_PI_ROOT", "/var/cache/edge-sdk/rpi-arm64"))


def _why_no_emulated_pi() -> str | None:
    from local_sshd import why_not

    reason = why_not()
    if reason:
        return reason
    if not PI_ROOT.exists():
        missing = [t for t in ("mmdebstrap", "update-binfmts", "qemu-aarch64-static") if shutil.which(t) is None]
        if missing:
            return (f"no emulated Pi root at {PI_ROOT} and no {', '.join(missing)} to build one "
                    "(apt-get install mmdebstrap qemu-user-static binfmt-support)")
    return None


@pytest.fixture(scope="session")
def emulated_pi_root():
    """The arm64 root, built on first use, with qemu-aarch64 registered; skips with the reason when it cannot be."""
    reason = _why_no_emulated_pi()
    if reason:
        pytest.skip(reason)
    if not PI_ROOT.exists() or not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        # Builds the root (~5 min) or, when it exists, only registers qemu-aarch64 with binfmt_misc.
        subprocess.run([str(HERE / "make_pi_root.sh"), str(PI_ROOT)], check=not PI_ROOT.exists(),
                       env=dict(os.environ, PYTHON=sys.executable))
        if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
            pytest.skip("binfmt_misc has no qemu-aarch64 entry (mount binfmt_misc; update-binfmts --enable qemu-aarch64)")
    return PI_ROOT


@pytest.fixture(scope="session", params=["given"] if os.environ.get("EDGE_SDK_DEVICE") else ["ssh", "adb"])
def device(request, tmp_path_factory):
    """(target string, ssh config or None, expectations) for the device under test: EDGE_SDK_DEVICE once, or else
    the emulated Pi twice, over a real sshd (a Linux board) and over Debian's adb to tests/local_adbd.py (a phone
    with a Python): the same aarch64 userspace behind both transports."""
    if request.param == "given":
        yield os.environ["EDGE_SDK_DEVICE"], os.environ.get("EDGE_SDK_SSH_CONFIG"), {}
        return
    root = request.getfixturevalue("emulated_pi_root")
    if request.param == "ssh":
        from local_sshd import start_sshd

        server = start_sshd(tmp_path_factory.mktemp("pi-sshd"), extra_config=f"ChrootDirectory {root}\n")
        yield (f"ssh://root@127.0.0.1:{server.port}?python=/usr/bin/python3", str(server.ssh_config),
               {"board": "Raspberry Pi", "arch": "aarch64"})
        server.stop()
        return
    yield from _adb_phone(root, tmp_path_factory)


def _adb_phone(root: Path, tmp_path_factory):
    """Debian's adb server on a private port (ADB_SERVER_SOCKET, as a user would set it) and a local adbd whose shell
    runs chrooted in the emulated root: push, shell and pull cross the real adb protocol to aarch64 code."""
    if shutil.which("adb") is None:
        pytest.skip("Debian's adb is not installed (apt-get install -y adb; .ci/run does)")
    from local_adbd import AdbServer, start_adbd
    from local_sshd import free_port

    (root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)  # a phone's work folder, the runner's default
    server = AdbServer(tmp_path_factory.mktemp("adb-server"), free_port())
    daemon = start_adbd(tmp_path_factory.mktemp("pi-adbd"), {"ro.product.model": "Pi over adb", "ro.product.cpu.abi": "arm64-v8a"},
                        root_dir=root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADB_SERVER_SOCKET", server.env["ADB_SERVER_SOCKET"])
        mp.delenv("ANDROID_ADB_SERVER_PORT", raising=False)
        mp.delenv("ANDROID_SERIAL", raising=False)
        connected = server.adb("connect", daemon.serial)
        if not connected.stdout.startswith(f"connected to {daemon.serial}"):
            raise RuntimeError(f"adb connect {daemon.serial}: {connected.stdout}{connected.stderr}")
        try:
            yield f"adb://{daemon.serial}?python=/usr/bin/python3", None, {"board": "Pi over adb", "arch": "aarch64"}
        finally:
            daemon.stop()
            server.adb("kill-server")
