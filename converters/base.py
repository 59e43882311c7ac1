"""What every converter shares: the table of targets, the Artifact type, atomic writes, manifests.

`TARGETS` is the one table of formats that the CLI, the README and the tests
read; a target appears there only once its converter works.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator

from ..errors import OutputPathError
from ..runtime.manifest import manifest_path
from ..runtime.specs import TensorSpec

FOLDER_SUFFIXES = (".mlpackage",)  # artifacts that are folders, written and replaced as a whole


@dataclass(frozen=True)
class TargetInfo:
    name: str
    suffix: str
    extra: str  # pip extra that brings the converter's dependencies
    backend: str  # runtime backend that runs the artifact
    precisions: tuple[str, ...]
    module: str  # converter module inside edge_sdk.converters
    description: str


TARGETS: dict[str, TargetInfo] = {
    "onnx": TargetInfo(
        name="onnx",
        suffix=".onnx",
        extra="onnx",
        backend="onnxruntime",
        precisions=("fp32", "int8", "int8-weights"),
        module="onnx",
        description="ONNX via torch.onnx (dynamo exporter); int8 as QDQ from the QuantPlan, run by onnxruntime",
    ),
    "tflite": TargetInfo(
        name="tflite",
        suffix=".tflite",
        extra="tflite",
        backend="tflite",
        precisions=("fp32", "fp16", "int8-weights", "int8"),
        module="tflite",
        description="TFLite flatbuffer from our own emitter (NHWC, fused activations), run by ai-edge-litert",
    ),
    "coreml": TargetInfo(
        name="coreml",
        suffix=".mlpackage",
        extra="coreml",
        backend="coreml",
        precisions=("fp16", "fp32", "int8-weights", "int8"),
        module="coreml",
        description="CoreML ML Program (.mlpackage folder) via coremltools; run by MLModel on macOS, "
                    "by edge-sdk's reference interpreter elsewhere",
    ),
}


@dataclass
class Artifact:
    """A converted file plus what it takes and gives; the manifest JSON sits beside it."""

    path: Path
    target: str
    precision: str
    size_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    seconds: float
    manifest_path: Path
    card: dict | None = None
    options: dict = field(default_factory=dict)
    quantization: dict | None = None  # the QuantSummary (+ plan file) of an int8 artifact
    simulation: object = field(default=None, repr=False, compare=False)  # the QuantizedModel it was emitted from

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "target": self.target,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "seconds": round(self.seconds, 3),
            "manifest": str(self.manifest_path),
            "options": self.options,
            "quantization": self.quantization,
        }


def check_output_path(path: Path) -> None:
    """Raise OutputPathError now if `path` could not be written later (creates nothing)."""
    if path.is_dir() and path.suffix not in FOLDER_SUFFIXES:
        raise OutputPathError(f"{path} is a folder", "pass a file path, or a folder to write into")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot create folder {path.parent}: {ancestor} is a file in the way", "choose another --out")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"folder {ancestor} is not writable", "choose a folder you can write to with --out")


def prepare_output_dir(path: Path) -> None:
    """Create the folder for `path`, or raise OutputPathError saying why it cannot be used."""
    check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create folder {path.parent}: {exc.strerror}", "choose another --out") from None


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    prepare_output_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp made it 0600; give it the mode a plain open() would
            tmp_path.chmod(0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dependency_versions(*packages: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("edge-sdk", "numpy", "torch", *packages):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def sha256(path: Path) -> str:
    """Checksum of a file, or of a folder artifact (.mlpackage): its relative paths and contents in order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def write_manifest(artifact: Artifact, *, packages: tuple[str, ...], preprocessing: dict | None) -> None:
    """Write `<artifact>.json`: card, options, I/O, preprocessing, versions, checksum."""
    body = {
        "format": "edge-sdk-manifest/1",
        "target": artifact.target,
        "precision": artifact.precision,
        "file": artifact.path.name,
        "sha256": sha256(artifact.path),
        "size_bytes": artifact.size_bytes,
        "inputs": [s.to_dict() for s in artifact.inputs],
        "outputs": [s.to_dict() for s in artifact.outputs],
        "model": artifact.card,
        "preprocessing": preprocessing,
        "options": artifact.options,
        "conversion_seconds": round(artifact.seconds, 3),
        "versions": dependency_versions(*packages),
    }
    with atomic_output(manifest_path(artifact.path)) as tmp:
        tmp.write_text(json.dumps(body, indent=2) + "\n")


def plan_path(artifact_path: Path) -> Path:
    """Where an int8 artifact's QuantPlan is kept: `model.tflite` -> `model.tflite.quantplan.json`."""
    return artifact_path.with_name(artifact_path.name + ".quantplan.json")


def add_quantization(artifact: Artifact, plan, summary: dict) -> None:
    """Write the plan beside an int8 artifact and record it in the manifest (both atomically).

    The plan file lets another target be emitted later with exactly the same int8 decisions
    (`--plan FILE`), without calibrating again.
    """
    target = plan_path(artifact.path)
    with atomic_output(target) as tmp:
        tmp.write_text(plan.to_json())
    artifact.quantization = {**summary, "plan": target.name, "plan_sha256": sha256(target)}
    manifest = manifest_path(artifact.path)
    body = json.loads(manifest.read_text())
    body["quantization"] = artifact.quantization
    with atomic_output(manifest) as tmp:
        tmp.write_text(json.dumps(body, indent=2) + "\n")
