"""NHWC layout planning: which axis order each graph value has in the .tflite file.

A value's layout is a permutation `perm` with `physical = torch_value.permute(perm)`.
Convolutions and pools need NHWC; layout-agnostic ops (element-wise, mean, concat,
slice) keep whatever their input has, translating axes; reshapes and matmuls need
torch order; a permute that undoes a layout (NHWC -> torch order) moves no data. The plan is made once,
before anything is emitted, so a CNN gets one TRANSPOSE at the input (none when the
input is already NHWC) and no pairs of transposes that undo each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import fx

Perm = tuple[int, ...]
NHWC: Perm = (0, 2, 3, 1)



@dataclass(frozen=True)
class Value:
    """A run-time tensor of the .tflite: its index in the builder, its layout and its torch shape."""

    tensor: int
    perm: Perm
    shape: tuple[int, ...]


# A rule gives a node's layout from the layouts already planned for its inputs.
Rule = Callable[[fx.Node, dict], Perm]


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def rank_of(node: fx.Node) -> int:
    val = node.meta.get("val")
    if isinstance(val, (tuple, list)):
        val = val[0]
    return val.dim()


def physical_shape(shape, perm: Perm) -> tuple[int, ...]:
    return tuple(int(shape[p]) for p in perm)


def axis(perm: Perm, dim: int) -> int:
    """The physical axis holding torch dimension `dim`."""
    return perm.index(dim % len(perm))


def transpose_between(src: Perm, dst: Perm) -> Perm:
    """The TRANSPOSE perm that turns data laid out as `src` into layout `dst`."""
    return tuple(src.index(d) for d in dst)


def same_memory_order(shape, src: Perm, dst: Perm) -> bool:
    """True when both layouts list the non-unit dimensions in the same order (a RESHAPE converts)."""
    return [d for d in src if shape[d] != 1] == [d for d in dst if shape[d] != 1]


def drop(perm: Perm, dims) -> Perm:
    """The layout left after removing torch dimensions `dims` (mean without keepdim, select)."""
    gone = {d % len(perm) for d in dims}
    kept = [d for d in perm if d not in gone]
    return tuple(sorted(kept).index(d) for d in kept)


# ----- rules -------------------------------------------------------------------------------

def nhwc(node: fx.Node, perms: dict) -> Perm:
    return NHWC if rank_of(node) == 4 else identity(rank_of(node))


def torch_order(node: fx.Node, perms: dict) -> Perm:
    return identity(rank_of(node))


def follow(node: fx.Node, perms: dict) -> Perm:
    """Keep the layout of the first same-rank non-constant input that is not in torch order."""
    rank = rank_of(node)
    for arg in _tensor_args(node):
        perm = perms.get(arg)
        if perm is not None and len(perm) == rank and perm != identity(rank):
            return perm
    return identity(rank)


def relabeled(src: Perm, dims) -> Perm:
    """After permute(x, dims), the layout in which x's physical data needs no move."""
    dims = [d % len(dims) for d in dims]
    return tuple(dims.index(d) for d in src)


def permuted(node: fx.Node, perms: dict) -> Perm:
    """permute(x, dims): free (a relabel) when that lands in torch order or NHWC, else moved once, here.

    Keeping an odd layout alive instead would make every later reshape or matmul on
    the value (a transformer's whole residual stream) transpose again.
    """
    free = relabeled(perms[node.args[0]], node.args[1])
    return free if free in (identity(len(free)), NHWC) else identity(len(free))


def dropping(dims_of: Callable[[fx.Node], list[int]]) -> Rule:
    """A rule for ops that remove dimensions `dims_of(node)` from their first input."""

    def rule(node: fx.Node, perms: dict) -> Perm:
        return drop(perms[node.args[0]], dims_of(node))

    return rule


def _tensor_args(node: fx.Node):
    for arg in node.args:
        if isinstance(arg, fx.Node):
            yield arg
        elif isinstance(arg, (list, tuple)):
            yield from (a for a in arg if isinstance(a, fx.Node))


# ----- the plan ----------------------------------------------------------------------------

def plan(graph: fx.Graph, rules: dict, *, nhwc_input: bool) -> tuple[dict[fx.Node, Perm], set[fx.Node]]:
    """Layouts for every run-time value, and the set of nodes that are constants.

    A node is a constant when it reads a parameter or only computes on constants;
    constants have no layout: they are written in whatever order their consumer needs.
    """
    perms: dict[fx.Node, Perm] = {}
    constants: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "get_attr":
            constants.add(node)
        elif node.op == "placeholder":
            perms[node] = NHWC if nhwc_input and rank_of(node) == 4 else identity(rank_of(node))
        elif node.op == "call_function":
            if all(a in constants for a in _tensor_args(node)):
                constants.add(node)
            elif node.target in rules:
                perms[node] = rules[node.target](node, perms)
    return perms, constants
