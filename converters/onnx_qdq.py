"""ONNX int8: QuantizeLinear / DequantizeLinear placed on the float export from a QuantPlan.

torch's dynamo exporter names ONNX values after the FX nodes of our graph, so the
plan's keys find their tensors directly (graph inputs and outputs are renamed, hence
the map). Weights become int8 initializers with a per-channel DequantizeLinear, biases
int32 at input_scale x weight_scale, activations a Q/DQ pair with the plan's qparams:
the pattern onnxruntime fuses into QLinearConv / QGemm / QLinearAdd integer kernels.
Activations are stored as uint8 (same scale, zero point + 128: the same numbers):
onnxruntime's CPU kernels fuse residual Add and the convolutions around it only for
uint8 activations (int8 left 15 of MobileNetV2's 52 convolutions in float).
Nothing is re-decided here; a tensor the plan names but the file lacks is an error.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConversionError, require
from ..quantize.plan import QuantPlan

_WEIGHT_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1, None)}


def quantize_onnx(model, plan: QuantPlan, fx_inputs: list[str]):
    """Return `model` (a float ModelProto from converters/onnx.py) with the plan's QDQ placed."""
    onnx = require("onnx", extra="onnx", purpose="ONNX int8")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    g = model.graph
    _as_single_ops(onnx, g, plan)
    rename = dict(zip(fx_inputs, (v.name for v in g.input)))
    rename.update(zip(plan.outputs, (v.name for v in g.output)))
    inits = {i.name: i for i in g.initializer}
    producer = {out: node for node in g.node for out in node.output}
    head: list = []  # weight dequantisation, placed before every other node
    after: dict[str, list] = {}  # tensor -> the Q/DQ pair that follows its producer
    missing = []

    def add_init(name, array):
        g.initializer.append(numpy_helper.from_array(array, name))

    for name, w in plan.weights.items():
        node = producer.get(rename.get(name, name))
        if node is None or node.op_type not in _WEIGHT_INPUTS:
            missing.append(name)
            continue
        w_idx, b_idx = _WEIGHT_INPUTS[node.op_type]
        axis = 0 if node.op_type == "Conv" or _attr(node, "transB", 0) else 1
        scales = np.asarray(w.scales, np.float32)
        head.append(_dequantized_initializer(onnx, g, inits.pop(node.input[w_idx]), scales, axis, np.int8, 127))
        if w.bias_scales is not None and b_idx is not None and len(node.input) > b_idx and node.input[b_idx]:
            bias_scales = np.asarray(w.bias_scales, np.float32)
            head.append(_dequantized_initializer(onnx, g, inits.pop(node.input[b_idx]), bias_scales, 0, np.int32, 2**31 - 1))

    outputs = {v.name for v in g.output}
    values = set(producer) | {v.name for v in g.input}
    for name, a in plan.activations.items():
        value = rename.get(name, name)
        if value not in values:
            missing.append(name)
            continue
        add_init(f"{value}_scale", np.asarray(a.scale, np.float32))
        add_init(f"{value}_zero_point", np.asarray(a.zero_point + 128, np.uint8))
        source, result = value, f"{value}_dq"
        if value in outputs:  # the graph output keeps its name: the producer writes a float copy
            source, result = f"{value}_float", value
            producer[value].output[list(producer[value].output).index(value)] = source
        else:
            for node in g.node:
                for i, inp in enumerate(node.input):
                    if inp == value:
                        node.input[i] = result
        after[source] = [
            helper.make_node("QuantizeLinear", [source, f"{value}_scale", f"{value}_zero_point"], [f"{value}_q"], name=f"{value}_quantize"),
            helper.make_node("DequantizeLinear", [f"{value}_q", f"{value}_scale", f"{value}_zero_point"], [result],
                             name=f"{value}_dequantize"),
        ]
    if missing:
        raise ConversionError(f"onnx int8: the exported graph lacks {len(missing)} tensors the plan quantises: {', '.join(missing[:5])}",
                              "the plan was made for another graph: quantise the same model you convert")
    nodes = head + [qdq for v in g.input for qdq in after.get(v.name, [])]
    for node in g.node:
        nodes.append(node)
        for out in node.output:
            nodes += after.get(out, [])
    del g.node[:]
    g.node.extend(nodes)
    return model


def _as_single_ops(onnx, g, plan: QuantPlan) -> None:
    """Rewrite float pieces the plan treats as one int8 op into the one ONNX op onnxruntime fuses or runs at once.

    Hard-swish / hard-sigmoid (Add, Clip, Mul, Div) become HardSwish / HardSigmoid: one float op
    between DequantizeLinear and QuantizeLinear instead of four. A spatial ReduceMean that keeps
    dims becomes GlobalAveragePool, which onnxruntime runs as QLinearGlobalAveragePool.
    """
    producer = {out: node for node in g.node for out in node.output}
    inits = {i.name: i for i in g.initializer}
    replace: dict[int, object] = {}  # id(old node) -> new node (None: drop)
    for cover, kind in plan.fused_activations.items():
        inner = [producer[n] for n, c in plan.fused.items() if c == cover and n in producer]
        add = next((n for n in inner if n.op_type == "Add"), None)
        if kind not in ("hardswish", "hardsigmoid") or cover not in producer or add is None:
            continue
        op, attrs = ("HardSwish", {}) if kind == "hardswish" else ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5})
        replace.update({id(n): None for n in inner})
        replace[id(producer[cover])] = onnx.helper.make_node(op, [add.input[0]], [cover], name=f"{cover}_{kind}", **attrs)
    for node in g.node:
        if node.op_type == "ReduceMean" and node.output[0] in plan.activations and len(node.input) == 2 and node.input[1] in inits:
            axes = sorted(int(a) for a in onnx.numpy_helper.to_array(inits[node.input[1]]).ravel())
            if axes == [2, 3] and _attr(node, "keepdims", 1) == 1:
                replace[id(node)] = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
    nodes = [replace.get(id(n), n) for n in g.node]
    del g.node[:]
    g.node.extend(n for n in nodes if n is not None)


def _attr(node, name, default):
    return next((a.i for a in node.attribute if a.name == name), default)


def _dequantized_initializer(onnx, g, init, scales, axis, dtype, limit):
    """Swap a float initializer for its integer version + a DequantizeLinear that outputs its name."""
    name = init.name
    values = onnx.numpy_helper.to_array(init).astype(np.float64)
    shape = [-1 if d == axis else 1 for d in range(values.ndim)]
    q = np.clip(np.round(values / scales.astype(np.float64).reshape(shape)), -limit, limit).astype(dtype)
    g.initializer.remove(init)
    for suffix, array in (("quantized", q), ("scale", scales), ("zero_point", np.zeros(len(scales), dtype))):
        g.initializer.append(onnx.numpy_helper.from_array(array, f"{name}_{suffix}"))
    return onnx.helper.make_node("DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"], [name],
                                 name=f"{name}_dequantize", axis=axis)
