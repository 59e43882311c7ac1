"""TFLite (LiteRT) backend: ai-edge-litert, else tflite-runtime, whichever is installed.

A file whose image input takes pixels 0..255 (edge-sdk's NHWC image input, as MediaPipe
feeds it) says so in its embedded metadata; `run` still takes the normalised float32 NCHW
of every other Session and turns it back into pixels with the embedded mean / std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ArtifactError, MissingDependencyError
from .manifest import read_manifest
from .model_info import ModelInfo
from .session import Session
from .specs import Quantization, TensorSpec
from .tflite_metadata import read_embedded


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter

        return interpreter, "tflite-runtime"
    except ImportError:
        raise MissingDependencyError("ai-edge-litert", "runtime", "Running .tflite files") from None


class TFLiteSession(Session):
    backend = "tflite"

    def __init__(self, path: Path, threads: int | None = None, xnnpack: bool = True):
        module, package = _interpreter_module()
        self.path = Path(path)
        self.threads = threads
        self.xnnpack = xnnpack
        self.runtime_version = f"{package} {_version(package)}"
        resolver = module.OpResolverType.AUTO if xnnpack else module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._interp = module.Interpreter(
                model_path=str(self.path), num_threads=threads, experimental_op_resolver_type=resolver
            )
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(
                f"{self.path} is not a loadable TFLite model: {str(exc).strip().splitlines()[0][:300]}",
                "re-create it with `edge-sdk convert ... --target tflite`",
            ) from exc
        embedded, labels = read_embedded(self.path)
        manifest = read_manifest(self.path) or {}
        # TFLite's convention is NHWC for 4-D tensors unless the file's own info (or, for older files, the manifest) says
        # otherwise: a file that travelled without its manifest is still fed as it was converted.
        listed = manifest.get("inputs", []) + manifest.get("outputs", [])
        layouts = (embedded or {}).get("layouts") or {s["name"]: s.get("layout", "") for s in listed}
        self._in_details = self._interp.get_input_details()
        self._out_details = self._interp.get_output_details()
        self.inputs = [self._spec(d, layouts.get(d["name"], "NHWC" if len(d["shape"]) == 4 else "")) for d in self._in_details]
        self.outputs = [self._spec(d, layouts.get(d["name"], "NHWC" if len(d["shape"]) == 4 else "")) for d in self._out_details]
        self._info = ModelInfo.from_embedded(embedded, labels=labels) if embedded else None
        self._pixels = _pixel_transform(embedded)

    def run(self, inputs) -> list[np.ndarray]:
        """Normalised float32 NCHW in, float32 out; a pixel input gets its pixels back from mean / std."""
        if self._pixels is None:
            return super().run(inputs)
        mean, std = self._pixels
        pixels = (self._bind(inputs)[0] * std + mean) * np.float32(255.0)
        step = self.inputs[0].shape[0] or len(pixels)  # whole slices: Session.run would slice through this method again
        parts = [Session.run(self, [pixels[i : i + step]]) for i in range(0, len(pixels), step)]
        return [np.concatenate(outs, axis=0) for outs in zip(*parts)]

    @staticmethod
    def _spec(detail: dict, layout: str) -> TensorSpec:
        q = detail.get("quantization_parameters") or {}
        scales = tuple(float(s) for s in np.atleast_1d(q.get("scales", [])))
        quant = None
        if scales and detail["dtype"] in (np.int8, np.uint8, np.int16):
            zeros = tuple(int(z) for z in np.atleast_1d(q.get("zero_points", [0] * len(scales))))
            quant = Quantization(scales, zeros, int(q.get("quantized_dimension", 0)) if len(scales) > 1 else None)
        shape = tuple(None if s < 0 else int(s) for s in detail.get("shape_signature", detail["shape"]))
        return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]).name, layout, quant)

    def run_raw(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        for detail, x in zip(self._in_details, inputs):
            if tuple(detail["shape"]) != x.shape:
                self._interp.resize_tensor_input(detail["index"], x.shape)
                self._interp.allocate_tensors()
            self._interp.set_tensor(detail["index"], x)
        self._interp.invoke()
        return [self._interp.get_tensor(d["index"]).copy() for d in self._out_details]


def _pixel_transform(info: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) shaped for NCHW when the file takes pixels, from its embedded preprocessing."""
    if not info or not info["input"]["pixels"]:
        return None
    prep = info["preprocessing"]
    mean, std = (np.asarray(prep[k][: prep["channels"]], np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
    return mean, std


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def looks_like_tflite(path: Path) -> bool:
    """A .tflite flatbuffer carries the file identifier 'TFL3' at byte 4."""
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and head[4:8] == b"TFL3"
