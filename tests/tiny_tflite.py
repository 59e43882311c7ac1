"""A one-op .tflite written with the schema's object API, to test the TFLite runtime backend
before (and independently of) the TFLite converter."""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema


def write_relu_model(path: Path, *, dtype: str = "int8", scale: float = 0.05, zero_point: int = -3) -> Path:
    """NHWC [1, 4, 4, 3] -> RELU -> same shape; int8 with the given qparams, or float32."""
    model = schema.ModelT()
    model.version = 3
    model.description = "edge-sdk test: relu"
    model.buffers = [schema.BufferT()]  # buffer 0: the empty placeholder TFLite requires
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.RELU
    code.deprecatedBuiltinCode = min(schema.BuiltinOperator.RELU, 127)
    code.version = 2 if dtype == "int8" else 1
    model.operatorCodes = [code]
    tensors = []
    for i, name in enumerate(("input", "output")):
        t = schema.TensorT()
        t.name = name
        t.shape = np.array([1, 4, 4, 3], np.int32)
        t.type = schema.TensorType.INT8 if dtype == "int8" else schema.TensorType.FLOAT32
        t.buffer = 0
        if dtype == "int8":
            q = schema.QuantizationParametersT()
            q.scale = np.array([scale], np.float32)
            q.zeroPoint = np.array([zero_point], np.int64)
            t.quantization = q
        tensors.append(t)
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = np.array([0], np.int32)
    op.outputs = np.array([1], np.int32)
    graph = schema.SubGraphT()
    graph.tensors = tensors
    graph.inputs = np.array([0], np.int32)
    graph.outputs = np.array([1], np.int32)
    graph.operators = [op]
    graph.name = "main"
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path
