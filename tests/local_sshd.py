"""A real OpenSSH server on 127.0.0.1 for tests: Debian's sshd with a private config, no systemd.

Keys are generated per server; the client side is an ssh config file (passed as
`ssh -F`) that names the key and a private known_hosts, so nothing in ~/.ssh is
read or changed. Used by tests/test_devices.py, tests/test_adb.py (free_port) and device_tests/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


@dataclass
class LocalSSHD:
    port: int
    ssh_config: Path  # client config: key, known_hosts
    process: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def why_not() -> str | None:
    """Why no server can be started here, or None when one can."""
    if not Path(SSHD).exists():
        return "Debian's openssh-server is not installed (apt-get install openssh-server; .ci/run does)"
    if os.geteuid() != 0:
        return "sshd needs root here (it switches to the logged-in user)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(workdir: Path, extra_config: str = "") -> LocalSSHD:
    """Start sshd on a free port of 127.0.0.1 accepting a fresh key for root; wait until it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / name)], check=True)
    shutil.copy(workdir / "id.pub", workdir / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory (systemd usually makes it)
    port = free_port()
    (workdir / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\nPidFile {workdir / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n" + extra_config  # scp speaks SFTP since OpenSSH 9
    )
    (workdir / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {workdir / 'id'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {workdir / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n"
    )
    log = open(workdir / "sshd.log", "w")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(workdir / "sshd_config")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {(workdir / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return LocalSSHD(port, workdir / "ssh_config", process, workdir)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within 10 s")
