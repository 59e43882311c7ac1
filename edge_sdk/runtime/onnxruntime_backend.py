"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ArtifactError, require
from .manifest import read_manifest
from .model_info import INFO_KEY, ModelInfo, parse_embedded
from .session import Session
from .specs import TensorSpec

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def session_options(threads: int | None = None):
    """onnxruntime SessionOptions that compute int8 files exactly on every x86 CPU.

    On x86 CPUs with AVX2 but no VNNI, the fused u8s8 int8 kernels sum pairs of products in
    16 bits (vpmaddubsw) and saturate on ordinary 8-bit weights: MobileNetV2 int8 measured
    cosine 0.95 to the file's own QDQ numbers on an AVX2 EPYC. `session.x64quantprecision`
    makes onnxruntime use u8u8 kernels there when a weight needs all 8 bits (0.998, like the
    unfused file); ARM and VNNI CPUs are unaffected. Our own int8 files store uint8 weights and
    need no option (converters/onnx_qdq.py); this covers int8-weight files from other tools.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.x64quantprecision", "1")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


class OnnxRuntimeSession(Session):
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None):
        ort = require("onnxruntime", extra="runtime", purpose="Running .onnx files")
        self.path = Path(path)
        self.threads = threads
        self.runtime_version = ort.__version__
        options = session_options(threads)
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(
                f"{self.path} is not a loadable ONNX model: {first[:300]}",
                "re-create it with `edge-sdk convert ... --target onnx`",
            ) from exc
        layouts = {s["name"]: s.get("layout", "") for s in (read_manifest(self.path) or {}).get("inputs", [])}
        self.inputs = [self._spec(a, layouts.get(a.name, "NCHW" if len(a.shape) == 4 else "")) for a in self._session.get_inputs()]
        self.outputs = [self._spec(a, "") for a in self._session.get_outputs()]
        self._input_names = [s.name for s in self.inputs]

    @staticmethod
    def _spec(arg, layout: str) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
        return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type), layout)

    def _embedded_info(self) -> ModelInfo | None:
        info = parse_embedded(self._session.get_modelmeta().custom_metadata_map.get(INFO_KEY))
        return ModelInfo.from_embedded(info) if info else None

    def run_raw(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, dict(zip(self._input_names, inputs)))
