"""The runtime API: `load(path) -> Session`; `Session.run(float NCHW) -> float outputs`.

This package is what a device installs (`pip install 'edge-sdk[runtime]'`): it
imports numpy and an interpreter, never torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ArtifactError
from .session import Session
from .specs import Quantization, TensorSpec

# backend name -> (module, class, file suffixes it opens)
BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeSession", (".onnx",)),
    "tflite": ("tflite_backend", "TFLiteSession", (".tflite",)),
    "torch": ("torch_backend", "TorchSession", (".pt2",)),
    # on macOS MLModel.predict; elsewhere our reference interpreter (the session's backend says which ran)
    "coreml": ("coreml_backend", "CoreMLSession", (".mlpackage",)),
}


def backend_for(path: str | Path) -> str:
    """The backend that opens `path`, chosen from its suffix (and checked against its bytes)."""
    suffix = Path(path).suffix.lower()
    for name, (_, _, suffixes) in BACKENDS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for _, _, sfx in BACKENDS.values() for s in sfx)
    raise ArtifactError(f"cannot tell the format of {path}", f"artifacts end in one of: {known}")


def load(path: str | Path, backend: str | None = None, threads: int | None = None, **options) -> Session:
    """Open an artifact with `backend` (default: from the file) using `threads` CPU threads."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist", "check the path, or convert a model first")
    if path.is_file() and path.stat().st_size == 0:
        raise ArtifactError(f"{path} is empty", "re-create it; the conversion that wrote it did not finish")
    backend = backend or backend_for(path)
    if backend not in BACKENDS:
        raise ArtifactError(f"unknown backend {backend!r}", f"choose one of: {', '.join(BACKENDS)}")
    if backend == "tflite":
        from .tflite_backend import looks_like_tflite

        if not looks_like_tflite(path):
            raise ArtifactError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier)",
                                "re-create it with `edge-sdk convert ... --target tflite`")
    module, cls, _ = BACKENDS[backend]
    session_cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return session_cls(path, threads=threads, **options)


__all__ = ["BACKENDS", "Quantization", "Session", "TensorSpec", "backend_for", "load"]
