"""The device target for device_tests: EDGE_SDK_DEVICE if set, else an emulated Raspberry Pi built here.

The emulated Pi is a real OpenSSH server on 127.0.0.1 (tests/local_sshd.py) whose
sessions are chrooted (sshd's ChrootDirectory) into an arm64 Debian root, so every
command, Python included, runs as aarch64 code under qemu-user via binfmt_misc.
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
def device(tmp_path_factory):
    """(target string, ssh config or None, expectations) for the device under test."""
    if os.environ.get("EDGE_SDK_DEVICE"):
        yield os.environ["EDGE_SDK_DEVICE"], os.environ.get("EDGE_SDK_SSH_CONFIG"), {}
        return
    reason = _why_no_emulated_pi()
    if reason:
        pytest.skip(reason)
    if not PI_ROOT.exists():
        subprocess.run([str(HERE / "make_pi_root.sh"), str(PI_ROOT)], check=True, env=dict(os.environ, PYTHON=sys.executable))
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=False)
        if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
            pytest.skip("binfmt_misc has no qemu-aarch64 entry (mount binfmt_misc; update-binfmts --enable qemu-aarch64)")
    from local_sshd import start_sshd

    server = start_sshd(tmp_path_factory.mktemp("pi-sshd"), extra_config=f"ChrootDirectory {PI_ROOT}\n")
    yield (f"ssh://root@127.0.0.1:{server.port}?python=/usr/bin/python3", str(server.ssh_config),
           {"board": "Raspberry Pi", "arch": "aarch64"})
    server.stop()
