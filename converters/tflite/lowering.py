"""The walk over the captured graph: each ATen node becomes TFLite tensors and operators.

`Emitter` holds what every op lowering needs: the layout plan, the values lowered
so far, constants (folded with torch at conversion time, written in the order their
consumer wants, float16 under `precision="fp16"`), and layout conversions, made
once per value and layout and shared by every consumer.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as schema
from torch import fx

from ...errors import ConversionError
from ...graph import module_path
from . import layout
from .builder import ModelBuilder
from .layout import Perm, Value
from .ops import LOWERINGS, Unsupported

B = schema.BuiltinOperator


class Emitter:
    def __init__(self, module: fx.GraphModule, *, precision: str, nhwc_input: bool, int8_activations: bool = False):
        self.module = module
        self.precision = precision
        self.int8_activations = int8_activations  # the plan will quantise the tensors: one op per planned tensor
        self.builder = ModelBuilder()
        rules = {op: lowering.layout for op, lowering in LOWERINGS.items()}
        self.perms, self.constants = layout.plan(module.graph, rules, nhwc_input=nhwc_input)
        self.values: dict[fx.Node, object] = {}  # Value, a list of Values (tuple results) or a torch.Tensor
        self.tensor_nodes: dict[int, list[str]] = {}  # tensor -> the FX nodes it holds (QuantPlan keys)
        self._converted: dict[tuple[int, Perm, Perm], int] = {}
        self._materialized: dict[tuple, int] = {}

    # ----- the walk ----------------------------------------------------------------------

    def lower(self, input_names: list[str], output_names: list[str]) -> tuple[list[Value], list[Value]]:
        """Lower every node; returns the graph's input and output Values."""
        inputs, outputs = [], []
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                name = input_names[len(inputs)]
                perm = self.perms[node]
                shape = tuple(node.meta["val"].shape)
                value = Value(self.builder.tensor(name, layout.physical_shape(shape, perm)), perm, shape)
                self.builder.inputs.append(value.tensor)
                self.values[node] = value
                self.tensor_nodes[value.tensor] = [node.name]
                inputs.append(value)
            elif node.op == "get_attr":
                self.values[node] = _attribute(self.module, node.target)
            elif node.op == "call_function":
                self._lower_call(node)
            elif node.op == "output":
                results = node.args[0] if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
                outputs = [self._graph_output(r, name) for r, name in zip(results, output_names)]
        return inputs, outputs

    def _lower_call(self, node: fx.Node) -> None:
        if node in self.constants:
            args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: self.values[n])
            with torch.no_grad():
                self.values[node] = node.target(*args, **kwargs)
            return
        name = getattr(node.target, "__name__", str(node.target))
        lowering = LOWERINGS.get(node.target)
        where = f"torch module '{module_path(node)}'" if module_path(node) else "the model's own forward()"
        if lowering is None:
            raise ConversionError(
                f"tflite: the ATen op '{name}' (node {node.name}, from {where}) has no TFLite lowering",
                "rewrite that layer with supported ops (see converters/tflite/ops.py), or convert to --target onnx",
            )
        first_new_op = len(self.builder.ops)
        try:
            lowering.emit(self, node)
            for op in self.builder.ops[first_new_op:]:
                op.origin = node.name
        except Unsupported as exc:
            raise ConversionError(
                f"tflite: the ATen op '{name}' (node {node.name}, from {where}) cannot be expressed: {exc}",
                "rewrite that layer with supported ops, or convert to --target onnx",
            ) from None

    def _graph_output(self, node, name: str) -> Value:
        value = self.values[node]
        if not isinstance(value, Value):
            raise ConversionError(f"tflite: output {name!r} is a constant or a tuple, not a computed tensor",
                                  "return tensors computed from the input")
        torch_order = layout.identity(len(value.shape))
        if value.perm != torch_order and value.perm != layout.NHWC:  # the manifest can say NHWC, nothing else
            value = Value(self.convert(value, torch_order, name), torch_order, value.shape)
        self.builder.tensors[value.tensor].name = name
        self.builder.outputs.append(value.tensor)
        return value

    # ----- helpers for op lowerings ----------------------------------------------------------

    def value(self, arg) -> Value:
        value = self.values[arg]
        if not isinstance(value, Value):
            raise Unsupported(f"input {arg.name} is not a single run-time tensor")
        return value

    def constant(self, arg) -> torch.Tensor | None:
        """`arg` as a torch tensor when it is known at conversion time (a parameter or a number)."""
        if isinstance(arg, torch.Tensor):
            return arg
        if isinstance(arg, (int, float)):
            return torch.tensor(arg, dtype=torch.float32)
        if isinstance(arg, fx.Node) and isinstance(self.values.get(arg), torch.Tensor):
            return self.values[arg]
        return None

    def input(self, arg, perm: Perm) -> int:
        """The tensor holding `arg` in layout `perm`: constants written so, values converted once."""
        const = self.constant(arg)
        if const is not None:
            return self.weight(const.permute(perm) if const.dim() == len(perm) else const, _name(arg))
        return self.convert(self.value(arg), perm, _name(arg))

    def convert(self, value: Value, perm: Perm, name: str) -> int:
        """`value`'s data in layout `perm`: itself, or a TRANSPOSE (RESHAPE if only unit axes move)."""
        if value.perm == perm:
            return value.tensor
        key = (value.tensor, value.perm, perm)
        if key not in self._converted:
            out = self.builder.tensor(f"{name}/{''.join(map(str, perm))}", layout.physical_shape(value.shape, perm))
            if layout.same_memory_order(value.shape, value.perm, perm):
                self.builder.op(B.RESHAPE, [value.tensor, self.ints(self.builder.tensors[out].shape)], [out])
            else:
                self.builder.op(B.TRANSPOSE, [value.tensor, self.ints(layout.transpose_between(value.perm, perm))], [out])
            self._converted[key] = out
        return self._converted[key]

    def operand(self, arg, node: fx.Node) -> int:
        """An element-wise operand of `node`, broadcast-ready in `node`'s layout."""
        perm = self.perms[node]
        const = self.constant(arg)
        if const is not None:
            if const.dim() == 0:
                return self.weight(const, _name(arg))
            const = const.reshape((1,) * (len(perm) - const.dim()) + tuple(const.shape))
            return self.weight(const.permute(perm), _name(arg))
        value = self.value(arg)
        if len(value.shape) < len(perm):  # lower-rank run-time operand: give it the full rank first
            shape = (1,) * (len(perm) - len(value.shape)) + value.shape
            full = self.builder.tensor(f"{arg.name}/rank{len(shape)}", shape)
            self.builder.op(B.RESHAPE, [self.input(arg, layout.identity(len(value.shape))), self.ints(shape)], [full])
            value = Value(full, layout.identity(len(shape)), shape)
        return self.convert(value, perm, arg.name)

    def weight(self, tensor: torch.Tensor, name: str) -> int:
        """A float or int constant; under fp16, floats of more than one element are stored float16."""
        array = tensor.detach().contiguous().numpy()
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        key = (name, array.dtype.str, array.shape, hashlib.blake2b(array.tobytes(), digest_size=16).digest())
        if key not in self._materialized:
            if self.precision == "fp16" and array.dtype == np.float32 and array.size > 1:
                half = self.builder.constant(f"{name}/fp16", array.astype(np.float16))
                out = self.builder.tensor(name, array.shape)
                self.builder.op(B.DEQUANTIZE, [half], [out])
            else:
                out = self.builder.constant(name, array)
            self._materialized[key] = out
        return self._materialized[key]

    def ints(self, values) -> int:
        """An int32 vector constant (shapes, axes, perms, paddings), shared by every reader."""
        array = np.asarray(values, np.int32)
        key = ("int32", array.shape, array.tobytes())
        if key not in self._materialized:
            self._materialized[key] = self.builder.constant(f"const_{len(self._materialized)}", array)
        return self._materialized[key]

    def output(self, node: fx.Node, perm: Perm | None = None, index: int | None = None) -> int:
        """A new tensor for `node`'s result (element `index` of a tuple result) in layout `perm`."""
        val = node.meta["val"] if index is None else node.meta["val"][index]
        perm = self.perms[node] if perm is None else perm
        shape = tuple(int(d) for d in val.shape)
        tensor = self.builder.tensor(node.name if index is None else f"{node.name}/{index}", layout.physical_shape(shape, perm))
        value = Value(tensor, perm, shape)
        self.tensor_nodes[tensor] = [node.name]
        if index is None:
            self.values[node] = value
        else:
            self.values.setdefault(node, [None] * len(node.meta["val"]))[index] = value
        return tensor

    def scratch(self, node: fx.Node, suffix: str, shape) -> int:
        """An intermediate tensor of a multi-op lowering, named after its node."""
        return self.builder.tensor(f"{node.name}/{suffix}", shape)

    def alias(self, node: fx.Node, value: Value) -> None:
        """`node` is `value` under another name or layout: no operator needed."""
        self.values[node] = value
        self.tensor_nodes.setdefault(value.tensor, []).append(node.name)


def _attribute(module: fx.GraphModule, target: str) -> torch.Tensor:
    obj = module
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _name(arg) -> str:
    return arg.name if isinstance(arg, fx.Node) else "scalar"
