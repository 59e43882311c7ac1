"""TensorSpec: a tensor's name, shape, dtype, layout and quantisation, as a runtime sees it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Quantization:
    """Affine quantisation `real = scale * (q - zero_point)`, per tensor (or per `axis`)."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def to_dict(self) -> dict:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point), "axis": self.axis}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. `shape` uses None for dynamic dims; `layout` is NCHW, NHWC or ''."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name: float32, float16, int8, uint8, int32, int64 ...
    layout: str = ""
    quantization: Quantization | None = None

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def nchw_shape(self) -> tuple[int | None, ...]:
        """The shape a caller of `Session.run` provides (NCHW even when the model is NHWC)."""
        if self.layout == "NHWC" and len(self.shape) == 4:
            n, h, w, c = self.shape
            return (n, c, h, w)
        return self.shape

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "quantization": self.quantization.to_dict() if self.quantization else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        q = d.get("quantization")
        return cls(
            name=d["name"],
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            layout=d.get("layout", ""),
            quantization=Quantization(tuple(q["scale"]), tuple(q["zero_point"]), q.get("axis")) if q else None,
        )
