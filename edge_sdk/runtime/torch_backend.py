"""PyTorch backend: runs a saved torch.export program (.pt2), the float reference on the host.

torch is imported only when this backend is used, so `edge_sdk.runtime` stays
importable on a device without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ArtifactError, require
from .session import Session
from .specs import TensorSpec


class TorchSession(Session):
    backend = "torch"

    def __init__(self, path: Path, threads: int | None = None):
        torch = require("torch", extra="onnx", purpose="Running .pt2 programs")
        self.path = Path(path)
        self.threads = threads
        self.runtime_version = torch.__version__
        try:
            program = torch.export.load(str(self.path))
        except Exception as exc:  # torch raises several types for corrupt archives
            raise ArtifactError(f"{self.path} is not a loadable torch.export program: {exc}") from exc
        self._module = program.module()
        self._torch = torch
        placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
        self.inputs = [self._spec(n.name, n.meta["val"], "NCHW") for n in placeholders]
        outputs = next(n for n in program.graph.nodes if n.op == "output").args[0]
        self.outputs = [self._spec(f"output_{i}", o.meta["val"], "") for i, o in enumerate(outputs)]

    @staticmethod
    def _spec(name: str, val, layout: str) -> TensorSpec:
        shape = tuple(int(d) if isinstance(d, int) else None for d in val.shape)
        return TensorSpec(name, shape, str(val.dtype).removeprefix("torch."), layout if len(shape) == 4 else "")

    def run_raw(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        # torch's thread count is process-wide: set for this call only, so loading a session
        # with threads=1 does not slow down (or change the float rounding of) the rest of the program.
        before = self._torch.get_num_threads()
        self._torch.set_num_threads(self.threads or before)
        try:
            with self._torch.no_grad():
                out = self._module(*[self._torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        finally:
            self._torch.set_num_threads(before)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.numpy() for o in out]
