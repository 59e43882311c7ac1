"""Session: the one interface every runtime backend implements.

A Session takes float32 NCHW and returns float32, whatever the artifact holds:
layout changes and int8/uint8 (de)quantisation happen here, once, so parity and
benchmark code is identical for every format. Backends only implement
`run_raw` on native tensors; timing lives outside them (see edge_sdk.verify).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from .manifest import read_manifest
from .model_info import ModelInfo
from .specs import TensorSpec


class Session(ABC):
    """A loaded artifact, ready to run. Subclasses set the attributes below in __init__."""

    backend: str
    runtime_version: str
    path: Path
    threads: int | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    _info: ModelInfo | None = None

    @abstractmethod
    def run_raw(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on native tensors (the artifact's own dtype and layout), one per input spec."""

    @property
    def info(self) -> ModelInfo:
        """How to feed this file and name its outputs: from inside the file, else from its manifest."""
        if self._info is None:
            manifest = read_manifest(self.path)
            self._info = self._embedded_info() or (ModelInfo.from_manifest(manifest) if manifest else None) or ModelInfo(
                name=self.path.stem, labels_note="the file carries no edge-sdk metadata and has no manifest beside it")
        return self._info

    def _embedded_info(self) -> ModelInfo | None:
        """The ModelInfo written inside the file; formats with a metadata slot override this."""
        return None

    def classify(self, image, top_k: int = 5):
        """Top-`top_k` Predictions (label, score) for a photo: a path, a PIL image or an HWC array (or a list of them).

        Preprocessing and class names come from the file (see `info`); the same on every format.
        """
        from .classify import classify

        return classify(self, image, top_k=top_k)

    def describe(self) -> dict:
        return {
            "backend": self.backend,
            "runtime_version": self.runtime_version,
            "path": str(self.path),
            "threads": self.threads,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "info": self.info.to_dict(),
        }

    def run(self, inputs) -> list[np.ndarray]:
        """float32 NCHW in (an array, a list, or a dict by input name) -> float32 outputs.

        A batch larger than the artifact's fixed batch size is run in slices.
        """
        arrays = self._bind(inputs)
        batch = arrays[0].shape[0] if arrays[0].ndim else 1
        fixed = self.inputs[0].shape[0] if self.inputs[0].shape else None
        if fixed is not None and batch != fixed and batch % fixed == 0 and fixed >= 1:
            parts = [self.run([a[i : i + fixed] for a in arrays]) for i in range(0, batch, fixed)]
            return [np.concatenate(outs, axis=0) for outs in zip(*parts)]
        natives = [to_native(spec, a) for spec, a in zip(self.inputs, arrays)]
        return [from_native(spec, y) for spec, y in zip(self.outputs, self.run_raw(natives))]

    def _bind(self, inputs) -> list[np.ndarray]:
        if isinstance(inputs, Mapping):
            missing = [s.name for s in self.inputs if s.name not in inputs]
            if missing:
                raise InputError(f"missing inputs: {', '.join(missing)}", f"this model takes: {self._signature()}")
            inputs = [inputs[s.name] for s in self.inputs]
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) != len(self.inputs):
            raise InputError(f"got {len(inputs)} inputs, the model takes {len(self.inputs)}", f"inputs: {self._signature()}")
        arrays = []
        for spec, x in zip(self.inputs, inputs):
            x = np.asarray(x)
            if x.dtype.kind != "f":
                raise InputError(
                    f"input {spec.name!r} has dtype {x.dtype}; Session.run takes float32 NCHW",
                    "convert with x.astype(np.float32), or use run_raw for native tensors",
                )
            expected = spec.nchw_shape()
            if x.ndim != len(expected) or any(
                e is not None and d != e for i, (d, e) in enumerate(zip(x.shape, expected)) if i > 0
            ):
                raise InputError(
                    f"input {spec.name!r} has shape {tuple(x.shape)}; the model takes {_shape_str(expected)} (NCHW)",
                    "resize / transpose the input to that shape",
                )
            arrays.append(x.astype(np.float32, copy=False))
        return arrays

    def _signature(self) -> str:
        return ", ".join(f"{s.name} {_shape_str(s.nchw_shape())} float32" for s in self.inputs)

    def check_raw(self, inputs: Sequence[np.ndarray]) -> None:
        """Raise InputError unless `inputs` match the native specs exactly (for run_raw callers)."""
        if len(inputs) != len(self.inputs):
            raise InputError(f"got {len(inputs)} inputs, the model takes {len(self.inputs)}")
        for spec, x in zip(self.inputs, inputs):
            if x.dtype != spec.np_dtype:
                raise InputError(f"input {spec.name!r} must be {spec.dtype} for run_raw, got {x.dtype}")
            if x.ndim != len(spec.shape) or any(e is not None and d != e for d, e in zip(x.shape, spec.shape)):
                raise InputError(f"input {spec.name!r} must have shape {_shape_str(spec.shape)}, got {tuple(x.shape)}")


def _shape_str(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def to_native(spec: TensorSpec, x: np.ndarray) -> np.ndarray:
    """float32 NCHW -> the artifact's layout and dtype (quantised with its scale / zero point)."""
    if spec.layout == "NHWC" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    if spec.quantization is not None and spec.dtype in ("int8", "uint8", "int16"):
        scale = np.asarray(spec.quantization.scale, np.float32)
        zero = np.asarray(spec.quantization.zero_point, np.float32)
        info = np.iinfo(spec.np_dtype)
        x = np.clip(np.round(x / scale) + zero, info.min, info.max)
    return np.ascontiguousarray(x.astype(spec.np_dtype, copy=False))


def from_native(spec: TensorSpec, y: np.ndarray) -> np.ndarray:
    """An output in the artifact's dtype and layout -> float32 (NCHW for 4-D outputs)."""
    y = np.asarray(y)
    if spec.quantization is not None and y.dtype.kind in "iu":
        scale = np.asarray(spec.quantization.scale, np.float32)
        zero = np.asarray(spec.quantization.zero_point, np.float32)
        y = (y.astype(np.float32) - zero) * scale
    y = y.astype(np.float32, copy=False)
    if spec.layout == "NHWC" and y.ndim == 4:
        y = y.transpose(0, 3, 1, 2)
    return y
