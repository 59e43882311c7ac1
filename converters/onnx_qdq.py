"""ONNX int8: QuantizeLinear / DequantizeLinear placed on the float export from a QuantPlan.

torch's dynamo exporter names ONNX values after the FX nodes of our graph, so the
plan's keys find their tensors directly (graph inputs and outputs are renamed, and the
exporter numbers the `getitem`s of LayerNorm, BatchNorm and max pool afresh, hence the map). Weights become 8-bit
initializers with a per-channel DequantizeLinear, biases int32 at input_scale x weight_scale,
activations a Q/DQ pair with the plan's qparams:
the pattern onnxruntime fuses into QLinearConv / QGemm / QLinearAdd integer kernels.
Activations are stored as uint8 (same scale, zero point + 128: the same numbers):
onnxruntime's CPU kernels fuse residual Add and the convolutions around it only for
uint8 activations (int8 left 15 of MobileNetV2's 52 convolutions in float).
Weights are stored as uint8 too (the plan's symmetric [-127, 127] + 128, zero point 128):
with int8 weights, onnxruntime's x86 kernels without VNNI (AVX2, AVX-512F) multiply with
VPMADDUBSW, whose int16 pair sums saturate: on MobileNetV3-Small the first convolution was
off by up to 75 steps and the output at cosine 0.74-0.90 to the plan's simulation; with
uint8 weights (the U8U8 kernels) it is at 1.0, for ~7 % more latency on such a CPU.
Nothing is re-decided here; a tensor the plan names but the file lacks is an error, unless
it is a no-op layout op the exporter removed (an expand to the same shape, a clone, a concat of one tensor): with its
source's qparams, the source's Q/DQ covers it; with others (after softmax's fixed range), its
readers get a requantising Q/DQ pair, as TFLite's QUANTIZE does.
"""

from __future__ import annotations

import operator

import numpy as np
import torch

from ..errors import ConversionError, require
from ..graph import CapturedGraph
from ..quantize.plan import QuantPlan
from ..quantize.rules import SHARED_OPS

_WEIGHT_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1, None)}


def quantize_onnx(model, plan: QuantPlan, graph: CapturedGraph):
    """Return `model` (the float ModelProto of `graph` from converters/onnx.py) with the plan's QDQ placed."""
    onnx = require("onnx", extra="onnx", purpose="ONNX int8")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    g = model.graph
    _as_single_ops(onnx, g, plan)
    _fold_weight_transposes(onnx, g)
    rename = dict(zip(graph.input_names, (v.name for v in g.input)))
    rename.update(zip(plan.outputs, (v.name for v in g.output)))
    rename.update(_getitem_outputs(graph, g))
    inits = {i.name: i for i in g.initializer}
    producer = {out: node for node in g.node for out in node.output}
    head: list = []  # weight dequantisation, placed before every other node
    after: dict[str, list] = {}  # tensor -> the Q/DQ pair that follows its producer
    missing = []

    def add_init(name, array):
        g.initializer.append(numpy_helper.from_array(array, name))

    quantized: dict[str, np.ndarray] = {}  # initializer -> the scales its DequantizeLinear already uses
    originals: dict = {}  # initializer name -> its float version

    def quantize_input(node, index: int, scales, axis: int, dtype, limit: int, zero_point: int = 0) -> list:
        """The integer initializer + DequantizeLinear for one weight or bias input of `node`. A weight shared by
        several ops (Perceiver's cross-attention, run twice) is quantised once; a shared bias whose ops read
        inputs of other scales gets a copy on its own int32 grid."""
        name = node.input[index]
        if name in quantized:
            if np.array_equal(quantized[name], scales):
                return []
            init = numpy_helper.from_array(numpy_helper.to_array(originals[name]), f"{name}_for_{node.output[0]}")
            g.initializer.append(init)
            node.input[index] = init.name
        else:
            originals[name] = init = inits.pop(name)
        quantized[init.name] = scales
        return [_dequantized_initializer(onnx, g, init, scales, axis, dtype, limit, zero_point)]

    for name, w in plan.weights.items():
        node = producer.get(rename.get(name, name))
        if node is None or node.op_type not in _WEIGHT_INPUTS:
            missing.append(name)
            continue
        w_idx, b_idx = _WEIGHT_INPUTS[node.op_type]
        axis = 0 if node.op_type == "Conv" or _attr(node, "transB", 0) else 1
        head += quantize_input(node, w_idx, np.asarray(w.scales, np.float32), axis, np.uint8, 127, 128)
        if w.bias_scales is not None and b_idx is not None and len(node.input) > b_idx and node.input[b_idx]:
            head += quantize_input(node, b_idx, np.asarray(w.bias_scales, np.float32), 0, np.int32, 2**31 - 1)

    outputs = {v.name for v in g.output}
    values = set(producer) | {v.name for v in g.input}
    aliases = _removed_aliases(graph, plan, values)  # plan tensor -> the source the exporter let stand for it

    def qdq(value: str, a, source: str, result: str) -> list:
        add_init(f"{value}_scale", np.asarray(a.scale, np.float32))
        add_init(f"{value}_zero_point", np.asarray(a.zero_point + 128, np.uint8))
        return [
            helper.make_node("QuantizeLinear", [source, f"{value}_scale", f"{value}_zero_point"], [f"{value}_q"], name=f"{value}_quantize"),
            helper.make_node("DequantizeLinear", [f"{value}_q", f"{value}_scale", f"{value}_zero_point"], [result],
                             name=f"{value}_dequantize"),
        ]

    def read_instead(old: str, new: str) -> None:
        for node in g.node:
            for i, inp in enumerate(node.input):
                if inp == old:
                    node.input[i] = new

    placed, placed_as = {}, {}  # ONNX value -> the qparams and plan tensor of its Q/DQ
    for name, a in plan.activations.items():
        value = rename.get(name, name)
        if value not in values:
            missing += [] if name in aliases else [name]
            continue
        if value in placed:  # the exporter merged two equal computations (Perceiver's data LayerNorm, run twice)
            if placed[value] != (a.scale, a.zero_point):
                raise ConversionError(f"onnx int8: the exporter merged {placed_as[value]} and {name} into {value}, "
                                      "but the plan gives them different ranges", "report this model to edge-sdk")
            continue
        placed[value], placed_as[value] = (a.scale, a.zero_point), name
        source, result = value, f"{value}_dq"
        if value in outputs:  # the graph output keeps its name: the producer writes a float copy
            source, result = f"{value}_float", value
            producer[value].output[list(producer[value].output).index(value)] = source
        else:
            read_instead(value, result)
        after[source] = qdq(value, a, source, result)
    # A removed alias with a range of its own (softmax's fixed 1/256 -> expand -> the batched matmul's
    # group): its readers now read the source, whose only reader it was; requantise them as TFLite does.
    for name, source in aliases.items():
        a, b, src = plan.activations[name], plan.activations[source], rename.get(source, source)
        if (a.scale, a.zero_point) != (b.scale, b.zero_point) and src in after and src not in outputs:
            read_instead(f"{src}_dq", f"{name}_dq")
            after[src] += qdq(name, a, f"{src}_dq", f"{name}_dq")
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


_TUPLE_OPS = {  # an aten op whose first result the graph reads through getitem 0 -> the ONNX op it exports as
    torch.ops.aten.native_layer_norm.default: "LayerNormalization",
    torch.ops.aten._native_batch_norm_legit_no_training.default: "BatchNormalization",  # one not after a conv
    torch.ops.aten.max_pool2d_with_indices.default: "MaxPool",
}


def _getitem_outputs(graph: CapturedGraph, g) -> dict[str, str]:
    """FX name -> ONNX name of each LayerNorm / BatchNorm / max-pool output: the exporter re-exports our graph and
    numbers the `getitem`s that read such results afresh (MobileViT's getitem_63 became getitem_12; RedNet's
    BatchNorms after its involutions shifted the stem max pool's number), so they are matched by their input."""
    by_input = {(node.op_type, node.input[0]): node.output[0] for node in g.node if node.op_type in _TUPLE_OPS.values()}
    names = {}
    for n in graph.nodes:
        if n.op == "call_function" and n.target is operator.getitem and n.args[1] == 0:
            source = n.args[0]
            op_type, read = _TUPLE_OPS.get(source.target), source.args[0]
            while (op_type, read.name) not in by_input and _concat_of_one(read):  # DenseNet's first BN of a block
                read = read.args[0][0]
            if (op_type, read.name) in by_input:
                names[n.name] = by_input[op_type, read.name]
    return names


def _concat_of_one(node) -> bool:
    """A concat of a single tensor, which the exporter drops (its reader reads the tensor)."""
    return (getattr(node, "target", None) is torch.ops.aten.cat.default and isinstance(node.args[0], (list, tuple))
            and len(node.args[0]) == 1 and hasattr(node.args[0][0], "name"))


def _removed_aliases(graph: CapturedGraph, plan: QuantPlan, values: set[str]) -> dict[str, str]:
    """Plan tensors absent from the export because their layout op computed nothing (the exporter let
    the source's value stand for them), each mapped to that source. With the source's qparams, the
    source's Q/DQ covers them; with others, only when they were the source's one reader."""
    aliases = {}
    for n in graph.nodes:
        a = plan.activations.get(n.name)
        if a is None or n.name in values or n.op != "call_function" or n.target not in SHARED_OPS:
            continue
        source = n.args[0] if n.args else None
        if isinstance(source, (list, tuple)):  # a concat of one tensor
            source = source[0] if len(source) == 1 else None
        source = source if hasattr(source, "meta") else None
        source_q = plan.activations.get(source.name) if source is not None else None
        if source_q is None or tuple(n.meta["val"].shape) != tuple(source.meta["val"].shape):
            continue
        if (source_q.scale, source_q.zero_point) == (a.scale, a.zero_point) or list(source.users) == [n]:
            aliases[n.name] = source.name
    return aliases


def _fold_weight_transposes(onnx, g) -> None:
    """Transpose nodes of initializers become transposed initializers: the exporter leaves them standing
    where a weight is shared (Perceiver's cross-attention runs twice), so the Gemm would read a node's output."""
    inits = {i.name: i for i in g.initializer}
    folded = [n for n in g.node if n.op_type == "Transpose" and n.input[0] in inits]
    for node in folded:
        values = onnx.numpy_helper.to_array(inits[node.input[0]])
        perm = [a for attr in node.attribute if attr.name == "perm" for a in attr.ints] or None
        g.initializer.append(onnx.numpy_helper.from_array(np.ascontiguousarray(np.transpose(values, perm)), node.output[0]))
        g.node.remove(node)
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for name in {n.input[0] for n in folded} - read:
        g.initializer.remove(inits[name])


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


def _dequantized_initializer(onnx, g, init, scales, axis, dtype, limit, zero_point=0):
    """Swap a float initializer for its integer version (symmetric in [-limit, limit], stored + zero_point)
    + a DequantizeLinear that outputs its name."""
    name = init.name
    values = onnx.numpy_helper.to_array(init).astype(np.float64)
    shape = [-1 if d == axis else 1 for d in range(values.ndim)]
    q = (np.clip(np.round(values / scales.astype(np.float64).reshape(shape)), -limit, limit) + zero_point).astype(dtype)
    g.initializer.remove(init)
    for suffix, array in (("quantized", q), ("scale", scales), ("zero_point", np.full(len(scales), zero_point, dtype))):
        g.initializer.append(onnx.numpy_helper.from_array(array, f"{name}_{suffix}"))
    return onnx.helper.make_node("DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"], [name],
                                 name=f"{name}_dequantize", axis=axis)
