"""Fold RELU / RELU6 / RELU_N1_TO_1 into the operator that feeds them.

TFLite kernels apply a `fused_activation_function` for free as they write their
output; a separate activation op costs a pass over memory (and, in int8, a
requantisation). The fused operator writes the activation's output tensor, so its
name (and, later, its quantisation) is the activation's.
"""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from .builder import ModelBuilder

B = schema.BuiltinOperator
A = schema.ActivationFunctionType
_ACTIVATIONS = {B.RELU: A.RELU, B.RELU6: A.RELU6, B.RELU_N1_TO_1: A.RELU_N1_TO_1}
_FUSIBLE = {B.CONV_2D, B.DEPTHWISE_CONV_2D, B.FULLY_CONNECTED, B.ADD, B.SUB, B.MUL}


def fuse_activations(builder: ModelBuilder) -> int:
    """Fuse every activation whose input only it reads; returns how many were fused."""
    producers = {t: op for op in builder.ops for t in op.outputs}
    readers = builder.consumers()
    fused = set()
    for op in builder.ops:
        if op.code not in _ACTIVATIONS:
            continue
        source = op.inputs[0]
        producer = producers.get(source)
        if (producer is None or producer.code not in _FUSIBLE or producer.fused_activation != A.NONE
                or len(readers.get(source, ())) != 1 or source in builder.outputs):
            continue
        producer.options.fusedActivationFunction = _ACTIVATIONS[op.code]
        producer.outputs = list(op.outputs)
        for t in op.outputs:
            producers[t] = producer
        fused.add(id(op))
    builder.ops = [op for op in builder.ops if id(op) not in fused]
    return len(fused)
