"""Builtin operator versions, after TFLite's own rules (lite/tools/versioning/op_version.cc).

An interpreter refuses a file whose operator code asks for a version it lacks, and a
kernel may run the wrong code path when the version is too low; so each operator
gets the version its input types, ranks and options need. The int8 rules are here
too, for the quantised path.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

B = schema.BuiltinOperator
_INT8 = np.dtype(np.int8)

# Builtins whose version is 2 for int8 inputs and 1 otherwise (no rank or option rules);
# every builtin not named below (RESHAPE, HARD_SWISH, QUANTIZE ...) is version 1.
_INT8_IS_2 = {
    B.ADD, B.MUL, B.AVERAGE_POOL_2D, B.MAX_POOL_2D, B.CONCATENATION, B.SOFTMAX, B.MEAN, B.LOGISTIC,
    B.TANH, B.RELU, B.RELU6, B.RSQRT, B.SQUARED_DIFFERENCE, B.GELU, B.BATCH_MATMUL,
}


def op_version(op, tensors) -> int:
    """The lowest version of `op.code` that supports this operator (float32 or int8)."""
    ins = [tensors[i] for i in op.inputs if i >= 0]
    first = ins[0].dtype
    rank = len(ins[0].shape)
    int8 = first == _INT8
    broadcast_over_4d = len(ins) > 1 and ins[0].shape != ins[1].shape and max(len(t.shape) for t in ins) > 4
    code = op.code
    if code == B.CONV_2D:
        grouped = ins[0].shape[-1] != ins[1].shape[-1]
        return 6 if grouped else 3 if int8 else 1
    if code == B.DEPTHWISE_CONV_2D:
        if int8:
            return 3
        return 2 if (op.options.dilationWFactor, op.options.dilationHFactor) != (1, 1) else 1
    if code == B.FULLY_CONNECTED:
        if len(op.inputs) == 2:
            return 6
        if op.options.keepNumDims:
            return 5
        return 4 if int8 else 1
    if code == B.TRANSPOSE:
        return 6 if rank > 5 else 4 if rank > 4 else 2 if int8 else 1
    if code in (B.PAD, B.PADV2):
        return 4 if rank > 4 else 2 if int8 else 1
    if code == B.STRIDED_SLICE:
        return 4 if rank > 4 else 2 if int8 else 1
    if code in (B.SUB, B.MAXIMUM, B.MINIMUM):
        return 3 if broadcast_over_4d else 2 if int8 else 1
    if code == B.DIV:
        return 2 if broadcast_over_4d else 1
    if code == B.DEQUANTIZE:
        if int8 and ins[0].quant is not None and len(ins[0].quant.scale) > 1:
            return 5  # per-channel int8 (int8-weights filters)
        return 3 if first == np.dtype(np.float16) else 2 if int8 else 1
    if code == B.BROADCAST_TO:
        return 3 if int8 else 2  # version 1 was withdrawn
    if code in _INT8_IS_2:
        return 2 if int8 else 1
    return 1
