"""Runners: benchmark and verify an artifact on a device, returning the same reports as on the host.

A Runner pushes the artifact (and its manifest) into a fresh temporary folder on
the device, runs edge-sdk's own benchmark there, pulls the result and removes the
folder, also when the run failed. For parity, inputs are made on the host (real
photos, preprocessed per the manifest) and the reference runs on the host; only
`Session.run` happens on the device (`RemoteSession`), so a device's parity is
the very same `check_parity` / ParityReport as on the host.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ArtifactError
from ..runtime import Session, load
from ..runtime.manifest import manifest_path
from ..runtime.specs import TensorSpec
from ..verify.bench import BenchReport, benchmark, check_benchmarkable
from ..verify.host import describe_host, device_state
from ..verify.parity import ParityReport, check_parity
from .bundle import agent_bundle
from .transport import DeviceError, DeviceSetupError, DeviceTimeoutError, Transport

MIN_PYTHON = (3, 10)
# Which Python distributions can open each artifact suffix on a device (any one of them will do).
RUNTIME_FOR_SUFFIX = {".tflite": ("ai-edge-litert", "tflite-runtime"), ".onnx": ("onnxruntime",)}
FREE_SPACE_MARGIN = 16 << 20


class Runner:
    """Where artifacts run. `target` is the string it was made from (`local`, `ssh://...`, `adb://...`)."""

    target: str

    def describe(self) -> dict:
        """Board, CPU, cores, arch, OS, Python and runtime versions, governor, temperature."""
        raise NotImplementedError

    def bench(self, files: Sequence[str | Path], **options) -> list[BenchReport]:
        """`edge_sdk.verify.benchmark(file, **options)` on the device, one report per file."""
        raise NotImplementedError

    def session(self, file: str | Path, threads: int | None = None) -> contextlib.AbstractContextManager[Session]:
        """A Session whose `run` executes on the device (a context manager: the device side is cleaned up after)."""
        raise NotImplementedError

    def verify(self, file: str | Path, reference, samples=None, **parity_options) -> ParityReport:
        """`check_parity(reference, file)` with the artifact run on the device and everything else on the host."""
        with self.session(file, threads=parity_options.pop("threads", None)) as session:
            report = check_parity(reference, session, samples, **parity_options)
        report.artifact = str(file)
        report.notes.append(f"artifact run on {self.target}; inputs made and outputs compared on the host")
        return report


class LocalRunner(Runner):
    """This machine, in process: the reference point for every device number."""

    target = "local"

    def describe(self) -> dict:
        return describe_host() | {"state": device_state()}

    def bench(self, files, **options) -> list[BenchReport]:
        for f in files:  # before any run: a comparison should not die after timing the first files
            check_benchmarkable(Path(f), options.get("backend"))
        return [benchmark(Path(f), **options) for f in files]

    @contextlib.contextmanager
    def session(self, file, threads=None) -> Iterator[Session]:
        yield load(file, threads=threads)

    def verify(self, file, reference, samples=None, **parity_options) -> ParityReport:
        return check_parity(reference, file, samples, **parity_options)


# Runs on the device before anything is pushed: makes the work folder and says what is installed.
PROBE = textwrap.dedent("""
    import json, shutil, sys, tempfile
    try:
        from importlib import metadata
    except ImportError:
        metadata = None
    def version(name):
        try:
            return metadata.version(name)
        except Exception:
            return None
    base = sys.argv[1] or None
    folder = tempfile.mkdtemp(prefix="edge-sdk-", dir=base)
    print(json.dumps({"dir": folder, "python": list(sys.version_info[:3]), "executable": sys.executable,
                      "free_bytes": shutil.disk_usage(folder).free,
                      "packages": {n: version(n) for n in ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime")}}))
""")


@dataclass
class Workspace:
    dir: str
    probe: dict


class AgentRunner(Runner):
    """A Linux device with Python (a Raspberry Pi over SSH, Termux over adb): edge-sdk's agent runs there.

    `python` is the device's interpreter (default `python3`; a venv's, e.g.
    `~/venv/bin/python`), `tmp` the folder under which the work folder is made
    (default: the device's temporary folder), `timeout_s` the limit for one command.
    """

    def __init__(self, transport: Transport, *, python: str = "python3", tmp: str | None = None, timeout_s: float = 600.0):
        self.transport, self.python, self.tmp, self.timeout_s = transport, python, tmp, timeout_s
        self.target = transport.name

    # -- work folder -------------------------------------------------------------------------
    @contextlib.contextmanager
    def workspace(self, files: Sequence[Path] = ()) -> Iterator[Workspace]:
        """A fresh folder on the device holding the agent and `files` (+ manifests); removed afterwards."""
        for f in files:
            if not Path(f).exists():
                raise ArtifactError(f"{f} does not exist", "check the path, or convert a model first")
        ws = self._probe()
        try:
            self._check(ws.probe, files)
            push = [agent_bundle()] + [p for f in files for p in (Path(f), manifest_path(f)) if p.exists()]
            self.transport.push(push, ws.dir, self.timeout_s)
            yield ws
        except DeviceError as exc:
            self._cleanup(ws, exc)
            raise
        except BaseException:
            self._cleanup(ws, None)
            raise
        else:
            self._cleanup(ws, None)

    def _python_argv(self) -> list[str]:
        return [self.python]

    def _probe(self) -> Workspace:
        if self.python.startswith("~/"):  # expand the device's home once: argv is quoted, so its shell would not
            self.python = self.transport.run(["sh", "-c", "echo $HOME"], 60).stdout.strip() + self.python[1:]
        res = self.transport.run([*self._python_argv(), "-c", PROBE, self.tmp or ""], min(self.timeout_s, 120))
        if res.returncode != 0 or not res.stdout.strip():
            said = res.stderr + res.stdout  # a pty (adb before Android 7) sends the error text on stdout
            # the shell's "not found" for the interpreter itself; a traceback is Python failing to make the folder
            missing = res.returncode == 127 or ("Traceback" not in said and ("not found" in said or "No such file" in said))
            if missing:
                raise DeviceSetupError(f"{self.target}: no Python at '{self.python}'",
                                       "install Python >= 3.10 on the device (e.g. `sudo apt install python3`), "
                                       "or give its path with ?python=/path/to/python in the target")
            raise DeviceSetupError(f"{self.target}: cannot make a work folder under {self.tmp or 'the temporary folder'}: "
                                   f"{_tail(said)}", "give a writable folder with ?tmp=DIR in the target")
        probe = json.loads(res.stdout.strip().splitlines()[-1])
        return Workspace(probe["dir"], probe)

    def _check(self, probe: dict, files: Sequence[Path]) -> None:
        """Python version, packages for these files, disk space: one message naming what to install."""
        if tuple(probe["python"][:2]) < MIN_PYTHON:
            raise DeviceSetupError(f"{self.target}: Python {'.'.join(map(str, probe['python']))} is too old for the agent",
                                   f"install Python >= {'.'.join(map(str, MIN_PYTHON))}, or point ?python= at one")
        have = probe["packages"]
        need = [] if have.get("numpy") else ["numpy"]
        for f in files:
            options = RUNTIME_FOR_SUFFIX.get(Path(f).suffix.lower(), ())
            if options and not any(have.get(o) for o in options) and options[0] not in need:
                need.append(options[0])
        if need:
            raise DeviceSetupError(
                f"{self.target}: {probe['executable']} lacks {', '.join(need)}",
                f"on the device run: {probe['executable']} -m pip install {' '.join(need)}   "
                "(or `pip install 'edge-sdk[runtime]'`; torch is not needed there)",
            )
        size = sum(_size(Path(f)) for f in files) + FREE_SPACE_MARGIN
        if probe["free_bytes"] < size:
            raise DeviceSetupError(f"{self.target}: only {probe['free_bytes'] / 1e6:.1f} MB free in {probe['dir']}, "
                                   f"{size / 1e6:.1f} MB needed", "free some space, or choose another folder with ?tmp=DIR")

    def _cleanup(self, ws: Workspace, error: DeviceError | None) -> None:
        try:
            res = self.transport.run(["rm", "-rf", ws.dir], 60)
            if res.returncode != 0:
                raise DeviceError(f"rm exited with {res.returncode}: {_tail(res.stderr + res.stdout)}")
        except DeviceError as exc:
            left = f"{ws.dir} may be left on {self.target} (cleaning up failed: {exc.message}); remove it by hand"
            if error is None:
                raise DeviceError(left) from exc
            error.hint = f"{error.hint}; {left}" if error.hint else left

    # -- the agent -----------------------------------------------------------------------------
    def agent(self, ws: Workspace, command: str, request: dict) -> dict:
        """Run one agent command in `ws` and return its answer (the pulled result file)."""
        request = request | {"timeout_s": int(self.timeout_s)}
        result = f"{ws.dir}/{command}.json"
        argv = [*self._python_argv(), f"{ws.dir}/{agent_bundle().name}", command, json.dumps(request), result]
        # the agent's own alarm fires first; the host waits a little longer for the connection
        # no `exec`: the shell turns a death by signal into an ordinary exit status (128 + N) that ssh passes on
        script = f"cd {shlex.quote(ws.dir)} && {shlex.join(argv)}; status=$?; exit $status"
        res = self.transport.run(["sh", "-c", script], self.timeout_s + 30)
        if res.returncode == 128 + 14:  # SIGALRM: the agent's time limit
            raise DeviceTimeoutError(f"{self.target}: `{command}` did not finish within {self.timeout_s:.0f} s",
                                     "raise --timeout, or use fewer runs / a smaller model")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "result.json"
            try:
                self.transport.pull(result, local, 120)
                answer = json.loads(local.read_text())
            except (DeviceError, OSError, ValueError):
                raise DeviceError(f"{self.target}: the agent failed (`{command}`, exit {res.returncode}): "
                                  f"{_tail(res.stderr) or _tail(res.stdout)}") from None
        if "error" in answer:
            err = answer["error"]
            raise DeviceError(f"{self.target}: {err['message']} ({err['type']})", err.get("hint"))
        return answer

    def pull_array_file(self, remote: str) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "outputs.npz"
            self.transport.pull(remote, local, 300)
            with np.load(local) as data:
                return {k: data[k] for k in data.files}

    # -- Runner API ----------------------------------------------------------------------------
    def describe(self) -> dict:
        with self.workspace() as ws:
            answer = self.agent(ws, "describe", {})
        return answer["device"] | {"state": answer["state"], "target": self.target, "agent": answer["agent"]}

    def bench(self, files, **options) -> list[BenchReport]:
        files = [Path(f) for f in files]
        with self.workspace(files) as ws:
            answer = self.agent(ws, "bench", {"files": [f.name for f in files], "options": options})
        reports = []
        for f, d in zip(files, answer["reports"]):
            report = BenchReport.from_dict(d)
            report.artifact, report.target = str(f), self.target
            reports.append(report)
        return reports

    @contextlib.contextmanager
    def session(self, file, threads=None) -> Iterator[Session]:
        file = Path(file)
        with self.workspace([file]) as ws:
            yield RemoteSession(self, ws, file, threads)


class RemoteSession(Session):
    """A Session whose inference runs on the device: float NCHW in on the host, float out on the host.

    The device's own Session does the layout and (de)quantisation, so what is
    compared is exactly what a deployed app on that device would compute.
    """

    def __init__(self, runner: AgentRunner, ws: Workspace, file: Path, threads: int | None):
        self._runner, self._ws, self._file = runner, ws, file.name
        self.path, self.threads = file, threads
        info = runner.agent(ws, "inspect", {"file": self._file, "threads": threads})
        self.backend = info["backend"]
        self.runtime_version = f"{info['runtime_version']} on {runner.target}"
        self.inputs = [TensorSpec.from_dict(s) for s in info["inputs"]]
        self.outputs = [TensorSpec.from_dict(s) for s in info["outputs"]]

    def run(self, inputs) -> list[np.ndarray]:
        return self._remote(self._bind(inputs), raw=False)

    def run_raw(self, inputs) -> list[np.ndarray]:
        self.check_raw(inputs)
        return self._remote(list(inputs), raw=True)

    def _remote(self, arrays: list[np.ndarray], raw: bool) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "inputs.npz"
            np.savez(local, **{str(i): a for i, a in enumerate(arrays)})
            self._runner.transport.push([local], self._ws.dir, self._runner.timeout_s)
        request = {"file": self._file, "threads": self.threads, "inputs": "inputs.npz", "outputs": "outputs.npz", "raw": raw}
        self._runner.agent(self._ws, "run", request)
        outputs = self._runner.pull_array_file(f"{self._ws.dir}/outputs.npz")
        return [outputs[k] for k in sorted(outputs, key=int)]


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0
