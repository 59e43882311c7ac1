"""The device side of adb, on 127.0.0.1, for tests: a small adbd in Python, and Debian's adb server to reach it.

Why: the adb Runner should be tested against the real `adb` client and server
(their output formats, exit codes and error messages), and a phone cannot be
plugged into CI. After `adb connect 127.0.0.1:PORT` the server talks to this
daemon exactly as to a phone on Wi-Fi debugging: the transport protocol
(24-byte CNXN / AUTH / OPEN / OKAY / WRTE / CLSE messages), the shell service
(`shell:CMD`, protocol v1, or `shell,v2,...:CMD` when `shell_v2` is advertised)
and the sync service (STAT / SEND / RECV / QUIT) behind push and pull.
Commands run under `sh` on this machine (optionally chrooted into a phone-like
tree), with a `getprop` on PATH that answers the given properties. The daemon
runs as its own process so that a test can kill it as abruptly as a phone being
unplugged. Written from the protocol's description (adb's protocol.txt,
SYNC.TXT, shell_protocol.h), not from its code.
"""

from __future__ import annotations

import json
import os
import pty
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

VERSION = 0x01000001  # A_VERSION of adb >= 1.0.39: the host may leave data_check at 0
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024  # a sync DATA chunk, as the client expects
AUTH_TOKEN, AUTH_SIGNATURE = 1, 2
DEFAULT_PROPS = {"ro.product.name": "edge_sdk_test", "ro.product.model": "Local ADBD", "ro.product.device": "local"}


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (int.from_bytes(name, "little") for name in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))


def _packet(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """A message: 6 little-endian u32 (command, arg0, arg1, length, byte sum, ~command) and the data."""
    return struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


def _recv(sock: socket.socket, n: int) -> bytes:
    data = sock.recv(n, socket.MSG_WAITALL) if n else b""
    if len(data) < n:
        raise EOFError
    return data


class Stream:
    """One opened service: the host's WRTEs arrive as a byte stream; ours wait for the host's OKAY (adb's flow control)."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox, self.cond = bytearray(), threading.Condition()
        self.ready, self.write_lock = threading.Event(), threading.Lock()
        self.ready.set()
        self.closed, self.on_close = False, None

    def received(self, data: bytes) -> None:
        with self.cond:
            self.inbox += data
            self.cond.notify_all()
        self.conn.send(OKAY, self.local_id, self.remote_id)

    def read(self, n: int) -> bytes:
        with self.cond:
            while len(self.inbox) < n and not self.closed:
                self.cond.wait()
            if len(self.inbox) < n:
                raise EOFError
            data = bytes(self.inbox[:n])
            del self.inbox[:n]
            return data

    def write(self, data: bytes) -> None:
        with self.write_lock:
            for i in range(0, len(data), self.conn.max_payload):
                self.ready.wait()
                if self.closed:
                    raise EOFError
                self.ready.clear()
                self.conn.send(WRTE, self.local_id, self.remote_id, data[i:i + self.conn.max_payload])

    def close(self) -> None:
        """Our side is done: let the last WRTE be acknowledged, then CLSE."""
        self.ready.wait(5)
        if self.conn.streams.pop(self.local_id, None) is not None:
            self.conn.send(CLSE, self.local_id, self.remote_id)

    def closed_by_host(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.ready.set()
        if self.on_close:
            self.on_close()


class Connection:
    """One TCP connection from the adb server (one transport); every stream is served by its own thread."""

    def __init__(self, sock: socket.socket, device: Device):
        self.sock, self.device = sock, device
        self.lock, self.streams, self.next_id, self.max_payload = threading.Lock(), {}, 1, 4096

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        try:
            with self.lock:
                self.sock.sendall(_packet(command, arg0, arg1, data))
        except OSError:
            pass  # the server went away; the reader notices and closes every stream

    def serve(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _, magic = struct.unpack("<6I", _recv(self.sock, 24))
                if magic != command ^ 0xFFFFFFFF:
                    raise EOFError  # not adb: drop the connection, as adbd does
                self.handle(command, arg0, arg1, _recv(self.sock, length))
        except (OSError, EOFError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.closed_by_host()
            self.sock.close()

    def handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == CNXN:
            self.max_payload = min(arg1, MAX_PAYLOAD)
            if self.device.auth:
                self.send(AUTH, AUTH_TOKEN, 0, os.urandom(20))
            else:
                self.send(CNXN, VERSION, MAX_PAYLOAD, self.device.banner())
        elif command == AUTH:
            # A phone that never accepts the key: every signature gets a new token, and the public key the
            # server sends last (arg0 = 3) would raise the 'Allow USB debugging?' prompt that nobody answers.
            if arg0 == AUTH_SIGNATURE:
                self.send(AUTH, AUTH_TOKEN, 0, os.urandom(20))
        elif command == OPEN:
            service = data.rstrip(b"\0").decode()
            handler = self.device.handler(service)
            if handler is None:
                self.send(CLSE, 0, arg0)  # refused: the client says "error: closed"
                return
            stream = Stream(self, self.next_id, arg0)
            self.streams[stream.local_id] = stream
            self.next_id += 1
            self.send(OKAY, stream.local_id, arg0)
            threading.Thread(target=self._run, args=(handler, stream), daemon=True).start()
        elif (stream := self.streams.get(arg1)) is not None:
            if command == WRTE:
                stream.received(data)
            elif command == OKAY:
                stream.ready.set()
            elif command == CLSE:
                self.streams.pop(arg1, None)
                stream.closed_by_host()

    @staticmethod
    def _run(handler, stream: Stream) -> None:
        try:
            handler(stream)
        except EOFError:
            pass
        finally:
            stream.close()


class Device:
    """What the daemon serves: its properties and features, the shell's environment, the sync file system."""

    def __init__(self, workdir: str, props: dict, features: str, auth: bool, root: str | None):
        """`root`: run every command under `chroot ROOT` and serve paths inside it (a phone-like file system)."""
        self.workdir, self.props, self.features, self.auth, self.root = Path(workdir), props, features, auth, root
        bin_dir = Path(root, ".adbd", "bin") if root else self.workdir / "bin"  # where getprop lives
        bin_dir.mkdir(parents=True, exist_ok=True)
        listing = "".join(f"  echo {shlex.quote(f'[{k}]: [{v}]')}\n" for k, v in props.items())
        cases = "".join(f"  {shlex.quote(k)}) echo {shlex.quote(v)} ;;\n" for k, v in props.items())
        (bin_dir / "getprop").write_text(f'#!/bin/sh\nif [ -z "$1" ]; then\n{listing}  exit 0\nfi\ncase "$1" in\n{cases}'
                                         "  *) echo ;;\nesac\n")
        (bin_dir / "getprop").chmod(0o755)
        path = "/.adbd/bin:/system/bin:/usr/bin:/bin" if root else f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        self.env = dict(os.environ, PATH=path)
        self.sh = [shutil.which("chroot"), root, "sh", "-c"] if root else ["sh", "-c"]
        self.groups = self.workdir / "pgids"  # every command's process group, for LocalADBD.stop()

    def path(self, device_path: str) -> str:
        return os.path.join(self.root, device_path.lstrip("/")) if self.root else device_path

    def banner(self) -> bytes:
        props = "".join(f"{k}={self.props[k]};" for k in ("ro.product.name", "ro.product.model", "ro.product.device") if k in self.props)
        return f"device::{props}features={self.features}".encode()

    def handler(self, service: str):
        if service.startswith("shell") and ":" in service:
            args, _, command = service.partition(":")
            v2 = "v2" in args.split(",")[1:]
            return lambda stream: self.shell(stream, command, v2)
        if service == "sync:":
            return self.sync
        return None

    # -- shell ------------------------------------------------------------------------------------
    def shell(self, stream: Stream, command: str, v2: bool) -> None:
        """`sh -c COMMAND`. Protocol v1 (phones before Android 7, no shell_v2): the command runs on a pty, as
        adbd ran it then, so stdout and stderr arrive mixed, with \\r\\n line ends, and the exit code is lost.
        v2: packets of (id, u32 length, data): 1 stdout, 2 stderr, 3 the exit code. stdin is not forwarded."""
        if v2:
            proc = subprocess.Popen([*self.sh, command], cwd="/", env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            outputs = [(proc.stdout.fileno(), 1), (proc.stderr.fileno(), 2)]
        else:
            master, tty = pty.openpty()
            proc = subprocess.Popen([*self.sh, command], cwd="/", env=self.env, stdin=tty, stdout=tty, stderr=tty,
                                    start_new_session=True)
            outputs = [(master, 1)]
        with open(self.groups, "a") as f:
            f.write(f"{proc.pid}\n")
        stream.on_close = lambda: _kill_group(proc.pid)  # the host hung up: like adbd, end the command

        def pump(fd: int, ident: int) -> None:
            try:
                while chunk := _read(fd):
                    stream.write(struct.pack("<BI", ident, len(chunk)) + chunk if v2 else chunk)
            except EOFError:
                _kill_group(proc.pid)

        threads = [threading.Thread(target=pump, args=output, daemon=True) for output in outputs]
        for t in threads:
            t.start()
        if not v2:
            # The slave end stays open here until the command is done: closed at once, a command that wrote and
            # exited before the first read could leave the master at EIO with its output unread (seen under load:
            # "no exit status came back" with no output at all). Closed now, the master drains, then reads EIO.
            proc.wait()
            os.close(tty)
        for t in threads:
            t.join()
        code = proc.wait()
        if v2:
            stream.write(struct.pack("<BIB", 3, 1, code if code >= 0 else 128 - code))
        else:
            os.close(master)

    # -- sync: push and pull ----------------------------------------------------------------------
    def sync(self, stream: Stream) -> None:
        """Requests are (4-byte id, u32 length, path); SEND's data follows as DATA chunks and a DONE carrying the mtime."""
        while True:
            ident, length = struct.unpack("<4sI", stream.read(8))
            if ident == b"QUIT":
                return
            path = stream.read(length).decode()
            if ident == b"STAT":
                try:
                    st = os.lstat(self.path(path))
                    stream.write(struct.pack("<4s3I", b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
                except OSError:
                    stream.write(struct.pack("<4s3I", b"STAT", 0, 0, 0))  # all zeros: no such file
            elif ident == b"SEND":
                self._receive(stream, path)
            elif ident == b"RECV":
                self._send(stream, path)
            else:
                _fail(stream, f"unknown sync request {ident!r}")
                return

    def _receive(self, stream: Stream, spec: str) -> None:
        name, _, mode = spec.rpartition(",")
        path = self.path(name)
        data = bytearray()
        while True:
            ident, length = struct.unpack("<4sI", stream.read(8))
            if ident == b"DONE":
                break
            if ident != b"DATA":
                raise EOFError
            data += stream.read(length)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
            os.chmod(path, int(mode) & 0o7777)
            os.utime(path, (length, length))  # DONE's length field is the mtime
        except OSError as exc:
            return _fail(stream, f"couldn't create file: {exc.strerror}")
        stream.write(struct.pack("<4sI", b"OKAY", 0))

    def _send(self, stream: Stream, path: str) -> None:
        try:
            with open(self.path(path), "rb") as f:
                while chunk := f.read(SYNC_DATA_MAX):
                    stream.write(struct.pack("<4sI", b"DATA", len(chunk)) + chunk)
        except OSError as exc:
            return _fail(stream, f"open failed: {exc.strerror}")
        stream.write(struct.pack("<4sI", b"DONE", 0))


def _fail(stream: Stream, message: str) -> None:
    stream.write(struct.pack("<4sI", b"FAIL", len(message.encode())) + message.encode())


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, SYNC_DATA_MAX)
    except OSError:  # EIO: a pty whose command has exited
        return b""


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def serve(config: dict) -> None:
    """The daemon process: print the port, then accept connections until killed."""
    device = Device(**config)
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    while True:
        sock, _ = server.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # many small messages: no Nagle delays
        threading.Thread(target=Connection(sock, device).serve, daemon=True).start()


# -- the host side: helpers for tests -------------------------------------------------------------
@dataclass
class LocalADBD:
    port: int
    process: subprocess.Popen
    workdir: Path

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Pull the plug: SIGKILL the daemon and every command it started (no goodbye on the wire)."""
        self.process.kill()
        self.process.wait()
        groups = self.workdir / "pgids"
        for pgid in groups.read_text().split() if groups.exists() else []:
            _kill_group(int(pgid))


def start_adbd(workdir: Path, getprop: dict | None = None, *, root_dir: Path | None = None, features: str = "shell_v2,cmd",
               auth: bool = False) -> LocalADBD:
    """Start the daemon on a free port of 127.0.0.1. `getprop`: extra properties; `root_dir`: chroot the commands and
    paths into it (needs root; the daemon writes its getprop to ROOT/.adbd/bin); `features`: "" for a phone
    before Android 7; `auth`: never accept the server's key (an 'unauthorized' phone)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"workdir": str(workdir), "props": DEFAULT_PROPS | (getprop or {}), "features": features, "auth": auth,
              "root": str(root_dir) if root_dir else None}
    with open(workdir / "adbd.log", "w") as log:
        process = subprocess.Popen([sys.executable, __file__, json.dumps(config)], stdout=subprocess.PIPE, stderr=log,
                                   text=True, start_new_session=True)
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"local adbd did not start: {(workdir / 'adbd.log').read_text()}")
    return LocalADBD(int(line), process, workdir)


class AdbServer:
    """Debian's adb server on a private port, with HOME (its adbkey) and TMPDIR (its log) in `workdir`, not the user's.
    adb refuses to start a server for ADB_SERVER_SOCKET=tcp:127.0.0.1:PORT ("remote host"): localhost it is."""

    def __init__(self, workdir: Path, port: int):
        self.env = dict(os.environ, HOME=str(workdir), TMPDIR=str(workdir), ADB_SERVER_SOCKET=f"tcp:localhost:{port}")
        self.env.pop("ANDROID_ADB_SERVER_PORT", None)
        self.env.pop("ANDROID_SERIAL", None)
        res = self.adb("start-server")
        if res.returncode != 0:
            raise RuntimeError(f"adb start-server failed: {res.stderr}")

    def adb(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["adb", *args], env=self.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
