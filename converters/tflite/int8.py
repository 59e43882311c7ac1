"""Full-integer int8: the float TFLite model rewritten to the QuantPlan's numbers.

The emitter lowers the graph in float first; this pass then gives every activation
tensor the plan's qparams (found through the FX node each tensor holds), quantises
filters per channel and biases to int32 with the plan's scales, and leaves in float
only what the plan keeps float. Nothing is re-decided, except what the plan cannot
know because it exists only in the TFLite graph:
- tensors made by layout and padding operators (TRANSPOSE, RESHAPE, PAD) take the
  qparams of their input, as TFLite requires of them;
- the inside of a fused pattern (hard-sigmoid's relu6(x + 3)) takes the fixed range
  of its fused activation, [0, 6];
- small constant operands (the 3 of x + 3) are quantised over their own range.
Where an int8 operator must keep its input's qparams but the plan gave the input
another range (a fixed-range sigmoid output feeding a concat), a QUANTIZE requantises
it. A float operator between int8 ones reads a DEQUANTIZE and is followed by a
QUANTIZE: correct, and visible in the file's op histogram (hard-swish is kept float on purpose, see
INT8_OPS).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ...errors import ConversionError
from ...quantize.observers import affine_qparams
from ...quantize.plan import QuantPlan
from .builder import ModelBuilder, Op, QuantParams, Tensor

B = schema.BuiltinOperator
A = schema.ActivationFunctionType
INT32_MAX = 2**31 - 1

# Builtins with int8 kernels (TFLite's int8 spec); any other operator runs in float.
INT8_OPS = {
    B.CONV_2D, B.DEPTHWISE_CONV_2D, B.FULLY_CONNECTED, B.ADD, B.SUB, B.MUL, B.AVERAGE_POOL_2D, B.MAX_POOL_2D,
    B.CONCATENATION, B.RESHAPE, B.TRANSPOSE, B.PAD, B.PADV2, B.MEAN, B.SOFTMAX, B.LOGISTIC, B.TANH,
    B.RELU, B.RELU6, B.GELU, B.BATCH_MATMUL, B.STRIDED_SLICE, B.SLICE, B.GATHER, B.MAXIMUM, B.MINIMUM, B.SQUEEZE,
}
# HARD_SWISH has an int8 kernel but XNNPACK does not take it: every int8 hard-swish split MobileNetV3-Large
# into 22 delegate partitions (10 % slower than litert-torch's file). As a float island, DEQUANTIZE ->
# HARD_SWISH -> QUANTIZE, XNNPACK runs the whole graph, and the island computes exactly what the plan's
# simulation does (dequantise, hard-swish in float, quantise to the planned range).
# Operators whose int8 kernels assume output qparams == input qparams.
SAME_QPARAMS = {B.AVERAGE_POOL_2D, B.MAX_POOL_2D, B.CONCATENATION, B.RESHAPE, B.TRANSPOSE, B.PAD, B.PADV2,
                B.STRIDED_SLICE, B.SLICE, B.GATHER, B.SQUEEZE}
# Operators whose output is their input moved around: its qparams carry over.
PASS_THROUGH = {B.RESHAPE, B.TRANSPOSE, B.PAD, B.PADV2, B.STRIDED_SLICE, B.SLICE, B.GATHER, B.SQUEEZE, B.MAX_POOL_2D}
_FUSED_RANGES = {A.RELU6: (0.0, 6.0), A.RELU_N1_TO_1: (-1.0, 1.0)}
_WEIGHT_AXIS = {B.CONV_2D: 0, B.DEPTHWISE_CONV_2D: 3, B.FULLY_CONNECTED: 0}  # output channel of OHWI / 1HWC / OI
IO_DTYPES = ("float32", "int8", "uint8")


def quantize_model(builder: ModelBuilder, tensor_nodes: dict[int, list[str]], plan: QuantPlan, io_dtype: str) -> None:
    """Rewrite `builder` (a lowered float model, activations fused) to full-integer int8 per `plan`."""
    if io_dtype not in IO_DTYPES:
        raise ConversionError(f"tflite: --io {io_dtype} is not one of {', '.join(IO_DTYPES)}")
    qparams = _activation_qparams(builder, tensor_nodes, plan)
    _Rewriter(builder, plan, qparams).run()
    _edges(builder, qparams, io_dtype)


def quantize_weights(builder: ModelBuilder, plan: QuantPlan) -> None:
    """Store the filters the plan quantises as per-channel int8, expanded to float by DEQUANTIZE.

    Activations stay float, so every operator keeps its float kernel: the int8-weights
    scheme of the ONNX and CoreML targets (weights only), not TFLite's hybrid kernels,
    which would also quantise activations on the fly and so differ from the plan.
    """
    expanded: dict[int, int] = {}  # float filter -> DEQUANTIZE output (a filter can be shared)
    ops = []
    for op in builder.ops:
        weight = plan.weights.get(op.origin) if op.code in _WEIGHT_AXIS else None
        filt = op.inputs[1] if weight is not None else -1
        if filt >= 0 and builder.tensors[filt].data is not None:
            if filt not in expanded:
                source = builder.tensors[filt]
                q = _int8_filter(source, weight.scales, _WEIGHT_AXIS[op.code], op.origin)
                packed = builder.constant(f"{source.name}/int8", q.data)
                builder.tensors[packed].quant = q.quant
                expanded[filt] = builder.tensor(source.name, source.shape)
                ops.append(Op(B.DEQUANTIZE, [packed], [expanded[filt]], origin=op.origin))
            op.inputs[1] = expanded[filt]
        ops.append(op)
    builder.ops = ops


def _int8_filter(source: Tensor, scales, axis: int, origin: str) -> Tensor:
    """`source` (a float filter) as symmetric per-channel int8 with the plan's `scales` along `axis`."""
    scales = np.asarray(scales, np.float32)
    if len(scales) != source.shape[axis]:
        raise ConversionError(f"tflite: the plan has {len(scales)} scales for {origin}, "
                              f"whose filter has {source.shape[axis]} output channels", "make the plan again")
    shape = [-1 if d == axis else 1 for d in range(source.data.ndim)]
    q = np.clip(np.round(source.data.astype(np.float64) / scales.reshape(shape)), -127, 127).astype(np.int8)
    return Tensor(source.name, source.shape, np.dtype(np.int8), q, QuantParams(scales, np.zeros(len(scales), np.int64), axis))


def _per_tensor(scale: float, zero_point: int) -> QuantParams:
    return QuantParams(np.array([scale], np.float32), np.array([zero_point], np.int64))


def _range_qparams(lo: float, hi: float) -> QuantParams:
    return _per_tensor(*affine_qparams(lo, hi))


def _activation_qparams(builder: ModelBuilder, tensor_nodes, plan: QuantPlan) -> dict[int, QuantParams]:
    """tensor -> qparams for every run-time tensor that is int8 in the file."""
    qparams = {}
    for tensor, nodes in tensor_nodes.items():
        planned = next((plan.activations[n] for n in nodes if n in plan.activations), None)
        if planned is not None:
            qparams[tensor] = _per_tensor(planned.scale, planned.zero_point)
    for op in builder.ops:  # in graph order, so an input's qparams are known before its readers'
        for out in op.outputs:
            if out in qparams:
                continue
            if op.code in PASS_THROUGH and op.inputs[0] in qparams:
                qparams[out] = qparams[op.inputs[0]]
            elif op.fused_activation in _FUSED_RANGES:
                qparams[out] = _range_qparams(*_FUSED_RANGES[op.fused_activation])
    return qparams


def _same(a: QuantParams, b: QuantParams) -> bool:
    return np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)


class _Rewriter:
    def __init__(self, builder: ModelBuilder, plan: QuantPlan, qparams: dict[int, QuantParams]):
        self.b, self.plan, self.q = builder, plan, qparams
        self.ops: list[Op] = []
        self._float_twin: dict[int, int] = {}
        self._requantized: dict[tuple[int, bytes], int] = {}

    def run(self) -> None:
        for t, q in self.q.items():
            self.b.tensors[t].dtype, self.b.tensors[t].quant = np.dtype(np.int8), q
        for op in self.b.ops:
            if self._runs_int8(op):
                self._int8(op)
            else:
                self._float(op)
        self.b.ops = self.ops

    def _is_constant(self, t: int) -> bool:
        return t < 0 or self.b.tensors[t].data is not None

    def _runs_int8(self, op: Op) -> bool:
        activations = [t for t in op.inputs if not self._is_constant(t)]
        return op.code in INT8_OPS and all(t in self.q for t in activations + op.outputs) and bool(activations)

    def _int8(self, op: Op) -> None:
        out_q = self.q[op.outputs[0]]
        inputs = []
        for i, t in enumerate(op.inputs):
            if t < 0:
                inputs.append(t)
            elif self._is_constant(t):
                inputs.append(self._constant(op, i, t, inputs))
            elif op.code in SAME_QPARAMS and not _same(self.q[t], out_q):
                inputs.append(self._requantize(t, out_q))
            else:
                inputs.append(t)
        op.inputs = inputs
        self.ops.append(op)

    def _float(self, op: Op) -> None:
        op.inputs = [self._dequantized(t) if t in self.q else t for t in op.inputs]
        planned = []  # (float tensor written, int8 tensor the plan names)
        for i, t in enumerate(op.outputs):
            if t in self.q:  # a planned int8 tensor made by a float operator: compute float, then quantise
                twin = self.b.tensor(f"{self.b.tensors[t].name}/float", self.b.tensors[t].shape)
                self._float_twin[t] = twin
                op.outputs[i] = twin
                planned.append((twin, t))
        self.ops.append(op)
        self.ops += [Op(B.QUANTIZE, [twin], [t], origin=op.origin) for twin, t in planned]

    def _dequantized(self, t: int) -> int:
        if t in self._float_twin:
            return self._float_twin[t]
        twin = self.b.tensor(f"{self.b.tensors[t].name}/float", self.b.tensors[t].shape)
        self.ops.append(Op(B.DEQUANTIZE, [t], [twin]))
        self._float_twin[t] = twin
        return twin

    def _requantize(self, t: int, q: QuantParams) -> int:
        key = (t, q.scale.tobytes() + q.zero_point.tobytes())
        if key not in self._requantized:
            out = self.b.tensor(f"{self.b.tensors[t].name}/requantized", self.b.tensors[t].shape, np.int8)
            self.b.tensors[out].quant = q
            self.ops.append(Op(B.QUANTIZE, [t], [out]))
            self._requantized[key] = out
        return self._requantized[key]

    def _constant(self, op: Op, index: int, t: int, done: list[int]) -> int:
        """An int8 (filter, operand) or int32 (bias) version of a float constant input of `op`."""
        source = self.b.tensors[t]
        if source.data.dtype.kind != "f":
            return t  # shapes, axes, paddings
        weight = self.plan.weights.get(op.origin) if op.code in _WEIGHT_AXIS else None
        if weight is not None and index == 1:
            q = _int8_filter(source, weight.scales, _WEIGHT_AXIS[op.code], op.origin)
            return self._new_constant(f"{source.name}/int8", q.data, q.quant)
        if op.code in _WEIGHT_AXIS and index == 2:
            filt = self.b.tensors[done[1]]
            input_scale = float(self.q[op.inputs[0]].scale[0])
            scales = (np.float32(input_scale) * filt.quant.scale).astype(np.float32)
            q = np.clip(np.round(source.data.astype(np.float64) / scales), -INT32_MAX, INT32_MAX).astype(np.int32)
            return self._new_constant(f"{source.name}/int32", q, QuantParams(scales, np.zeros(len(scales), np.int64), 0))
        data = source.data.astype(np.float64)
        if op.code in SAME_QPARAMS:  # a pad value, a concatenated token: the output's qparams (-inf -> -128)
            qp = self.q[op.outputs[0]]
            q = np.clip(np.round(data / qp.scale[0]) + qp.zero_point[0], -128, 127).astype(np.int8)
            return self._new_constant(f"{source.name}/int8", q, qp)
        qp = _range_qparams(float(data.min()), float(data.max()))
        q = np.clip(np.round(data / qp.scale[0]) + qp.zero_point[0], -128, 127).astype(np.int8)
        return self._new_constant(f"{source.name}/int8", q, qp)

    def _new_constant(self, name: str, data: np.ndarray, quant: QuantParams) -> int:
        t = self.b.constant(name, data)
        self.b.tensors[t].quant = quant
        return t


def _edges(builder: ModelBuilder, qparams: dict[int, QuantParams], io_dtype: str) -> None:
    """Float / int8 / uint8 graph inputs and outputs around the int8 body."""
    if io_dtype == "int8":
        for t in builder.inputs + builder.outputs:
            if t not in qparams:
                raise ConversionError(f"tflite: --io int8, but {builder.tensors[t].name} stays float in the plan",
                                      "quantise the first and last layers, or use --io float32")
        return
    new_inputs, head = [], []
    for t in builder.inputs:
        if t not in qparams:
            new_inputs.append(t)
            continue
        outer = _edge_tensor(builder, t, io_dtype)
        head.append(Op(B.QUANTIZE, [outer], [t]))
        new_inputs.append(outer)
    new_outputs, tail = [], []
    for t in builder.outputs:
        if t not in qparams:
            new_outputs.append(t)
            continue
        outer = _edge_tensor(builder, t, io_dtype)
        tail.append(Op(B.DEQUANTIZE if io_dtype == "float32" else B.QUANTIZE, [t], [outer]))
        new_outputs.append(outer)
    builder.ops = head + builder.ops + tail
    builder.inputs, builder.outputs = new_inputs, new_outputs


def _edge_tensor(builder: ModelBuilder, inner: int, io_dtype: str) -> int:
    """The graph's float32 or uint8 tensor beside an int8 one; it takes over the inner tensor's name."""
    t = builder.tensors[inner]
    outer = builder.tensor(t.name, t.shape, np.float32 if io_dtype == "float32" else np.uint8)
    if io_dtype == "uint8":  # the same numbers: zero point moved by 128
        builder.tensors[outer].quant = QuantParams(t.quant.scale.copy(), t.quant.zero_point + 128)
    t.name = f"{t.name}/int8"
    return outer
