"""Flatbuffer bookkeeping for a one-subgraph .tflite: tensors, buffers, operator codes, operators.

Lowering code adds tensors and operators by index and never touches the schema's
object API. `finish()` drops operators nothing reads, then unused tensors and
buffers, gives each builtin one operator code at the highest version its uses
need, and packs the file. Quantisation parameters hang off `Tensor.quant`, so the
int8 path can attach them without another builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .versions import op_version

TENSOR_TYPES = {
    np.dtype(np.float32): schema.TensorType.FLOAT32,
    np.dtype(np.float16): schema.TensorType.FLOAT16,
    np.dtype(np.int32): schema.TensorType.INT32,
    np.dtype(np.int64): schema.TensorType.INT64,
    np.dtype(np.int8): schema.TensorType.INT8,
    np.dtype(np.uint8): schema.TensorType.UINT8,
    np.dtype(np.int16): schema.TensorType.INT16,
}


@dataclass
class QuantParams:
    """Affine quantisation of one tensor: per tensor, or per channel along `axis`."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = None  # constant contents, already in `dtype` and `shape`
    quant: QuantParams | None = None


@dataclass
class Op:
    code: int  # schema.BuiltinOperator
    inputs: list[int]  # -1 marks an omitted optional input
    outputs: list[int]
    options: object | None = None  # a schema *OptionsT instance
    origin: str = ""  # the FX node whose lowering made this operator (the QuantPlan's key)

    @property
    def fused_activation(self) -> int | None:
        return getattr(self.options, "fusedActivationFunction", None)


@dataclass
class ModelBuilder:
    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def tensor(self, name: str, shape, dtype=np.float32) -> int:
        self.tensors.append(Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype)))
        return len(self.tensors) - 1

    def constant(self, name: str, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        self.tensors.append(Tensor(name, array.shape, array.dtype, array))
        return len(self.tensors) - 1

    def op(self, code: int, inputs, outputs, options=None) -> Op:
        op = Op(code, [int(i) for i in inputs], [int(o) for o in outputs], options)
        self.ops.append(op)
        return op

    def consumers(self) -> dict[int, list[Op]]:
        readers: dict[int, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                readers.setdefault(t, []).append(op)
        return readers

    def remove_dead_ops(self) -> None:
        """Drop operators whose outputs nothing reads (pattern matches leave such ops behind)."""
        while True:
            readers = self.consumers()
            live = [op for op in self.ops if any(t in readers or t in self.outputs for t in op.outputs)]
            if len(live) == len(self.ops):
                return
            self.ops = live

    def finish(self, *, description: str, signature: tuple[list[str], list[str]], metadata: dict[str, bytes] | None = None) -> bytes:
        """Pack the model; `signature` names the inputs and outputs of `serving_default`.

        `metadata` becomes the model's `metadata` list, each entry a name and a buffer holding
        its bytes (TFLITE_METADATA for MediaPipe and Android tooling, edge-sdk's own JSON).
        """
        self.remove_dead_ops()
        used = sorted({t for op in self.ops for t in op.inputs + op.outputs if t >= 0} | set(self.inputs) | set(self.outputs))
        index = {old: new for new, old in enumerate(used)}
        model = schema.ModelT()
        model.version = 3
        model.description = description
        model.buffers = [schema.BufferT()]  # buffer 0: the empty placeholder TFLite requires
        tensors = []
        for old in used:
            tensors.append(self._pack_tensor(self.tensors[old], model.buffers))
        codes: dict[int, int] = {}  # builtin -> index into operatorCodes
        model.operatorCodes = []
        ops = []
        for op in self.ops:
            version = op_version(op, self.tensors)
            if op.code not in codes:
                code = schema.OperatorCodeT()
                code.builtinCode = op.code
                code.deprecatedBuiltinCode = min(op.code, 127)
                code.version = version
                codes[op.code] = len(model.operatorCodes)
                model.operatorCodes.append(code)
            entry = model.operatorCodes[codes[op.code]]
            entry.version = max(entry.version, version)
            packed = schema.OperatorT()
            packed.opcodeIndex = codes[op.code]
            packed.inputs = np.array([index[t] if t >= 0 else -1 for t in op.inputs], np.int32)
            packed.outputs = np.array([index[t] for t in op.outputs], np.int32)
            if op.options is not None:
                packed.builtinOptionsType = getattr(schema.BuiltinOptions, type(op.options).__name__[:-1])
                packed.builtinOptions = op.options
            ops.append(packed)
        graph = schema.SubGraphT()
        graph.name = "main"
        graph.tensors = tensors
        graph.inputs = np.array([index[t] for t in self.inputs], np.int32)
        graph.outputs = np.array([index[t] for t in self.outputs], np.int32)
        graph.operators = ops
        model.subgraphs = [graph]
        model.signatureDefs = [_signature(signature, [index[t] for t in self.inputs], [index[t] for t in self.outputs])]
        return pack_model(model, metadata or {})

    @staticmethod
    def _pack_tensor(t: Tensor, buffers: list) -> object:
        packed = schema.TensorT()
        packed.name = t.name
        packed.shape = np.array(t.shape, np.int32)
        packed.type = TENSOR_TYPES[t.dtype]
        packed.buffer = 0
        if t.data is not None:
            buf = schema.BufferT()
            buf.data = np.frombuffer(t.data.tobytes(), np.uint8)  # 1-D uint8: packs as one vector
            buffers.append(buf)
            packed.buffer = len(buffers) - 1
        if t.quant is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.asarray(t.quant.scale, np.float32).reshape(-1)
            q.zeroPoint = np.asarray(t.quant.zero_point, np.int64).reshape(-1)
            q.quantizedDimension = t.quant.axis
            packed.quantization = q
        return packed


def pack_model(model, metadata: dict[str, bytes]):
    """The .tflite bytes of a schema ModelT, with `metadata` entries added (an entry of the same name is replaced)."""
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) not in metadata]
    for name, data in metadata.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(data, np.uint8)
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = _SharingBuilder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _SharingBuilder(flatbuffers.Builder):
    """Writes each distinct numpy vector once; every table with the same contents points to it.

    Flatbuffers allow shared vectors. It matters for int8 files: the schema gives every
    per-channel tensor its own int64 zero-point vector (all zeros), 8 bytes a channel,
    which alone made MobileNetV2's int8 file 0.287x its float32 file instead of 0.267x.
    """

    def __init__(self, size: int):
        super().__init__(size)
        self._written: dict[tuple[str, bytes], int] = {}

    def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
        key = (x.dtype.str, x.tobytes())
        if key not in self._written:
            self._written[key] = super().CreateNumpyVector(x)
        return self._written[key]


def _signature(names: tuple[list[str], list[str]], inputs: list[int], outputs: list[int]):
    sig = schema.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    sig.inputs = [_tensor_map(n, i) for n, i in zip(names[0], inputs)]
    sig.outputs = [_tensor_map(n, i) for n, i in zip(names[1], outputs)]
    return sig


def _tensor_map(name: str, index: int):
    m = schema.TensorMapT()
    m.name = name
    m.tensorIndex = index
    return m
