"""Where int8 goes in a captured graph, decided once by the TFLite int8 rules.

This module only reads the graph: which tensors carry activation qparams, which
share them (reshape / transpose / concat / pool / pad / slice groups), which have
fixed ones (sigmoid, hard-sigmoid, softmax, tanh), which are fused into the next
op (conv -> ReLU/ReLU6, the pieces of hard-swish), and which ops carry weights.
Every emitter reads the same answer, so no target re-decides anything.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import fx

from ..graph import CapturedGraph, module_path

aten = torch.ops.aten

# Output = input up to layout: one set of qparams for the whole group.
SHARED_OPS = {
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.permute.default,
    aten.transpose.int, aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default, aten.clone.default,
    aten.expand.default, aten.slice.Tensor, aten.select.int, aten.cat.default, aten.constant_pad_nd.default,
    aten.max_pool2d_with_indices.default, aten.max_pool2d.default, aten.avg_pool2d.default, operator.getitem,
}
# Outputs with a fixed range, as TFLite's int8 kernels require.
FIXED = {
    aten.sigmoid.default: (1 / 256, -128, "sigmoid"),
    aten._softmax.default: (1 / 256, -128, "softmax"),
    aten.tanh.default: (1 / 128, 0, "tanh"),
}
HARDSIGMOID_QPARAMS = (1 / 256, -128)
WEIGHTED_OPS = {aten.convolution.default, aten.conv2d.default, aten.addmm.default, aten.mm.default}
_FUSABLE_PRODUCERS = WEIGHTED_OPS | {aten.add.Tensor}


@dataclass(frozen=True)
class WeightedOp:
    """A conv / linear node: where its weight and bias live, what it reads, and its output-channel axis."""

    node: str
    weight: str  # get_attr target
    bias: str | None
    input: str
    axis: int  # output-channel axis of the stored weight tensor


@dataclass
class GraphRules:
    """The graph-only part of a quantisation plan."""

    points: list[str] = field(default_factory=list)  # tensors with activation qparams, in graph order
    shared: dict[str, str] = field(default_factory=dict)  # tensor -> group root
    fixed: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    fused: dict[str, str] = field(default_factory=dict)  # internal tensor -> tensor whose qparams cover it
    activations: dict[str, str] = field(default_factory=dict)  # covering tensor -> relu / relu6 / hardswish / hardsigmoid
    weighted: dict[str, WeightedOp] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)  # node -> torch module path
    float_nodes: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def analyse(graph: CapturedGraph, keep_float=(), quantize_activations: bool = True) -> GraphRules:
    """Apply the int8 rules to `graph`; nodes matching `keep_float` stay float."""
    nodes = list(graph.module.graph.nodes)
    rules = GraphRules()
    constant = _constant_nodes(nodes)
    rules.fused, rules.activations = _fused(nodes)
    out_node = next(n for n in nodes if n.op == "output")
    rules.outputs = [a.name for a in _flat(out_node.args[0])]
    for n in nodes:
        if n.op == "call_function":
            rules.modules[n.name] = module_path(n)
        if n.op == "call_function" and n.target in WEIGHTED_OPS and _is_kept(n, keep_float):
            rules.float_nodes.append(n.name)
        elif n.op == "call_function" and n.target in WEIGHTED_OPS:
            op = _weighted(n, graph.module)
            if op is not None:
                rules.weighted[n.name] = op
    if not quantize_activations:
        return rules
    kept = {n.name for n in nodes if n.op == "call_function" and _is_kept(n, keep_float)}
    kept |= {cover for inner, cover in rules.fused.items() if inner in kept}  # conv kept -> its fused ReLU too
    int8_inputs = {op.input for op in rules.weighted.values()}
    for n in nodes:
        if n.name in constant or n.name in rules.fused or not _is_float_tensor(n) or n.op not in ("placeholder", "call_function"):
            continue
        if n.name in kept and n.name not in int8_inputs:  # an int8 layer still reads an int8 input
            rules.float_nodes += [n.name] if n.name not in rules.float_nodes else []
        else:
            rules.points.append(n.name)
    points = set(rules.points)
    rules.fixed = {n.name: FIXED[n.target] for n in nodes if n.name in points and n.target in FIXED}
    rules.fixed.update({name: (*HARDSIGMOID_QPARAMS, "hardsigmoid") for name, kind in rules.activations.items()
                        if name in points and kind == "hardsigmoid"})
    rules.shared = _shared_groups(nodes, rules.points, rules.fixed)
    return rules


def _shared_groups(nodes, points: list[str], fixed) -> dict[str, str]:
    """Union the tensors that layout ops connect; tensor -> group root, for groups of two or more.

    A layout op after a fixed-range tensor (softmax -> expand -> the attention matmul) joins its group,
    which then keeps the fixed range: requantising 1/256 steps into a finer grid adds no information, only
    a rounding, a TFLite QUANTIZE op, and in ONNX a Q/DQ/Q/DQ chain that onnxruntime's optimiser collapses
    into one rounding (so the file no longer computed the plan). Where a group also holds tensors that
    are not from that fixed range (a concat with a conv output), the fixed tensor stays out and emitters
    requantise it into the group.
    """
    def union(join_fixed) -> dict[str, str]:
        parent = {p: p for p in points}

        def root(p):
            while parent[p] != p:
                parent[p] = parent[parent[p]]
                p = parent[p]
            return p

        for n in nodes:
            if n.name in parent and n.op == "call_function" and n.target in SHARED_OPS:
                for a in _shared_sources(n):
                    if a.name in parent and (a.name not in fixed or join_fixed(a.name)):
                        parent[root(a.name)] = root(n.name)
        return {p: root(p) for p in points}

    roots = union(lambda name: True)
    origins: dict[str, set] = {}  # group root -> the fixed qparams, or the tensor names, its values come from
    for n in nodes:
        if n.name not in roots:
            continue
        layout = n.op == "call_function" and n.target in SHARED_OPS and any(a.name in roots for a in _shared_sources(n))
        if not layout:
            origins.setdefault(roots[n.name], set()).add(fixed[n.name][:2] if n.name in fixed else n.name)
    roots = union(lambda name: len(origins[roots[name]]) == 1)
    sizes: dict[str, int] = {}
    for r in roots.values():
        sizes[r] = sizes.get(r, 0) + 1
    return {p: r for p, r in roots.items() if sizes[r] > 1}


def _flat(args):
    for a in args if isinstance(args, (tuple, list)) else (args,):
        if isinstance(a, (tuple, list)):
            yield from _flat(a)
        else:
            yield a


def _shared_sources(n: fx.Node):
    """The tensors a layout op reads; through a tuple-producing pool to the pool's own input."""
    for a in _flat(n.args):
        if isinstance(a, fx.Node):
            yield a.args[0] if n.target is operator.getitem else a


def _is_float_tensor(n: fx.Node) -> bool:
    val = n.meta.get("val")
    return isinstance(val, torch.Tensor) and val.is_floating_point()


def _is_kept(n: fx.Node, keep_float) -> bool:
    path = module_path(n)
    return any(n.name == k or path == k or path.startswith(k + ".") for k in keep_float)


def _constant_nodes(nodes) -> set[str]:
    """Nodes computed from weights only (a linear layer's transposed weight)."""
    constant: set[str] = set()
    for n in nodes:
        if n.op == "get_attr":
            constant.add(n.name)
        elif n.op == "call_function":
            inputs = [a for a in _flat(n.args) if isinstance(a, fx.Node)]
            if inputs and all(a.name in constant for a in inputs):
                constant.add(n.name)
    return constant


def _sole_user(n: fx.Node, target=None):
    users = list(n.users)
    if len(users) != 1:
        return None
    u = users[0]
    if u.op != "call_function" or (target is not None and u.target not in target):
        return None
    return u


def _is_relu(n: fx.Node) -> bool:
    if n.target is aten.relu.default:
        return True
    if n.target is aten.hardtanh.default:
        return tuple(n.args[1:3]) == (0.0, 6.0)
    return n.target is aten.clamp.default and tuple(n.args[1:3]) in {(0,), (0, 6), (0.0,), (0.0, 6.0)}


def _relu6_chain(start: fx.Node) -> list[fx.Node] | None:
    """The clamp nodes of clamp(x, 0, 6) starting at `start`'s sole user (one or two clamps)."""
    u = _sole_user(start, {aten.clamp.default, aten.hardtanh.default})
    if u is None:
        return None
    if u.target is aten.hardtanh.default or tuple(u.args[1:]) == (0, 6):
        return [u]
    v = _sole_user(u, {aten.clamp.default})
    if tuple(u.args[1:]) == (0,) and v is not None and tuple(v.args[1:]) == (None, 6):
        return [u, v]
    return None


def _fused(nodes) -> tuple[dict[str, str], dict[str, str]]:
    """Tensors that never exist in int8, each mapped to the tensor whose qparams cover it; and
    each covering tensor's activation (what an emitter fuses or writes as one op)."""
    fused: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for n in nodes:
        if n.op != "call_function":
            continue
        if n.target is aten.add.Tensor and n.args[1] == 3 and isinstance(n.args[0], fx.Node):
            chain = _relu6_chain(n)
            tail = chain and _sole_user(chain[-1], {aten.mul.Tensor, aten.div.Tensor})
            if tail is not None and tail.target is aten.div.Tensor and tail.args[1] == 6:  # hard-sigmoid
                for m in [n, *chain]:
                    fused[m.name] = tail.name
                kinds[tail.name] = "hardsigmoid"
            elif tail is not None and n.args[0] in tail.args:  # hard-swish: x * relu6(x + 3) / 6
                div = _sole_user(tail, {aten.div.Tensor})
                if div is not None and div.args[1] == 6:
                    for m in [n, *chain, tail]:
                        fused[m.name] = div.name
                    kinds[div.name] = "hardswish"
        if n.target in _FUSABLE_PRODUCERS and n.name not in fused:
            act = _sole_user(n)
            if act is not None and _is_relu(act):
                chain = _relu6_chain(n)
                cover = (chain or [act])[-1]
                for m in [n, *(chain or [])[:-1]]:
                    fused[m.name] = cover.name
                kinds[cover.name] = "relu6" if chain else "relu"
    return fused, kinds


def _attr_name(n) -> str | None:
    return n.target if isinstance(n, fx.Node) and n.op == "get_attr" else None


def _weighted(n: fx.Node, gm: fx.GraphModule) -> WeightedOp | None:
    if n.target in (aten.convolution.default, aten.conv2d.default):
        weight, bias = _attr_name(n.args[1]), _attr_name(n.args[2]) if len(n.args) > 2 else None
        if n.target is aten.convolution.default and n.args[6]:  # transposed conv: channels on dim 1
            return None
        return WeightedOp(n.name, weight, bias, n.args[0].name, 0) if weight else None
    bias_arg, x, w = (n.args if n.target is aten.addmm.default else (None, *n.args))
    if isinstance(w, fx.Node) and w.target is aten.permute.default and _attr_name(w.args[0]):
        return WeightedOp(n.name, _attr_name(w.args[0]), _attr_name(bias_arg), x.name, 0)
    if _attr_name(w):
        return WeightedOp(n.name, _attr_name(w), _attr_name(bias_arg), x.name, 1)
    return None
