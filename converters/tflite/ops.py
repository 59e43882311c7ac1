"""One lowering per ATen op, and the table `LOWERINGS` that maps each op to it.

A lowering reads its node's inputs from the Emitter in the layout it needs and adds
TFLite operators for the node's result. Each table entry also names the layout rule
of the result (see layout.py). Patterns that TFLite has one builtin for are matched
here: ReLU / ReLU6 written as clamps, and hard-swish written as x * relu6(x + 3) / 6;
the operators they replace are left unread and dropped by the builder.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as schema
from torch import fx

from . import layout
from .layout import NHWC, Rule, Value

if TYPE_CHECKING:
    from .lowering import Emitter

aten = torch.ops.aten
B = schema.BuiltinOperator
NONE = schema.ActivationFunctionType.NONE


class Unsupported(Exception):
    """This instance of an op cannot be expressed; the walker adds the op and module names."""


@dataclass(frozen=True)
class Lowering:
    emit: Callable[[Emitter, fx.Node], None]
    layout: Rule


def _options(cls, **fields):
    opts = cls()
    for key, value in fields.items():
        setattr(opts, key, value)
    return opts


def _shape(node) -> tuple[int, ...]:
    return tuple(int(d) for d in node.meta["val"].shape)


def _pair(v) -> tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return (int(v[0]), int(v[-1]))


# ----- convolution and pooling --------------------------------------------------------------

def _padding(in_hw, kernel, stride, padding, dilation, out_hw):
    """TFLite padding that reproduces PyTorch's: VALID, SAME, or VALID after an explicit pad.

    PyTorch pads symmetrically; TF SAME puts the odd row after. They agree only when
    SAME's leading pad equals PyTorch's (not for stride 2 on even sizes).
    """
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if all(p == 0 and o == (i - e) // s + 1 for i, e, s, p, o in zip(in_hw, spans, stride, padding, out_hw)):
        return schema.Padding.VALID, None
    if all(o == -(-i // s) and max((o - 1) * s + e - i, 0) // 2 == p
           for i, e, s, p, o in zip(in_hw, spans, stride, padding, out_hw)):
        return schema.Padding.SAME, None
    pads = [(p, max((o - 1) * s + e - i - p, 0)) for i, e, s, p, o in zip(in_hw, spans, stride, padding, out_hw)]
    return schema.Padding.VALID, pads


def _pad(em: Emitter, node, x: int, pads, value: float) -> int:
    """PAD (zeros) or PADV2 (`value`) on the H and W axes of an NHWC tensor."""
    n, h, w, c = em.builder.tensors[x].shape
    shape = (n, h + sum(pads[0]), w + sum(pads[1]), c)
    out = em.scratch(node, "pad", shape)
    widths = em.ints([[0, 0], list(pads[0]), list(pads[1]), [0, 0]])
    if value == 0.0:
        em.builder.op(B.PAD, [x, widths], [out])
    else:
        em.builder.op(B.PADV2, [x, widths, em.weight(torch.tensor(value), "pad_value")], [out])
    return out


def convolution(em: Emitter, node):
    x, w, b, stride, padding, dilation, transposed, _, groups = node.args
    weight, bias = em.constant(w), em.constant(b) if b is not None else None
    if transposed:
        raise Unsupported("transposed convolution")
    if weight is None or (b is not None and bias is None):
        raise Unsupported("the filter or bias is computed at run time; TFLite needs constants")
    if weight.dim() != 4:
        raise Unsupported(f"{weight.dim() - 2}-D convolution (only 2-D has a builtin)")
    channels = _shape(x)[1]
    mode, pads = _padding(_shape(x)[2:], weight.shape[2:], stride, padding, dilation, _shape(node)[2:])
    xin = em.input(x, NHWC)
    if pads:
        xin = _pad(em, node, xin, pads, 0.0)
    bias = bias if bias is not None else torch.zeros(weight.shape[0])
    geometry = {"padding": mode, "strideH": stride[0], "strideW": stride[1], "dilationHFactor": dilation[0],
                    "dilationWFactor": dilation[1], "fusedActivationFunction": NONE}
    if groups > 1 and groups == channels and weight.shape[1] == 1:
        code, filt = B.DEPTHWISE_CONV_2D, weight.permute(1, 2, 3, 0)  # 1HWC
        opts = _options(schema.DepthwiseConv2DOptionsT, depthMultiplier=weight.shape[0] // channels, **geometry)
    else:
        code, filt = B.CONV_2D, weight.permute(0, 2, 3, 1)  # OHWI; grouped when I < input channels
        opts = _options(schema.Conv2DOptionsT, **geometry)
    inputs = [xin, em.weight(filt, f"{node.name}/filter"), em.weight(bias, f"{node.name}/bias")]
    em.builder.op(code, inputs, [em.output(node)], opts)


def max_pool2d(em: Emitter, node):
    x, kernel = node.args[:2]
    stride = node.args[2] if len(node.args) > 2 and node.args[2] else kernel
    padding = _pair(node.args[3]) if len(node.args) > 3 else (0, 0)
    dilation = _pair(node.args[4]) if len(node.args) > 4 else (1, 1)
    if dilation != (1, 1):
        raise Unsupported("dilated max pooling")
    out_hw = tuple(int(d) for d in node.meta["val"][0].shape[2:])
    mode, pads = _padding(_shape(x)[2:], _pair(kernel), _pair(stride), padding, dilation, out_hw)
    xin = em.input(x, NHWC)
    if pads:
        xin = _pad(em, node, xin, pads, float(np.finfo(np.float32).min))  # padding never wins a max
    _pool(em, node, B.MAX_POOL_2D, xin, kernel, stride, mode, index=0)


def avg_pool2d(em: Emitter, node):
    x, kernel = node.args[:2]
    stride = node.args[2] if len(node.args) > 2 and node.args[2] else kernel
    padding = _pair(node.args[3]) if len(node.args) > 3 else (0, 0)
    ceil_mode = node.args[4] if len(node.args) > 4 else False
    include_pad = node.args[5] if len(node.args) > 5 else True
    if len(node.args) > 6 and node.args[6] is not None:
        raise Unsupported("divisor_override")
    mode, pads = _padding(_shape(x)[2:], _pair(kernel), _pair(stride), padding, (1, 1), _shape(node)[2:])
    if pads and (not include_pad or (ceil_mode and any(after > before for before, after in pads))):
        raise Unsupported("padding that TFLite's average pool cannot count like PyTorch")
    if mode == schema.Padding.SAME and include_pad:  # TFLite's SAME leaves the padding out of the count
        pads = [(p, p) for p in padding]
        mode = schema.Padding.VALID
    xin = em.input(x, NHWC)
    if pads:
        xin = _pad(em, node, xin, pads, 0.0)
    _pool(em, node, B.AVERAGE_POOL_2D, xin, kernel, stride, mode)


def _pool(em, node, code, xin, kernel, stride, mode, index=None):
    (kh, kw), (sh, sw) = _pair(kernel), _pair(stride)
    opts = _options(schema.Pool2DOptionsT, padding=mode, strideH=sh, strideW=sw, filterHeight=kh, filterWidth=kw,
                    fusedActivationFunction=NONE)
    em.builder.op(code, [xin], [em.output(node, index=index)], opts)


# ----- matrix products ----------------------------------------------------------------------

def addmm(em: Emitter, node):
    bias, x, w = node.args
    if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
        raise Unsupported("addmm with alpha or beta other than 1")
    _matmul(em, node, x, w, bias)


def mm(em: Emitter, node):
    _matmul(em, node, *node.args, None)


def _matmul(em: Emitter, node, x, w, bias):
    """x @ w (+ bias): FULLY_CONNECTED when w is a constant, else BATCH_MATMUL (+ ADD)."""
    weight, b = em.constant(w), em.constant(bias) if bias is not None else None
    out_shape = _shape(node)
    if weight is not None and (bias is None or (b is not None and tuple(b.shape) == out_shape[-1:])):
        inputs = [em.input(x, (0, 1)), em.weight(weight.t(), f"{node.name}/weights"),
                  em.weight(b, f"{node.name}/bias") if b is not None else -1]
        opts = _options(schema.FullyConnectedOptionsT, fusedActivationFunction=NONE, keepNumDims=False)
        em.builder.op(B.FULLY_CONNECTED, inputs, [em.output(node)], opts)
        return
    product = em.output(node) if bias is None else em.scratch(node, "matmul", out_shape)
    em.builder.op(B.BATCH_MATMUL, [em.input(x, (0, 1)), em.input(w, (0, 1))], [product],
                  _options(schema.BatchMatMulOptionsT, adjX=False, adjY=False))
    if bias is not None:
        em.builder.op(B.ADD, [product, em.operand(bias, node)], [em.output(node)],
                      _options(schema.AddOptionsT, fusedActivationFunction=NONE))


def bmm(em: Emitter, node):
    a, b = node.args
    inputs = [em.input(a, layout.identity(3)), em.input(b, layout.identity(3))]
    em.builder.op(B.BATCH_MATMUL, inputs, [em.output(node)], _options(schema.BatchMatMulOptionsT, adjX=False, adjY=False))


# ----- element-wise -------------------------------------------------------------------------

_BINARY = {
    aten.add.Tensor: (B.ADD, schema.AddOptionsT),
    aten.sub.Tensor: (B.SUB, schema.SubOptionsT),
    aten.mul.Tensor: (B.MUL, schema.MulOptionsT),
    aten.div.Tensor: (B.DIV, schema.DivOptionsT),
}


def binary(em: Emitter, node):
    a, b = node.args[:2]
    if node.kwargs.get("alpha", 1) != 1 or node.kwargs.get("rounding_mode") is not None:
        raise Unsupported("alpha or rounding_mode")
    source = _hardswish_source(node)
    if source is not None:
        em.builder.op(B.HARD_SWISH, [em.input(source, em.perms[node])], [em.output(node)])
        return
    code, options = _BINARY[node.target]
    divisor = em.constant(b) if code == B.DIV else None
    if divisor is not None:  # x / c as x * (1 / c): MUL is faster everywhere, and int8 has no good DIV
        code, options, b = B.MUL, schema.MulOptionsT, 1.0 / divisor
    em.builder.op(code, [em.operand(a, node), em.operand(b, node)], [em.output(node)],
                  _options(options, fusedActivationFunction=NONE))


def _clamp_chain(node) -> tuple[fx.Node, float | None, float | None] | None:
    """(x, lo, hi) when `node` clamps x (clamp, hardtanh, relu, or a lower then an upper clamp)."""
    if not isinstance(node, fx.Node):
        return None
    if node.target is aten.relu.default:
        return node.args[0], 0.0, None
    if node.target not in (aten.clamp.default, aten.hardtanh.default):
        return None
    defaults = (None, None) if node.target is aten.clamp.default else (-1.0, 1.0)
    lo, hi = (list(node.args[1:3]) + list(defaults[len(node.args) - 1:]))[:2]
    inner = _clamp_chain(node.args[0])
    if inner is not None:  # clamp(clamp(x, lo), None, hi) == clamp(x, lo, hi) when lo <= hi
        if lo is None and inner[2] is None:
            merged = (inner[1], hi)
        elif hi is None and inner[1] is None:
            merged = (lo, inner[2])
        else:
            merged = (None, None)
        if None not in merged and merged[0] <= merged[1]:
            return inner[0], *merged
    return node.args[0], lo, hi


def _is_relu6_of_x_plus_3(node, x) -> bool:
    chain = _clamp_chain(node)
    if chain is None or chain[1:] != (0, 6):
        return False
    add = chain[0]
    return isinstance(add, fx.Node) and add.target is aten.add.Tensor and add.args[0] is x and add.args[1] == 3


def _hardswish_source(node) -> fx.Node | None:
    """x when `node` computes x * relu6(x + 3) / 6 (as div(mul(..), 6) or mul(x, div(.., 6)))."""
    if node.target is aten.div.Tensor and node.args[1] == 6:
        prod = node.args[0]
        if isinstance(prod, fx.Node) and prod.target is aten.mul.Tensor:
            for x, gate in (prod.args, prod.args[::-1]):
                if _is_relu6_of_x_plus_3(gate, x):
                    return x
    if node.target is aten.mul.Tensor:
        for x, gate in (node.args, node.args[::-1]):
            if isinstance(gate, fx.Node) and gate.target is aten.div.Tensor and gate.args[1] == 6 \
                    and _is_relu6_of_x_plus_3(gate.args[0], x):
                return x
    return None


_RELUS = {(0, None): B.RELU, (0, 6): B.RELU6, (-1, 1): B.RELU_N1_TO_1}


def clamp(em: Emitter, node):
    x, lo, hi = _clamp_chain(node)
    perm = em.perms[node]
    if (lo, hi) in _RELUS:
        em.builder.op(_RELUS[(lo, hi)], [em.input(x, perm)], [em.output(node)])
        return
    current = em.input(x, perm)
    steps = [(B.MAXIMUM, lo), (B.MINIMUM, hi)]
    steps = [(code, bound) for code, bound in steps if bound is not None]
    for i, (code, bound) in enumerate(steps):
        out = em.output(node) if i == len(steps) - 1 else em.scratch(node, "max", em.builder.tensors[current].shape)
        em.builder.op(code, [current, em.weight(torch.tensor(float(bound)), "bound")], [out])
        current = out


def _unary(code, options: Callable[[fx.Node], object] | None = None):
    def emit(em: Emitter, node):
        x = node.args[0]
        em.builder.op(code, [em.input(x, em.perms[node])], [em.output(node)], options(node) if options else None)

    return emit


def _gelu_options(node):
    return _options(schema.GeluOptionsT, approximate=node.kwargs.get("approximate", "none") == "tanh")


def softmax(em: Emitter, node):
    x, dim = node.args[:2]
    perm = em.perms[node]
    dim = dim % len(perm)
    if perm[-1] != dim:  # SOFTMAX works on the last axis: give the result a layout that has `dim` last
        perm = tuple(d for d in perm if d != dim) + (dim,)
    em.builder.op(B.SOFTMAX, [em.input(x, perm)], [em.output(node, perm)], _options(schema.SoftmaxOptionsT, beta=1.0))


def layer_norm(em: Emitter, node):
    """(x - mean) * rsqrt(var + eps) * weight + bias: TFLite has no LayerNorm builtin."""
    x, normalized, weight, bias, eps = node.args
    if any(u.args[1] != 0 for u in node.users):
        raise Unsupported("the mean / rstd results are used; only the normalised output is supported")
    perm = em.perms[node]
    rank = len(perm)
    axes = em.ints(sorted(layout.axis(perm, d) for d in range(rank - len(normalized), rank)))
    xin = em.input(x, perm)
    phys = em.builder.tensors[xin].shape
    reduced = tuple(1 if a in [layout.axis(perm, d) for d in range(rank - len(normalized), rank)] else s
                    for a, s in enumerate(phys))
    keep = _options(schema.ReducerOptionsT, keepDims=True)
    mean, sq, var, var_eps, rstd, centred = (em.scratch(node, s, shape) for s, shape in (
        ("mean", reduced), ("squared_difference", phys), ("variance", reduced), ("variance_eps", reduced),
        ("rstd", reduced), ("centred", phys)))
    em.builder.op(B.MEAN, [xin, axes], [mean], keep)
    em.builder.op(B.SQUARED_DIFFERENCE, [xin, mean], [sq])
    em.builder.op(B.MEAN, [sq, axes], [var], keep)
    em.builder.op(B.ADD, [var, em.weight(torch.tensor(float(eps)), "eps")], [var_eps],
                  _options(schema.AddOptionsT, fusedActivationFunction=NONE))
    em.builder.op(B.RSQRT, [var_eps], [rstd])
    em.builder.op(B.SUB, [xin, mean], [centred], _options(schema.SubOptionsT, fusedActivationFunction=NONE))
    steps = [(B.MUL, rstd, schema.MulOptionsT)]
    if weight is not None:
        steps.append((B.MUL, em.operand(weight, node), schema.MulOptionsT))
    if bias is not None:
        steps.append((B.ADD, em.operand(bias, node), schema.AddOptionsT))
    current = centred
    for i, (code, other, options) in enumerate(steps):
        out = em.output(node, index=0) if i == len(steps) - 1 else em.scratch(node, f"step{i}", phys)
        em.builder.op(code, [current, other], [out], _options(options, fusedActivationFunction=NONE))
        current = out


# ----- reductions, shapes and data movement -------------------------------------------------

# A float mean over more elements than this reduces its innermost axis first: TFLite's MEAN sums in order, and on
# a 228x228 squeeze-excite map (EfficientNet-B5) of terms that cancel, that left the mean 1.4e-4 off (PyTorch: 1e-6).
MEAN_SPLIT_ELEMENTS = 4096


def mean(em: Emitter, node):
    x, dims = node.args[:2]
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    perm = em.perms[x]
    dims = list(range(len(perm))) if dims is None else dims
    axes = sorted(layout.axis(perm, d) for d in dims)
    source = em.input(x, perm)
    shape = em.builder.tensors[source].shape
    if not em.int8_activations and len(axes) > 1 and int(np.prod([shape[a] for a in axes])) > MEAN_SPLIT_ELEMENTS:
        rows = em.scratch(node, "rows", [1 if i == axes[-1] else d for i, d in enumerate(shape)])
        em.builder.op(B.MEAN, [source, em.ints([axes[-1]])], [rows], _options(schema.ReducerOptionsT, keepDims=True))
        source = rows  # an int8 plan holds one rounding of the whole mean, so int8 files keep one MEAN
    em.builder.op(B.MEAN, [source, em.ints(axes)], [em.output(node)], _options(schema.ReducerOptionsT, keepDims=bool(keepdim)))


def _mean_layout(node, perms):
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    dims = node.args[1] if node.args[1] is not None else range(len(perms[node.args[0]]))
    return perms[node.args[0]] if keepdim else layout.drop(perms[node.args[0]], dims)


def reshape(em: Emitter, node):
    """view / reshape / (un)squeeze: a RESHAPE of data in torch order (or already in that memory order)."""
    x = node.args[0]
    value = em.value(x)
    shape = _shape(node)
    source = value.tensor if layout.same_memory_order(value.shape, value.perm, layout.identity(len(value.shape))) \
        else em.input(x, layout.identity(len(value.shape)))
    if em.builder.tensors[source].shape == shape:
        em.alias(node, Value(source, layout.identity(len(shape)), shape))
        return
    em.builder.op(B.RESHAPE, [source, em.ints(shape)], [em.output(node)])


def permute(em: Emitter, node):
    """TRANSPOSE, unless the planned layout makes it a relabelling of the input's data."""
    value = em.value(node.args[0])
    relabeled = Value(value.tensor, layout.relabeled(value.perm, node.args[1]), _shape(node))
    em.alias(node, Value(em.convert(relabeled, em.perms[node], node.name), em.perms[node], _shape(node)))


def same(em: Emitter, node):
    """clone / alias: the same data."""
    em.alias(node, em.value(node.args[0]))


def expand(em: Emitter, node):
    source = em.operand(node.args[0], node)
    target = layout.physical_shape(_shape(node), em.perms[node])
    if em.builder.tensors[source].shape == target:
        em.alias(node, Value(source, em.perms[node], _shape(node)))
        return
    em.builder.op(B.BROADCAST_TO, [source, em.ints(target)], [em.output(node)])


def cat(em: Emitter, node):
    tensors = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else 0
    perm = em.perms[node]
    inputs = [em.operand(t, node) for t in tensors]
    opts = _options(schema.ConcatenationOptionsT, axis=layout.axis(perm, dim), fusedActivationFunction=NONE)
    em.builder.op(B.CONCATENATION, inputs, [em.output(node)], opts)


def slice_(em: Emitter, node):
    x = node.args[0]
    dim, start, end, step = (list(node.args[1:]) + [0, None, None, 1][len(node.args) - 1:])[:4]
    size = _shape(x)[dim]
    start, end, _ = slice(start, end, step).indices(size)
    if (start, end, step) == (0, size, 1):
        em.alias(node, em.value(x))
        return
    _strided_slice(em, node, x, dim, start, end, step, shrink=False)


def select(em: Emitter, node):
    x, dim, index = node.args
    index = index % _shape(x)[dim]
    _strided_slice(em, node, x, dim, index, index + 1, 1, shrink=True)


def _strided_slice(em: Emitter, node, x, dim, start, end, step, *, shrink):
    perm = em.perms[x]
    shape = layout.physical_shape(_shape(x), perm)
    ax = layout.axis(perm, dim)
    begin, stop, strides = [0] * len(shape), list(shape), [1] * len(shape)
    begin[ax], stop[ax], strides[ax] = start, end, step
    opts = _options(schema.StridedSliceOptionsT, shrinkAxisMask=(1 << ax) if shrink else 0)
    em.builder.op(B.STRIDED_SLICE, [em.input(x, perm), em.ints(begin), em.ints(stop), em.ints(strides)],
                  [em.output(node)], opts)


def getitem(em: Emitter, node):
    source, index = node.args
    value = em.values[source][index] if isinstance(em.values.get(source), list) else None
    if value is None:
        raise Unsupported(f"result {index} of {source.name} is used; only the main result has a TFLite form")
    em.alias(node, value)


def _select_dims(node):
    return [node.args[1]]


# ----- added for the classic CNN families (AlexNet LRN, DenseNet / ConvMixer BN, RedNet, LeNet) ----

def constant_pad_nd(em: Emitter, node):
    """F.pad with a constant: PAD (zeros) or PADV2, on whichever physical axes hold the padded dims."""
    x, pads = node.args[:2]
    value = float(node.args[2]) if len(node.args) > 2 else 0.0
    if any(p < 0 for p in pads):
        raise Unsupported("negative padding (cropping)")
    perm = em.perms[node]
    widths = [[0, 0] for _ in perm]
    for i in range(0, len(pads), 2):
        widths[layout.axis(perm, len(perm) - 1 - i // 2)] = [int(pads[i]), int(pads[i + 1])]
    inputs = [em.input(x, perm), em.ints(widths)]
    if value == 0.0:
        em.builder.op(B.PAD, inputs, [em.output(node)])
    else:
        em.builder.op(B.PADV2, inputs + [em.weight(torch.tensor(value), "pad_value")], [em.output(node)])


def batch_norm(em: Emitter, node):
    """A BatchNorm that no convolution absorbed (it follows a concat or an activation): x * scale + shift."""
    x, weight, bias, mean_, var, _, eps = node.args
    if any(u.args[1] != 0 for u in node.users):
        raise Unsupported("the batch statistics results are used; only the normalised output is supported")
    stats = [em.constant(a) if a is not None else None for a in (weight, bias, mean_, var)]
    if stats[2] is None or stats[3] is None or any(a is not None and s is None for a, s in zip((weight, bias), stats)):
        raise Unsupported("the BatchNorm statistics are computed at run time; TFLite needs constants")
    gamma, beta, mu, sigma2 = (s.double() if s is not None else None for s in stats)
    scale = torch.rsqrt(sigma2 + eps) * (gamma if gamma is not None else 1.0)
    shift = (beta if beta is not None else 0.0) - mu * scale
    rank = len(em.perms[node])
    shape = [1] * rank
    shape[1] = scale.numel()  # channels are torch dim 1
    xin = em.input(x, em.perms[node])
    scaled = em.scratch(node, "scaled", em.builder.tensors[xin].shape)
    em.builder.op(B.MUL, [xin, em.operand(scale.float().reshape(shape), node)], [scaled],
                  _options(schema.MulOptionsT, fusedActivationFunction=NONE))
    em.builder.op(B.ADD, [scaled, em.operand(shift.float().reshape(shape), node)], [em.output(node, index=0)],
                  _options(schema.AddOptionsT, fusedActivationFunction=NONE))


def pow_scalar(em: Emitter, node):
    """x ** c for a constant c: POW (float)."""
    x, exponent = node.args[:2]
    em.builder.op(B.POW, [em.input(x, em.perms[node]), em.weight(torch.tensor(float(exponent)), "exponent")],
                  [em.output(node)])


def sum_(em: Emitter, node):
    """sum over dims: SUM (the same axes and keepdim handling as MEAN)."""
    x, dims = node.args[:2]
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    perm = em.perms[x]
    dims = list(range(len(perm))) if dims is None else dims
    axes = em.ints(sorted(layout.axis(perm, d) for d in dims))
    em.builder.op(B.SUM, [em.input(x, perm), axes], [em.output(node)], _options(schema.ReducerOptionsT, keepDims=bool(keepdim)))


LOWERINGS: dict[object, Lowering] = {
    aten.convolution.default: Lowering(convolution, layout.nhwc),
    aten.max_pool2d_with_indices.default: Lowering(max_pool2d, layout.nhwc),
    aten.avg_pool2d.default: Lowering(avg_pool2d, layout.nhwc),
    aten.addmm.default: Lowering(addmm, layout.torch_order),
    aten.mm.default: Lowering(mm, layout.torch_order),
    aten.bmm.default: Lowering(bmm, layout.torch_order),
    **{op: Lowering(binary, layout.follow) for op in _BINARY},
    aten.relu.default: Lowering(clamp, layout.follow),
    aten.clamp.default: Lowering(clamp, layout.follow),
    aten.hardtanh.default: Lowering(clamp, layout.follow),
    aten.sigmoid.default: Lowering(_unary(B.LOGISTIC), layout.follow),
    aten.tanh.default: Lowering(_unary(B.TANH), layout.follow),
    aten.gelu.default: Lowering(_unary(B.GELU, _gelu_options), layout.follow),
    aten._softmax.default: Lowering(softmax, layout.follow),
    aten.native_layer_norm.default: Lowering(layer_norm, layout.follow),
    aten.mean.dim: Lowering(mean, _mean_layout),
    aten.view.default: Lowering(reshape, layout.torch_order),
    aten._unsafe_view.default: Lowering(reshape, layout.torch_order),
    aten.squeeze.dims: Lowering(reshape, layout.torch_order),
    aten.squeeze.dim: Lowering(reshape, layout.torch_order),
    aten.unsqueeze.default: Lowering(reshape, layout.torch_order),
    aten.permute.default: Lowering(permute, layout.permuted),
    aten.clone.default: Lowering(same, layout.follow),
    aten.alias.default: Lowering(same, layout.follow),
    aten.expand.default: Lowering(expand, layout.follow),
    aten.cat.default: Lowering(cat, layout.follow),
    aten.slice.Tensor: Lowering(slice_, layout.follow),
    aten.select.int: Lowering(select, layout.dropping(_select_dims)),
    operator.getitem: Lowering(getitem, layout.follow),
    aten.constant_pad_nd.default: Lowering(constant_pad_nd, layout.follow),
    aten._native_batch_norm_legit_no_training.default: Lowering(batch_norm, layout.follow),
    aten.pow.Tensor_Scalar: Lowering(pow_scalar, layout.follow),
    aten.sum.dim_IntList: Lowering(sum_, _mean_layout),
    aten.neg.default: Lowering(_unary(B.NEG), layout.follow),
}
